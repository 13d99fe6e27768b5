"""Benchmark: the console's speed target, the case queue, a ticket page and the dashboard under 20 staff sessions.

Fills a PostgreSQL scratch database beside the admin URL with bench/fill.py (default 1,000,000 visits to 200
branches in eight regions; a case for each flagged one) and runs one ticket grouping pass (bench/reporting_tickets.py's
hashing stand-in for the encoder) so that tickets carry evidence. It adds staff users (branch staff at the 20
branches whose tickets hold the most evidence, a manager per region, four admins), starts the real server as
`closeloop run` in a subprocess with the default settings (the analysis worker off: at this size it runs as
`closeloop worker`), and signs sessions in through the sign-in form. Then, for each page and role:

    busy   every session requests the page back to back for --seconds (a closed loop, like wrk)
    think  every session waits 0-2 x --think seconds (mean --think) between requests, like staff clicking
    cold   (dashboard only, first) every session loads its dashboard once, together, on figures nobody computed

and prints requests, p50/p95/p99/max in ms as the client saw them, errors, the CPU milliseconds per request of
the server, of all PostgreSQL processes and of this client, and the load average when the run ended. Each
session's page is its own scope's: the queue, the ticket with the most evidence, the dashboard of the latest
full week of the data (fill.NOW lies in the past, and the default week would show an empty one). One request per
session warms up before a timed busy or think run.

    .venv/bin/python bench/console.py [--url postgresql://postgres@127.0.0.1:5432/test] [--rows 1000000] [--keep]
        [--seconds 20] [--think 1.0] [--sessions 20] [--pages queue,ticket,dashboard] [--roles staff,manager,admin]
        [--modes cold,busy,think]

--keep fills a database named after the row count once and reuses it in later runs (the server's start applies
new migrations to it); without it the scratch database is dropped afterwards. --rows 20000 makes a quick smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, CookieJar
from sqlalchemy import func, make_url, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fill import BRANCHES, CATEGORIES, COUNTERS, NOW, REGIONS, fill, latest_full_week, scratch_database, settle  # noqa: E402
from reporting_tickets import embed  # noqa: E402

from reporting.alerts import AlertDispatcher  # noqa: E402
from reporting.cases import escalate_overdue  # noqa: E402
from reporting.complaints import TicketRules  # noqa: E402
from reporting.delivery import Notifier  # noqa: E402
from reporting.scope import staff_branches  # noqa: E402
from reporting.tickets import run_grouping  # noqa: E402
from store import Database, normalize_url, upgrade  # noqa: E402
from store.models import ActorKind, Branch, Feedback, ScopeKind, StaffRole, Ticket, TicketEvidence, utcnow  # noqa: E402
from store.staff import Actor, DuplicateUserError, NewUser, create_user, find_user  # noqa: E402
from web.passwords import hash_password  # noqa: E402

PAGES = ("queue", "ticket", "dashboard")
ROLES = ("staff", "manager", "admin")
MODES = ("cold", "busy", "think")
PASSWORD = "bench-password-1"  # noqa: S105 - the benchmark's own users in a scratch database
ADMINS = 4
START_TIMEOUT = 180.0  # seconds for `closeloop run` to migrate, synchronise 200 branches and listen
REQUEST_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Member:
    """A staff user the benchmark signs in: who, in which role, and the paths of their own pages."""

    role: str
    username: str
    paths: dict[str, str]


@dataclass(slots=True)
class Run:
    """One page × role × mode: what the client timed, and the CPU each side spent meanwhile."""

    page: str
    role: str
    mode: str
    timings: list[float] = field(default_factory=list)  # ms
    errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # seconds: server, database, client
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


async def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    async with _database(args) as url:
        members = await _prepare(url, args.sessions)
        async with _server(url) as (base, pid):
            cpu = CpuProbe(pid, url)
            try:
                runs = await _measure(base, cpu, members, args)
            finally:
                await cpu.close()
    _print_table(runs)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    def names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
        def parse(value: str) -> list[str]:
            chosen = [name.strip() for name in value.split(",") if name.strip()]
            if not chosen or set(chosen) - set(allowed):
                raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
            return [name for name in allowed if name in chosen]

        return parse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL admin URL")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="fill a named database once and reuse it")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each busy and think run")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between two requests of a session")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent sessions per role")
    parser.add_argument("--pages", type=names(PAGES), default=list(PAGES))
    parser.add_argument("--roles", type=names(ROLES), default=list(ROLES))
    parser.add_argument("--modes", type=names(MODES), default=list(MODES))
    return parser.parse_args(argv)


# -- the data -------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _database(args: argparse.Namespace) -> AsyncIterator[str]:
    """The URL of a filled database: a scratch one dropped afterwards, or with --keep a named one filled once."""
    if not args.keep:
        async with scratch_database("postgresql", args.url) as url:
            await _fill(url, args.rows)
            yield url
        return
    name = f"closeloop_bench_console_{args.rows}"
    url = make_url(args.url).set(database=name).render_as_string(hide_password=False)
    admin = create_async_engine(normalize_url(args.url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
            if exists and not await _is_filled(url, args.rows):
                print(f"{name} is incomplete (an interrupted fill?): filling it again")
                await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                exists = None
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    if exists:
        print(f"reusing {name} (--keep)")
    else:
        await _fill(url, args.rows)
    yield url


async def _is_filled(url: str, rows: int) -> bool:
    """Whether an earlier run got as far as the grouping pass (the last step of a fill)."""
    db = Database(url)
    try:
        async with db.sessions() as session:
            feedback = await session.scalar(select(func.count()).select_from(Feedback))
            evidence = await session.scalar(select(func.count()).select_from(TicketEvidence))
        return (feedback or 0) >= rows and (evidence or 0) > 0
    except DBAPIError:  # no tables yet
        return False
    finally:
        await db.dispose()


async def _fill(url: str, rows: int) -> None:
    db = Database(url)
    try:
        await upgrade(db)
        filled = await fill(db, rows)
        print(f"filled {filled.feedback:,} feedback rows and {filled.cases:,} cases in {filled.seconds:.0f} s")
        started = time.perf_counter()
        departments = dict.fromkeys(CATEGORIES, "branch_operations")
        result = await run_grouping(db, departments, embed, now=NOW, rules=TicketRules(cluster_distance=0.5))
        print(f"grouping pass: {result.opened} tickets opened in {time.perf_counter() - started:.0f} s")
        await _work_off_alerts(db)
    finally:
        await db.dispose()


async def _work_off_alerts(db: Database) -> None:
    """Escalate the cases a year of data leaves past their SLA and work off their alerts (to nobody: there are no
    subscriptions), as the server's case jobs would in its first minutes, 20 alerts every 5 s, during the runs."""
    logging.getLogger("reporting.alerts").setLevel(logging.ERROR)  # else a warning per alert: nobody subscribed
    started = time.perf_counter()
    escalated = await escalate_overdue(db, utcnow())
    dispatcher = AlertDispatcher(db, Notifier(db))
    while await dispatcher.dispatch_once(limit=100):
        pass
    print(f"escalated {len(escalated)} overdue cases and handled their alerts in {time.perf_counter() - started:.0f} s")
    await settle(db, "cases", "outbox")  # the escalation rewrote a tenth of the cases


async def _prepare(url: str, sessions: int) -> list[Member]:
    """Add the staff users (or find them again with --keep) and each one's pages."""
    db = Database(url)
    try:
        async with db.sessions() as session:
            busiest = await session.scalars(
                select(Branch.code)
                .join(Ticket, Ticket.branch_id == Branch.id)
                .join(TicketEvidence, TicketEvidence.ticket_id == Ticket.id)
                .group_by(Branch.code)
                .order_by(func.count().desc(), Branch.code)
                .limit(sessions)
            )
            codes = list(busiest)
        password_hash = await asyncio.to_thread(hash_password, PASSWORD)
        specs = [("staff", f"bench_staff_{code}", StaffRole.STAFF, ScopeKind.BRANCH, code) for code in codes]
        specs += [("manager", f"bench_manager_{r}", StaffRole.MANAGER, ScopeKind.REGION, r) for r in REGIONS]
        specs += [("admin", f"bench_admin_{n}", StaffRole.ADMIN, ScopeKind.ALL, None) for n in range(1, ADMINS + 1)]
        members = []
        for role, username, staff_role, kind, value in specs:
            new = NewUser(username, username, staff_role, kind, value, password_hash)
            with contextlib.suppress(DuplicateUserError):
                await create_user(db, new, actor=Actor(ActorKind.SYSTEM))
            members.append(Member(role, username, await _paths(db, username)))
        return members
    finally:
        await db.dispose()


async def _paths(db: Database, username: str) -> dict[str, str]:
    user = await find_user(db, username)
    assert user is not None
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
    return {
        "queue": "/console/cases",
        "ticket": f"/console/tickets/{ticket_id}",
        "dashboard": f"/console/dashboard?week={latest_full_week()}",
    }


# -- the server -----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _server(url: str) -> AsyncIterator[tuple[str, int]]:
    """Run `closeloop run` on a free loopback port; yield its base URL and process id, then stop it with SIGTERM."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="closeloop-console-bench-") as name:
        folder = Path(name)
        branches, subscriptions = folder / "branches.toml", folder / "subscriptions.toml"
        branches.write_text(_branches_toml(), encoding="utf-8")
        subscriptions.write_text("", encoding="utf-8")
        environ = {key: value for key, value in os.environ.items() if not key.startswith("CLOSELOOP_")}
        environ |= {
            "CLOSELOOP_DATABASE_URL": url,
            "CLOSELOOP_HTTP_HOST": "127.0.0.1",
            "CLOSELOOP_HTTP_PORT": str(port),
            "CLOSELOOP_TIMEZONE": "Asia/Shanghai",
            "CLOSELOOP_DATA_DIR": str(folder / "data"),
            "CLOSELOOP_NLP_WORKER": "false",
            "CLOSELOOP_FILES_BRANCHES": str(branches),
            "CLOSELOOP_FILES_SUBSCRIPTIONS": str(subscriptions),
        }
        log_path = folder / "server.log"
        with log_path.open("wb") as log:
            server = await asyncio.create_subprocess_exec(
                str(ROOT / ".venv" / "bin" / "closeloop"), "run", cwd=ROOT, env=environ, stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{port}"
                await _wait_for(base, server)
                yield base, server.pid
            finally:
                if server.returncode is None:
                    server.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(server.wait(), 30)
                except TimeoutError:
                    server.kill()
                    await server.wait()
        if server.returncode not in (0, -signal.SIGTERM):
            print(f"the server exited with {server.returncode}; its log ends:\n{log_path.read_text()[-4000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _branches_toml() -> str:
    """fill.py's branches and counters as the operator's file names them, so that the start changes none."""
    entries = []
    for b in range(1, BRANCHES + 1):
        region = REGIONS[(b - 1) * len(REGIONS) // BRANCHES]
        counters = ", ".join(
            f'{{ code = "C{k}", name = {{ en = "Counter {k}", zh = "{k}号窗口" }} }}' for k in range(1, COUNTERS + 1)
        )
        entries.append(f'[[branches]]\ncode = "B{b:03d}"\nregion = "{region}"\n'
                       f'name = {{ en = "Branch {b}", zh = "第{b}支行" }}\ncounters = [{counters}]\n')  # fmt: skip
    return "\n".join(entries)


async def _wait_for(base: str, server: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with ClientSession() as client:
        while time.monotonic() < deadline:
            if server.returncode is not None:
                raise RuntimeError(f"the server exited with {server.returncode} before it answered")
            with contextlib.suppress(OSError):
                async with client.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the server did not answer within {START_TIMEOUT:g} s")


# -- the load -------------------------------------------------------------------------------------------------


async def _measure(base: str, cpu: CpuProbe, members: list[Member], args: argparse.Namespace) -> list[Run]:
    """Sign the sessions in, then time every page × role × mode asked for, printing each run as it ends."""
    runs: list[Run] = []
    async with contextlib.AsyncExitStack() as stack:
        sessions = {role: await _sessions(stack, base, members, role, args.sessions) for role in args.roles}
        print(f"signed in {args.sessions} sessions for each of {', '.join(args.roles)}\n{_HEADER}")
        for page in args.pages:
            for role in args.roles:
                targets = [(client, member.paths[page]) for client, member in sessions[role]]
                for mode in args.modes:
                    if mode != "cold" or page == "dashboard":
                        runs.append(await _timed(targets, Run(page, role, mode), cpu, args))
                        print(_row(runs[-1]), flush=True)
    return runs


async def _sessions(
    stack: contextlib.AsyncExitStack, base: str, members: list[Member], role: str, count: int
) -> list[tuple[ClientSession, Member]]:
    """`count` signed-in browsers of the role, its users taking turns."""
    mine = [member for member in members if member.role == role]
    sessions = [(await stack.enter_async_context(_client(base)), mine[i % len(mine)]) for i in range(count)]
    await asyncio.gather(*(_sign_in(client, member) for client, member in sessions))
    return sessions


async def _timed(targets: list[tuple[ClientSession, str]], run: Run, cpu: CpuProbe, args: argparse.Namespace) -> Run:
    if run.mode != "cold":
        await asyncio.gather(*(_get(client, path, Run(run.page, run.role, "warm-up")) for client, path in targets))
    before = await cpu.sample()
    if run.mode == "cold":
        await asyncio.gather(*(_get(client, path, run) for client, path in targets))
    else:
        think = args.think if run.mode == "think" else 0.0
        await _closed_loop(targets, run, seconds=args.seconds, think=think)
    run.cpu = (await cpu.sample()).since(before)
    run.load = os.getloadavg()
    return run


@contextlib.asynccontextmanager
async def _client(base: str) -> AsyncIterator[ClientSession]:
    # unsafe: the jar keeps cookies from an IP address (127.0.0.1), which browsers do too.
    async with ClientSession(base, cookie_jar=CookieJar(unsafe=True), timeout=ClientTimeout(REQUEST_TIMEOUT)) as c:
        yield c


async def _sign_in(client: ClientSession, member: Member) -> None:
    """Sign in through the form as a browser does: its CSRF cookie and field, then the session cookie."""
    async with client.get("/console/login") as response:
        page = await response.text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None, "no CSRF field on the sign-in page"
    form = {"csrf": match.group(1), "next": "/console", "username": member.username, "password": PASSWORD}
    async with client.post("/console/login", data=form, allow_redirects=False) as response:
        assert response.status == 303, f"sign-in of {member.username} answered {response.status}"
    assert any(cookie.key == "closeloop_staff" for cookie in client.cookie_jar), "no session cookie after sign-in"


async def _closed_loop(targets: list[tuple[ClientSession, str]], run: Run, *, seconds: float, think: float) -> None:
    deadline = time.monotonic() + seconds

    async def session(client: ClientSession, path: str) -> None:
        if think:
            await asyncio.sleep(random.uniform(0, 2 * think))  # sessions start apart, as people do
        while time.monotonic() < deadline:
            await _get(client, path, run)
            if think:
                await asyncio.sleep(random.uniform(0, 2 * think))

    await asyncio.gather(*(session(client, path) for client, path in targets))


async def _get(client: ClientSession, path: str, run: Run) -> None:
    started = time.perf_counter()
    try:
        async with client.get(path, allow_redirects=False) as response:
            await response.read()
            is_ok = response.status == 200
    except (OSError, TimeoutError):
        is_ok = False
    if is_ok:
        run.timings.append((time.perf_counter() - started) * 1000)
    else:
        run.errors += 1


# -- CPU and the printout -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds so far: the server's process tree, each backend of the benchmark's database, this client."""

    server: float
    backends: dict[int, float]
    client: float

    def since(self, before: CpuSample) -> dict[str, float]:
        # A backend that appeared meanwhile started from nothing; one that ended took its seconds with it.
        database = sum(seconds - before.backends.get(pid, 0.0) for pid, seconds in self.backends.items())
        return {"server": self.server - before.server, "database": database, "client": self.client - before.client}


class CpuProbe:
    """Reads /proc for the server's processes and the PostgreSQL backends serving the benchmark's database.

    Other databases on the same PostgreSQL (other people's tests, say) are left out, unlike a sum over every
    postgres process would.
    """

    def __init__(self, server_pid: int, url: str) -> None:
        self._server_pid = server_pid
        self._engine = create_async_engine(normalize_url(url), poolclass=NullPool)
        self._backends = text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                              "AND pid <> pg_backend_pid()")  # fmt: skip

    async def sample(self) -> CpuSample:
        async with self._engine.connect() as conn:
            backends = set((await conn.execute(self._backends)).scalars())
        parents, seconds = _processes()
        tree = {self._server_pid}
        for pid in sorted(parents):  # children have higher ids than their parents, short of a wrap-around
            if parents[pid] in tree:
                tree.add(pid)
        return CpuSample(server=sum(seconds.get(pid, 0.0) for pid in tree),
                         backends={pid: seconds[pid] for pid in backends if pid in seconds},
                         client=time.process_time())  # fmt: skip

    async def close(self) -> None:
        await self._engine.dispose()


def _processes() -> tuple[dict[int, int], dict[int, float]]:
    """Every process's parent and CPU seconds so far (user and system), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, seconds = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            content = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = content[content.rindex(")") + 2 :].split()  # after the name, which may hold spaces
        pid = int(stat.parent.name)
        parents[pid], seconds[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
    return parents, seconds


_HEADER = (f"{'page':<10}{'role':<9}{'mode':<7}{'requests':>9}{'p50':>7}{'p95':>7}{'p99':>7}{'max':>7}{'errors':>7}"
           f"{'server':>8}{'db':>7}{'client':>8}   load (1, 5, 15 min)\n"
           f"{'':<26}{'':>9}{'ms':>7}{'ms':>7}{'ms':>7}{'ms':>7}{'':>7}   CPU ms per request")  # fmt: skip


def _row(run: Run) -> str:
    values = sorted(run.timings)
    done = len(values) + run.errors

    def rank(q: float) -> str:  # nearest rank
        return f"{values[max(0, math.ceil(len(values) * q) - 1)]:.0f}" if values else "-"

    cpu = [f"{run.cpu.get(side, 0.0) * 1000 / done:.1f}" if done else "-" for side in ("server", "database", "client")]
    load = ", ".join(f"{value:.2f}" for value in run.load)
    return (f"{run.page:<10}{run.role:<9}{run.mode:<7}{len(values):>9}{rank(0.5):>7}{rank(0.95):>7}{rank(0.99):>7}"
            f"{rank(1.0):>7}{run.errors:>7}{cpu[0]:>8}{cpu[1]:>7}{cpu[2]:>8}   {load}")  # fmt: skip


def _print_table(runs: list[Run]) -> None:
    print("\nall runs:\n" + _HEADER)
    for run in runs:
        print(_row(run))


if __name__ == "__main__":
    asyncio.run(main())
