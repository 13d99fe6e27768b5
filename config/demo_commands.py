"""`closeloop demo`: fill an empty database with a clearly labelled demo, so a new user sees a living console.

The demo's branches are its own (codes DEMO_*, names "[DEMO] ..." / "【演示】...", regions demo-*), added beside
the operator's, never in their place: the label shows on every console page, real branches never carry demo
rows, and an earlier demo is found and replaced by its branches alone. Because `closeloop run` mirrors the
branches file at every start, the demo also writes DATA_DIR/demo-branches.toml (the operator's branches plus the
demo's); without it the demo branches turn inactive at the next start, their data still in the console.

Only the visits are made up. The comments go through the real analyzer and the worker's storing path, so cases
open by the real flag rules (dated when their feedback came in); one real ticket pass runs with the real
embedding; demo staff then acknowledge, resolve and take up cases and tickets through reporting's own functions.
The demo's alerts and webhook events are marked done without being sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click
from sqlalchemy import func, select

from config.app import Catalog, branch_specs, load_analysis, load_catalog, open_database, ticket_job_options
from config.branches import BranchEntry, load_branches
from config.demo_data import ACCOUNTS, BRANCHES, DEMO_PREFIX, plan_demo
from config.demo_fill import (
    Census,
    open_cases_when_submitted,
    outbox_mark,
    record_demo,
    remove_demo,
    take_census,
    withhold_outbox,
    write_plan,
)
from config.errors import ConfigError
from config.settings import Settings
from config.ticket_commands import require_schema
from config.worker import AnalysisWorker
from store import BranchSpec, CounterSpec, Database, sync_branches, upgrade
from store.analysis_queue import pending_count
from store.models import ActorKind, Branch, Case, Feedback, Ticket, utcnow
from store.staff import Actor, NewUser, create_user
from web.passwords import hash_password

if TYPE_CHECKING:
    from config.worker import Analyzer
    from reporting.ticket_jobs import TicketJobOptions

BRANCHES_FILE = "demo-branches.toml"
QUIET = ("config.worker", "reporting.cases", "reporting.grouping", "reporting.ticket_jobs")  # per-batch INFO lines


class DemoRefusedError(click.ClickException):
    """The database holds something the demo must not mix with or replace."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class DemoRequest:
    """What one run of the demo makes: how many weeks up to `now`, from which seed, and with which rules."""

    weeks: int
    seed: int
    now: datetime
    timezone: str
    branches: list[BranchSpec]  # the operator's branches and the demo's, synced together
    tickets: TicketJobOptions
    batch_size: int = 32


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo wrote, for the summary."""

    feedback_by_branch: dict[str, int]
    analysed: int
    cases: dict[str, int]
    escalated: int
    tickets: dict[str, int]
    passwords: dict[str, str]


@click.command("demo")
@click.option("--weeks", type=click.IntRange(2, 26), default=8, show_default=True,
              help="Weeks of visits, ending now (about 250 feedback a week).")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed makes the same visits.")
@click.option("--force", is_flag=True, help="Replace an earlier demo (never real data: that is refused).")
@click.pass_obj
def demo(settings: Settings, weeks: int, seed: int, force: bool) -> None:
    """Fill an empty database with demo branches, weeks of feedback, cases, tickets and demo staff accounts."""
    catalog = load_catalog(settings)
    tickets = ticket_job_options(settings, catalog)
    request = DemoRequest(weeks, seed, utcnow(), settings.timezone, demo_branch_specs(catalog), tickets,
                          batch_size=settings.nlp.batch_size)  # fmt: skip
    result = asyncio.run(_demo(settings, catalog, request, force=force))
    branches_file = _write_branches_file(settings, catalog)
    _print_summary(settings, request, result, branches_file)


def demo_branch_specs(catalog: Catalog) -> list[BranchSpec]:
    """The operator's branches (as `closeloop run` syncs them) and the demo's."""
    own = [spec for spec in branch_specs(catalog.branches) if not spec.code.startswith(DEMO_PREFIX)]
    return own + [
        BranchSpec(b.code, b.name_en, b.name_zh, b.region, tuple(CounterSpec(*c) for c in b.counters)) for b in BRANCHES
    ]


async def _demo(settings: Settings, catalog: Catalog, request: DemoRequest, *, force: bool) -> DemoResult:
    """Check the database first and load the model next, so a refusal or a missing model writes nothing."""

    database = open_database(settings)
    try:
        await database.ping()
        if settings.database.auto_upgrade:
            await upgrade(database)
        else:
            await require_schema(database)
        check_census(await take_census(database), force=force)
        click.echo("loading the analysis model ...", err=True)
        analyzer = await asyncio.to_thread(load_analysis, settings, catalog)
        return await create_demo(database, analyzer, request, replace=force)
    finally:
        await database.dispose()


def check_census(census: Census, *, force: bool) -> None:
    """Refuse real data always, and an earlier demo unless asked to replace it."""
    if not census.is_demo_only:
        others = [_count(census.feedback - census.demo_feedback, "feedback", "feedback"),
                  _count(census.staff - census.demo_staff, "staff user", "staff users")]  # fmt: skip
        held = " and ".join(part for part in others if not part.startswith("0 "))
        raise DemoRefusedError(f"the database already holds real data ({held}): the demo only fills an empty "
                               "database (point CLOSELOOP_DATABASE_URL or CLOSELOOP_DATA_DIR at a new one)"
                               + ("; --force replaces an earlier demo, never real data" if force else ""))  # fmt: skip
    if not census.is_empty and not force:
        held = f"{_count(census.demo_feedback, 'feedback', 'feedback')}, {_count(census.demo_staff, 'user', 'users')}"
        raise DemoRefusedError(f"the database already holds a demo ({held}): add --force to replace it")


async def create_demo(database: Database, analyzer: Analyzer, request: DemoRequest, *, replace: bool) -> DemoResult:
    """Write the demo into a checked database (removing an earlier one first when `replace`)."""
    # Imported here, as config/ticket_commands.py does: reporting.tickets loads scikit-learn for the clustering.
    from config.demo_work import work_cases, work_tickets

    rng = random.Random(request.seed)
    if replace:
        await remove_demo(database)
    mark = await outbox_mark(database)  # after the removal: SQLite hands the removed rows' ids out again
    await sync_branches(database, request.branches)
    passwords = await _create_accounts(database)
    plan = plan_demo(seed=request.seed, weeks=request.weeks, now=request.now, timezone=request.timezone)
    total = await write_plan(database, plan)
    with _quiet(*QUIET):
        await analyse(database, analyzer, total, batch_size=request.batch_size)
        await _ticket_pass(database, analyzer, request)
    escalated = await work_cases(database, rng, now=request.now)
    await work_tickets(database, now=utcnow())
    await withhold_outbox(database, mark, utcnow())
    await record_demo(database, {"seed": request.seed, "weeks": request.weeks, "feedback": total,
                                 "branches": [b.code for b in BRANCHES]})  # fmt: skip
    return await _result(database, passwords, escalated)


async def _create_accounts(database: Database) -> dict[str, str]:
    """The demo staff users, each with a random password (returned to be printed once)."""
    passwords = {}
    for account in ACCOUNTS:
        password = secrets.token_urlsafe(12)
        password_hash = await asyncio.to_thread(hash_password, password)
        new = NewUser(account.username, account.display_name, account.role, account.scope_kind, account.scope_value,
                      password_hash)  # fmt: skip
        await create_user(database, new, actor=Actor(ActorKind.CLI))
        passwords[account.username] = password
    return passwords


async def analyse(database: Database, analyzer: Analyzer, total: int, *, batch_size: int) -> None:
    """Run the analysis worker (production's loop and storing path) until every demo comment is analysed.

    Raises:
        ConfigError: the model failed on a batch (the worker keeps such feedback pending to retry later).
    """
    from tqdm import tqdm

    with tqdm(total=total, unit="feedback", desc="analysing", file=sys.stderr) as bar:

        async def on_stored(session, results) -> None:
            await open_cases_when_submitted(session, results)
            bar.update(len(results))

        worker = AnalysisWorker(database, lambda: analyzer, batch_size=batch_size, idle_seconds=0.05,
                                on_stored=on_stored)  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name="demo-analysis")
        try:
            while not task.done() and await pending_count(database) and not await _failed(database):
                await asyncio.wait([task], timeout=0.2)
        finally:
            stop.set()
            await task
    error = await _failed(database)
    if error:
        raise ConfigError(f"the analysis failed, so the demo stops half-made (run it again with --force): {error}")


async def _failed(database: Database) -> str | None:
    async with database.sessions() as session:
        query = select(Feedback.analysis_error).where(Feedback.analysis_error.is_not(None)).limit(1)
        return await session.scalar(query)


async def _ticket_pass(database: Database, analyzer: Analyzer, request: DemoRequest) -> None:
    from reporting.ticket_jobs import run_ticket_round

    await run_ticket_round(database, analyzer.embed, request.tickets, now=request.now)


async def _result(database: Database, passwords: dict[str, str], escalated: int) -> DemoResult:
    async with database.sessions() as session:
        by_branch = select(Branch.code, func.count()).join(Feedback, Feedback.branch_id == Branch.id)
        feedback = dict((await session.execute(by_branch.group_by(Branch.code).order_by(Branch.code))).all())
        analysed = select(func.count()).select_from(Feedback).where(Feedback.analysis_status == "done")
        cases = dict((await session.execute(select(Case.status, func.count()).group_by(Case.status))).all())
        tickets = dict((await session.execute(select(Ticket.status, func.count()).group_by(Ticket.status))).all())
        return DemoResult(
            feedback_by_branch={code: n for code, n in feedback.items() if code.startswith(DEMO_PREFIX)},
            analysed=await session.scalar(analysed) or 0,
            cases={str(status): n for status, n in cases.items()},
            escalated=escalated,
            tickets={str(status): n for status, n in tickets.items()},
            passwords=passwords,
        )


def _write_branches_file(settings: Settings, catalog: Catalog) -> Path | None:
    """Write DATA_DIR/demo-branches.toml unless the configured file already holds the demo branches."""
    configured = {b.code for b in catalog.branches.branches}
    if all(b.code in configured for b in BRANCHES):
        return None
    path = settings.data_dir / BRANCHES_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_branches(catalog.branches.branches), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    load_branches(path)  # what the next start will read must be valid
    return path


def render_branches(configured: Sequence[BranchEntry]) -> str:
    """A branches file holding the operator's branches and the demo's, for CLOSELOOP_FILES_BRANCHES."""
    entries = [(b.code, b.region, b.name.en, b.name.zh, tuple((c.code, c.name.en, c.name.zh) for c in b.counters))
               for b in configured if not b.code.startswith(DEMO_PREFIX)]  # fmt: skip
    entries += [(b.code, b.region, b.name_en, b.name_zh, b.counters) for b in BRANCHES]
    lines = [
        "# Written by `closeloop demo`: your branches and the demo's (codes DEMO_*). Start with",
        "# CLOSELOOP_FILES_BRANCHES pointing here to keep the demo branches open; edit your own file, not this one.",
    ]
    for code, region, name_en, name_zh, counters in entries:
        lines += ["", "[[branches]]", f"code = {_quoted(code)}"]
        if region is not None:
            lines.append(f"region = {_quoted(region)}")
        lines.append(f"name = {{ en = {_quoted(name_en)}, zh = {_quoted(name_zh)} }}")
        if counters:
            lines.append("counters = [")
            lines += [f"  {{ code = {_quoted(c)}, name = {{ en = {_quoted(en)}, zh = {_quoted(zh)} }} }},"
                      for c, en, zh in counters]  # fmt: skip
            lines.append("]")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's (the file is read back and validated after writing)."""
    return json.dumps(text, ensure_ascii=False)


def _print_summary(settings: Settings, request: DemoRequest, result: DemoResult, branches_file: Path | None) -> None:
    names = {b.code: b for b in BRANCHES}
    local = request.now.astimezone(ZoneInfo(request.timezone))
    click.echo(f"Demo data written: {request.weeks} weeks up to {local:%Y-%m-%d %H:%M} ({request.timezone}), "
               f"seed {request.seed}. Everything is labelled [DEMO] / 【演示】.")  # fmt: skip
    click.echo(f"branches ({len(result.feedback_by_branch)}, regions "
               f"{', '.join(sorted({b.region for b in BRANCHES}))}):")  # fmt: skip
    for code, count in result.feedback_by_branch.items():
        click.echo(f"  {code:<16} {names[code].name_en:<36} {names[code].region:<11} {count:>5} feedback")
    total = sum(result.feedback_by_branch.values())
    click.echo(f"feedback: {total} ({result.analysed} analysed by the model)")
    click.echo(f"cases: {sum(result.cases.values())} ({_breakdown(result.cases)}); {result.escalated} escalated")
    click.echo(f"tickets: {sum(result.tickets.values())} ({_breakdown(result.tickets)})")
    click.echo("demo staff accounts (demo passwords, shown this once; for trying the console, not for real use):")
    for account in ACCOUNTS:
        scope = f"{account.scope_kind}:{account.scope_value}" if account.scope_value else "all branches"
        password = result.passwords[account.username]
        click.echo(f"  {account.username:<13} {account.role:<8} {scope:<24} password {password}")
    click.echo(f"console: {settings.public_url}/console (start the server with `closeloop run`)")
    if branches_file is not None:
        click.echo(f"note: the demo branches are not in {settings.files.branches}; start with "
                   f"CLOSELOOP_FILES_BRANCHES={branches_file} to keep their survey links open (otherwise the next "
                   "start marks them inactive; their data stays in the console)")  # fmt: skip


def _breakdown(counts: dict[str, int]) -> str:
    return ", ".join(f"{status.replace('_', ' ')} {n}" for status, n in sorted(counts.items())) or "none"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Hold these loggers at WARNING: a line per analysed batch would bury the progress bar."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
