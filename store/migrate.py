"""Schema migrations run from code: upgrade to a revision, and read the current and head revisions."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from store.database import Database
from store.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Any fixed 64-bit number works; it only has to be the same in every Closeloop process.
# (b"closeloop" read as an integer, truncated to fit a signed bigint.)
UPGRADE_LOCK_KEY = 0x636C6F73656C6F6F


def alembic_config() -> Config:
    """Build the Alembic configuration in code, so no alembic.ini has to ship with the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """Return the newest revision shipped with this version of Closeloop."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError(f"no migrations found in {MIGRATIONS}")
    return head


async def current_revision(db: Database) -> str | None:
    """Return the revision the database is at, or None when it has never been migrated."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(_read_revision)


async def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate the database to ``revision``; a database already there is left untouched.

    On PostgreSQL a transaction-scoped advisory lock serialises concurrent upgrades: the second process
    waits, then finds the schema at head and does nothing.
    """
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY})
        before = await conn.run_sync(_read_revision)
        await conn.run_sync(_run_upgrade, revision)
        after = await conn.run_sync(_read_revision)
    if before != after:
        log.info("database %s migrated from %s to %s", db.target, before or "empty", after)


def _read_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _run_upgrade(conn: Connection, revision: str) -> None:
    config = alembic_config()
    # env.py runs on this connection, inside the transaction that holds the lock.
    config.attributes["connection"] = conn
    command.upgrade(config, revision)
