"""Benchmark: the ticket board and ticket page, 20 concurrent staff sessions, PostgreSQL (default 1,000,000 rows).

Fills a scratch database beside the admin URL (bench/fill.py: a year of visits to 200 branches, 320 tickets over
the year, twelve planted bursts of complaints), runs one grouping pass (bench/reporting_tickets.py's hashing
stand-in for the encoder) so that tickets carry evidence, quotes and a weekly trend, serves the console alone
(web.console.add_console_routes on the bare web app: no bot, no background jobs) on loopback, and lets 20
signed-in sessions (admins, region managers and staff of branches with a grouped ticket) load the board, a
filtered board and the ticket page with the most evidence in their scope, round after round. Prints the plan of
the admin's board query and the p50/p95 of each page as the client saw it. The database is dropped afterwards.

    .venv/bin/python bench/console_tickets.py [--url postgresql://postgres@127.0.0.1:5432/test] [--rows 1000000]
                                              [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

from aiohttp import ClientSession, web
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fill import CATEGORIES, NOW, REGIONS, fill, scratch_database  # noqa: E402
from reporting_tickets import embed  # noqa: E402

from reporting.complaints import TicketRules  # noqa: E402
from reporting.scope import staff_branches  # noqa: E402
from reporting.tickets import run_grouping  # noqa: E402
from store import Database, upgrade  # noqa: E402
from store.models import Branch, ScopeKind, StaffRole, StaffUser, Ticket, TicketEvidence, utcnow  # noqa: E402
from store.staff import start_session  # noqa: E402
from web.app import create_web_app  # noqa: E402
from web.console import add_console_routes  # noqa: E402
from web.keys import DATABASE  # noqa: E402
from web.options import ConsoleOptions  # noqa: E402

SESSIONS = 20


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    async with scratch_database("postgresql", args.url) as url:
        db = Database(url)
        try:
            await upgrade(db)
            filled = await fill(db, args.rows)
            print(f"filled {filled.feedback:,} feedback rows in {filled.seconds:.1f} s")
            started = time.perf_counter()
            departments = dict.fromkeys(CATEGORIES, "branch_operations")
            result = await run_grouping(db, departments, embed, now=NOW, rules=TicketRules(cluster_distance=0.5))
            print(f"grouping pass: {time.perf_counter() - started:.1f} s, {result.opened} tickets opened")
            await run(db, args.rounds)
        finally:
            await db.dispose()


async def run(db: Database, rounds: int) -> None:
    users = await _users(db)
    app = create_web_app(version="bench")
    app[DATABASE] = db
    add_console_routes(app, secure_cookies=False, options=ConsoleOptions(timezone="Asia/Shanghai"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # the port the OS picked
    timings: dict[str, list[float]] = {"board": [], "board, open waiting_time": [], "ticket page": []}
    try:
        await asyncio.gather(*(_session(db, f"http://127.0.0.1:{port}", user, rounds, timings) for user in users))
    finally:
        await runner.cleanup()
    for page, values in timings.items():
        values.sort()
        p95 = values[int(0.95 * (len(values) - 1))]
        print(f"{page:>24}: n={len(values)} p50={statistics.median(values):.0f} ms p95={p95:.0f} ms")


async def _users(db: Database) -> list[StaffUser]:
    """Four admins, a manager for each region and staff of the branches whose tickets have the most evidence."""
    busiest = (
        select(Branch.code)
        .join(Ticket, Ticket.branch_id == Branch.id)
        .group_by(Branch.code)
        .order_by(func.max(Ticket.feedback_count).desc(), Branch.code)
        .limit(8)
    )
    async with db.sessions() as session:
        codes = list(await session.scalars(busiest))
    specs = [(StaffRole.ADMIN, ScopeKind.ALL, None)] * 4
    specs += [(StaffRole.MANAGER, ScopeKind.REGION, region) for region in REGIONS]
    specs += [(StaffRole.STAFF, ScopeKind.BRANCH, code) for code in codes]
    unusable = "!"  # not an argon2 hash: no password signs these users in; the benchmark mints their sessions
    users = [StaffUser(username=f"u{n}", display_name=f"User {n}", role=role, scope_kind=kind, scope_value=value,
                       password_hash=unusable) for n, (role, kind, value) in enumerate(specs[:SESSIONS])]  # fmt: skip
    async with db.sessions() as session, session.begin():
        session.add_all(users)
    return users


async def _session(db: Database, base: str, user: StaffUser, rounds: int, timings: dict[str, list[float]]) -> None:
    issued = await start_session(db, user.id, now=utcnow(), lifetime=timedelta(hours=12), idle=timedelta(hours=1),
                                 remote_addr=None)  # fmt: skip
    evidence = select(func.count()).where(TicketEvidence.ticket_id == Ticket.id).scalar_subquery()
    biggest = (
        select(Ticket.id)
        .join(Branch, Branch.id == Ticket.branch_id)
        .where(staff_branches(user))
        .order_by(evidence.desc(), Ticket.id)
        .limit(1)
    )
    async with db.sessions() as session:
        ticket_id = await session.scalar(biggest)
    pages = {
        "board": "/console/tickets",
        "board, open waiting_time": "/console/tickets?status=open&category=waiting_time",
        "ticket page": f"/console/tickets/{ticket_id}",
    }
    async with ClientSession(base, cookies={"closeloop_staff": issued.token}) as client:
        for _ in range(rounds):
            for name, path in pages.items():
                started = time.perf_counter()
                async with client.get(path, allow_redirects=False) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)
                timings[name].append((time.perf_counter() - started) * 1000)


if __name__ == "__main__":
    asyncio.run(main())
