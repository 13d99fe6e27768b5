"""Shared fixtures: a database URL for each backend (SQLite file, throwaway PostgreSQL database) and an upgraded db."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from store import Database, normalize_url, upgrade

pytest_plugins = ["support.fixtures"]  # the Bot API stand-in and TelegramSender fixtures

PG_ADMIN_URL_VARIABLE = "CLOSELOOP_TEST_DATABASE_URL"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the SQLite run of tests marked ``postgres``: they test PostgreSQL-only behaviour."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        is_sqlite_run = callspec is not None and callspec.params.get("database_url") == "sqlite"
        (drop if is_sqlite_run and item.get_closest_marker("postgres") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Yield the URL of an empty database: a SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/t.db"
        return
    admin_url = os.environ.get(PG_ADMIN_URL_VARIABLE)
    if not admin_url:
        reason = f"PostgreSQL test database not configured: set {PG_ADMIN_URL_VARIABLE}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must test PostgreSQL; .ci/run sets it)")
        pytest.skip(reason)
    async for url in _scratch_postgres_database(admin_url):
        yield url


async def _scratch_postgres_database(admin_url: str) -> AsyncIterator[str]:
    name = f"closeloop_test_{uuid.uuid4().hex[:16]}"
    # CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_async_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """Yield a Database migrated to head; disposed after the test."""
    database = Database(database_url)
    try:
        await upgrade(database)
        yield database
    finally:
        await database.dispose()
