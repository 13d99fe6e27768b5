"""The database handle: URL normalisation, the async engine and session factory, SQLite pragmas, ping."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import URL, event, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from store.errors import DatabaseUnavailableError, StoreError

log = logging.getLogger(__name__)

# Scheme as written by the operator -> the async driver we run it with.
ASYNC_SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+psycopg",
}

# WAL lets the web console read while the bot writes; busy_timeout makes a writer wait instead of failing.
SQLITE_PRAGMAS = (
    "PRAGMA foreign_keys=ON",
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)


def normalize_url(url: str) -> str:
    """Return the URL with its scheme rewritten to the async driver Closeloop uses.

    Raises:
        StoreError: the scheme is not SQLite or PostgreSQL.
    """
    scheme, sep, rest = url.strip().partition("://")
    target = ASYNC_SCHEMES.get(scheme.lower()) if sep else None
    if target is None:
        supported = ", ".join(f"{s}://" for s in ASYNC_SCHEMES)
        # Only the scheme is quoted: the rest of the URL may hold a password.
        shown = f"scheme {scheme!r}" if sep else "a value without a scheme"
        raise StoreError(f"unsupported database URL ({shown}); supported schemes: {supported}")
    return f"{target}://{rest}"


class Database:
    """An async engine and session factory for one SQLite file or PostgreSQL database.

    The constructor does no I/O; the first connection opens lazily.
    """

    def __init__(self, url: str, *, connect_timeout: float = 5.0, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.connect_timeout = connect_timeout
        parsed = _parse(self.url)
        self.dialect = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql"
        self.target = _describe(parsed)
        self._password = parsed.password
        self.engine = _create_engine(parsed, connect_timeout=connect_timeout, echo=echo)
        if self.dialect == "sqlite":
            _prepare_sqlite(self.engine, parsed.database)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite takes one writer at a time and answers a second with "database is locked" rather than a queue;
        # writers in this process queue here instead. PostgreSQL needs no such thing.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    def writing(self) -> AbstractAsyncContextManager[object]:
        """Hold this around a write transaction: a queue of writers on SQLite, nothing on PostgreSQL."""
        return self._write_lock if self._write_lock is not None else contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"Database({self.target})"

    async def ping(self) -> float:
        """Run ``SELECT 1`` and return the round trip in milliseconds.

        Raises:
            DatabaseUnavailableError: no answer within ``connect_timeout`` seconds, or the connection failed.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.connect_timeout), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except TimeoutError as exc:
            raise self._unavailable(f"no answer within {self.connect_timeout:g} s") from exc
        except (OSError, SQLAlchemyError) as exc:
            raise self._unavailable(_reason(exc)) from exc
        return (time.perf_counter() - started) * 1000

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    def _unavailable(self, reason: str) -> DatabaseUnavailableError:
        if self._password:
            reason = reason.replace(self._password, "***")
        return DatabaseUnavailableError(f"cannot reach {self.target}: {reason}")


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise StoreError("malformed database URL") from exc


def _describe(url: URL) -> str:
    """Name the target for messages: host, port and database, or the SQLite file; never the password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    user = f"{url.username}@" if url.username else ""
    return f"PostgreSQL {user}{host}{port}/{url.database or ''}"


def _create_engine(url: URL, *, connect_timeout: float, echo: bool) -> AsyncEngine:
    options: dict[str, Any] = {
        "echo": echo,
        # Keep Chinese readable in SQLite files and psql output instead of \\u escapes.
        "json_serializer": partial(json.dumps, ensure_ascii=False),
    }
    if url.get_backend_name() == "postgresql":
        # pre_ping: a PostgreSQL restart must not surface as an error on the next request.
        options["pool_pre_ping"] = True
        if url.get_driver_name() == "asyncpg":
            options["connect_args"] = {"timeout": connect_timeout}
        else:
            options["connect_args"] = {"connect_timeout": max(1, round(connect_timeout))}
    try:
        return create_async_engine(url, **options)
    except ImportError as exc:
        raise StoreError(f"database driver {url.get_driver_name()!r} is not installed") from exc


def _prepare_sqlite(engine: AsyncEngine, database: str | None) -> None:
    """Create the file's folder before the first connection and set the pragmas on every connection."""
    is_file = bool(database) and database != ":memory:" and not database.startswith("file:")

    @event.listens_for(engine.sync_engine, "do_connect")
    def _make_folder(*_: Any) -> None:
        if is_file:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()


def _reason(exc: BaseException) -> str:
    """Say why a connection failed in one line, without SQLAlchemy's SQL echo and documentation link."""
    orig = getattr(exc, "orig", None) or exc
    detail = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    name = type(orig).__name__
    return f"{name}: {detail}" if detail else name
