"""Contract: the Database handle connects, reports outages clearly and keeps data on both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError

from store import Database, DatabaseUnavailableError, StoreError, normalize_url
from store.models import AuditEntry, Branch, Counter, InboundEvent, Respondent, SurveyChannel


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/c.db", "sqlite+aiosqlite:///data/c.db"),
        ("sqlite+aiosqlite:////abs/c.db", "sqlite+aiosqlite:////abs/c.db"),
        ("postgresql://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_normalize_url_picks_the_async_driver(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://root:hunter2@h/d", "postgresql+psycopg2://u:hunter2@h/d", "c.db", ""])
def test_normalize_url_refuses_other_schemes_without_echoing_the_password(url: str) -> None:
    with pytest.raises(StoreError, match=r"supported schemes: sqlite://.*postgresql://") as caught:
        normalize_url(url)
    assert "hunter2" not in str(caught.value)


def test_constructor_does_no_io(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path}/not/yet/c.db")
    assert database.dialect == "sqlite"
    assert database.url == f"sqlite+aiosqlite:///{tmp_path}/not/yet/c.db"
    assert not (tmp_path / "not").exists()
    assert Database("postgres://u@h/d").dialect == "postgresql"


async def test_sqlite_creates_the_folder_and_sets_pragmas(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path}/new/folder/c.db")
    try:
        assert await database.ping() >= 0
        async with database.engine.connect() as conn:
            pragmas = {name: (await conn.execute(text(f"PRAGMA {name}"))).scalar_one() for name in PRAGMAS}
    finally:
        await database.dispose()
    assert pragmas == PRAGMAS


# synchronous=1 is NORMAL.
PRAGMAS = {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 5000, "synchronous": 1}


async def test_ping_answers_in_milliseconds(db: Database) -> None:
    assert 0 <= await db.ping() < 5000


async def test_ping_of_a_closed_port_fails_fast_without_the_password() -> None:
    await _assert_unreachable("postgresql://postgres:hunter2@127.0.0.1:1/closeloop", timeout=2.0)


async def test_ping_of_a_non_routable_address_gives_up_within_the_timeout() -> None:
    await _assert_unreachable("postgresql://postgres:hunter2@10.255.255.1:5432/closeloop", timeout=0.5)


async def test_ping_of_a_server_that_never_answers_gives_up_within_the_timeout(silent_port: int) -> None:
    message = await _assert_unreachable(f"postgresql://postgres:hunter2@127.0.0.1:{silent_port}/c", timeout=0.5)
    assert "0.5 s" in message or "Timeout" in message


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """Yield the port of a TCP server that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def _assert_unreachable(url: str, *, timeout: float) -> str:
    database = Database(url, connect_timeout=timeout)
    started = time.perf_counter()
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            await database.ping()
    finally:
        await database.dispose()
    assert time.perf_counter() - started < timeout + 1.0
    message = str(caught.value)
    assert "hunter2" not in message
    assert "127.0.0.1" in message or "10.255.255.1" in message
    return message


async def test_data_survives_a_restart(database_url: str, db: Database) -> None:
    async with db.sessions.begin() as session:
        session.add(Branch(code="MAIN", name_en="Main Street", name_zh="中央大街支行"))
    await db.dispose()
    reopened = Database(database_url)
    try:
        async with reopened.sessions() as session:
            branch = await session.scalar(select(Branch).where(Branch.code == "MAIN"))
    finally:
        await reopened.dispose()
    assert branch is not None
    assert branch.name_zh == "中央大街支行"
    assert branch.is_active is True


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.sessions.begin() as session:
            session.add(Counter(branch_id=9999, code="C1", name_en="Counter 1", name_zh="1号窗口"))


async def test_a_respondent_is_unique_per_channel(db: Database) -> None:
    async with db.sessions.begin() as session:
        session.add(Respondent(channel=SurveyChannel.TELEGRAM, user_hash="h1"))
        session.add(Respondent(channel=SurveyChannel.WEB, user_hash="h1"))
    with pytest.raises(IntegrityError):
        async with db.sessions.begin() as session:
            session.add(Respondent(channel=SurveyChannel.TELEGRAM, user_hash="h1"))


async def test_a_redelivered_inbound_event_is_refused(db: Database) -> None:
    async with db.sessions.begin() as session:
        session.add(InboundEvent(channel=SurveyChannel.TELEGRAM, external_id="update-42"))
    with pytest.raises(IntegrityError):
        async with db.sessions.begin() as session:
            session.add(InboundEvent(channel=SurveyChannel.TELEGRAM, external_id="update-42"))


async def test_datetimes_come_back_aware_and_in_utc(db: Database) -> None:
    shanghai = timezone(timedelta(hours=8))
    consented = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=shanghai)
    async with db.sessions.begin() as session:
        session.add(Respondent(channel=SurveyChannel.WEB, user_hash="h", consent_at=consented))
    async with db.sessions() as session:
        respondent = await session.scalar(select(Respondent).execution_options(populate_existing=True))
    assert respondent is not None
    assert respondent.consent_at == consented
    assert respondent.consent_at.tzinfo == UTC
    assert respondent.consent_at.hour == 1
    assert respondent.created_at.tzinfo == UTC
    assert abs(respondent.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_server_default_timestamp_is_utc(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("INSERT INTO branches (code, name_en, name_zh) VALUES ('RAW', 'Raw', '生')"))
    async with db.sessions() as session:
        branch = await session.scalar(select(Branch).where(Branch.code == "RAW"))
    assert branch is not None
    assert branch.is_active is True
    assert abs(branch.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with db.sessions.begin() as session:
            session.add(Respondent(channel=SurveyChannel.WEB, user_hash="h", consent_at=datetime(2026, 3, 1)))


async def test_json_round_trips_chinese_text_and_nulls(db: Database) -> None:
    before = {"comment": "排队太久了，柜员态度很好", "scores": [1, 2.5], "nested": {"ok": True, "none": None}}
    async with db.sessions.begin() as session:
        session.add(AuditEntry(actor_kind="system", action="test", target_type="branch", before=before, after=None))
    async with db.sessions() as session:
        entry = await session.scalar(select(AuditEntry))
        is_sql_null = await session.scalar(select(AuditEntry.after.is_(None)))
    assert entry is not None
    assert entry.before == before
    assert entry.after is None
    assert is_sql_null is True
    assert entry.actor_kind == "system"
