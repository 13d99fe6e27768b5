"""Benchmark: the case queue and case page, 20 concurrent staff sessions, PostgreSQL (default 1,000,000 rows).

Fills a scratch database beside the admin URL (bench/fill.py: a year of visits to 200 branches in eight regions,
a case for each flagged one), serves the console alone (web.console.add_console_routes on the bare web app: no
bot, no background jobs) on loopback, and lets 20 signed-in sessions (admins, region managers and branch staff)
load the queue, a filtered later page of it and a case page in their scope, round after round. Prints the query
plans of the admin's queue and the p50/p95 of each page as the client saw it. The database is dropped afterwards.

    .venv/bin/python bench/console_cases.py [--url postgresql://postgres@127.0.0.1:5432/test] [--rows 1000000]
                                            [--rounds 10] [--think 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

from aiohttp import ClientSession, web
from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fill import REGIONS, fill, scratch_database  # noqa: E402

from store import Database, upgrade  # noqa: E402
from store.models import Branch, Case, ScopeKind, StaffRole, StaffUser, utcnow  # noqa: E402
from store.staff import start_session  # noqa: E402
from web.app import create_web_app  # noqa: E402
from web.case_queue import QueueFilter, _page  # noqa: E402
from web.console import add_console_routes  # noqa: E402
from web.keys import DATABASE  # noqa: E402
from web.options import ConsoleOptions  # noqa: E402

SESSIONS = 20


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between two pages of a session")
    args = parser.parse_args(argv)
    async with scratch_database("postgresql", args.url) as url:
        db = Database(url)
        try:
            await upgrade(db)
            filled = await fill(db, args.rows)
            print(f"filled {filled.feedback:,} feedback rows and {filled.cases:,} cases in {filled.seconds:.1f} s")
            await run(db, args)
        finally:
            await db.dispose()


async def run(db: Database, args: argparse.Namespace) -> None:
    users = await _users(db)
    await _plans(db, users[0])
    app = create_web_app(version="bench")
    app[DATABASE] = db
    add_console_routes(app, secure_cookies=False, options=ConsoleOptions(timezone="Asia/Shanghai"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # the port the OS picked
    scenarios = [("1 session", 1, 0.0), (f"{SESSIONS} sessions, back to back", SESSIONS, 0.0),
                 (f"{SESSIONS} sessions, a page every ~{args.think:g} s each", SESSIONS, args.think)]  # fmt: skip
    try:
        for title, sessions, think in scenarios:
            timings: dict[str, list[float]] = {"queue": [], "queue page 2, urgent": [], "case page": []}
            await asyncio.gather(*(_session(db, base, user, args.rounds, think, timings) for user in users[:sessions]))
            print(title)
            for page, values in timings.items():
                values.sort()
                p95 = values[int(0.95 * (len(values) - 1))]
                print(f"  {page:>22}: n={len(values)} p50={statistics.median(values):.0f} ms p95={p95:.0f} ms")
    finally:
        await runner.cleanup()


async def _users(db: Database) -> list[StaffUser]:
    """Four admins, a manager for each region and eight branch staff: 20 sessions in all."""
    async with db.sessions() as session:
        codes = list(await session.scalars(select(Branch.code).order_by(Branch.id).limit(8)))
    specs = [(StaffRole.ADMIN, ScopeKind.ALL, None)] * 4
    specs += [(StaffRole.MANAGER, ScopeKind.REGION, region) for region in REGIONS]
    specs += [(StaffRole.STAFF, ScopeKind.BRANCH, code) for code in codes]
    unusable = "!"  # not an argon2 hash: no password signs these users in; the benchmark mints their sessions
    users = [
        StaffUser(
            username=f"u{n}",
            display_name=f"User {n}",
            role=role,
            scope_kind=kind,
            scope_value=value,
            password_hash=unusable,
        )
        for n, (role, kind, value) in enumerate(specs[:SESSIONS])
    ]
    async with db.sessions() as session, session.begin():
        session.add_all(users)
    return users


async def _plans(db: Database, admin: StaffUser) -> None:
    async with db.engine.connect() as conn:
        for wanted in (QueueFilter(), QueueFilter(status="all", page=40)):
            compiled = _page(admin, wanted).compile(db.engine.sync_engine, compile_kwargs={"literal_binds": True})
            plan = (await conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}"))).scalars().all()
            print(f"queue plan ({wanted.status}, page {wanted.page}):\n  " + "\n  ".join(plan))


async def _session(
    db: Database, base: str, user: StaffUser, rounds: int, think: float, timings: dict[str, list[float]]
) -> None:
    issued = await start_session(db, user.id, now=utcnow(), lifetime=timedelta(hours=12), idle=timedelta(hours=1),
                                 remote_addr=None)  # fmt: skip
    async with db.sessions() as session:
        statement = select(func.max(Case.id)).join(Branch, Branch.id == Case.branch_id)
        if user.scope_kind == ScopeKind.REGION:
            statement = statement.where(Branch.region == user.scope_value)
        elif user.scope_kind == ScopeKind.BRANCH:
            statement = statement.where(Branch.code == user.scope_value)
        case_id = await session.scalar(statement)
    pages = {"queue": "/console/cases", "queue page 2, urgent": "/console/cases?status=all&priority=urgent&page=2",
             "case page": f"/console/cases/{case_id}"}  # fmt: skip
    async with ClientSession(base, cookies={"closeloop_staff": issued.token}) as client:
        await asyncio.sleep(random.uniform(0, 2 * think))  # sessions start apart, as people do
        for _ in range(rounds):
            for name, path in pages.items():
                started = time.perf_counter()
                async with client.get(path, allow_redirects=False) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)
                timings[name].append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(random.uniform(0, 2 * think))


if __name__ == "__main__":
    asyncio.run(main())
