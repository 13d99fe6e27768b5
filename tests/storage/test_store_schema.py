"""Contract: migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from store import Database, current_revision, head_revision, upgrade
from store.models import Base


def _table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


def _schema_diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def test_fresh_database_has_no_revision(database_url: str) -> None:
    database = Database(database_url)
    try:
        assert await current_revision(database) is None
    finally:
        await database.dispose()


async def test_upgrade_creates_every_model_table(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_table_names) == set(Base.metadata.tables)
    assert await current_revision(db) == head_revision()


async def test_second_upgrade_is_a_no_op(db: Database) -> None:
    await upgrade(db)
    assert await current_revision(db) == head_revision()


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []


@pytest.mark.postgres
async def test_concurrent_upgrades_do_not_collide(database_url: str) -> None:
    first, second = Database(database_url), Database(database_url)
    try:
        await asyncio.gather(upgrade(first), upgrade(second))
        assert await current_revision(first) == head_revision()
    finally:
        await first.dispose()
        await second.dispose()


@pytest.mark.postgres
async def test_cases_are_vacuumed_often_enough_for_index_only_counts(db: Database) -> None:
    """The queue's counts stay index-only when autovacuum visits cases after 2% of them change (migration 0008)."""
    async with db.engine.connect() as conn:
        options = (await conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'cases'")).scalar_one()
    assert "autovacuum_vacuum_scale_factor=0.02" in options
    assert "autovacuum_vacuum_insert_scale_factor=0.02" in options
