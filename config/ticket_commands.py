"""`closeloop tickets run`: one improvement-ticket pass and the resolved-ticket check, on demand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from config.app import Catalog, load_analysis, load_catalog, open_database, ticket_job_options
from config.settings import Settings
from store import Database, StoreError, current_revision, head_revision

if TYPE_CHECKING:
    from reporting.ticket_jobs import TicketJobOptions, TicketRound

ISO_EXAMPLE = "2026-03-02T09:00 or 2026-03-02T09:00+08:00"


@click.group()
def tickets() -> None:
    """Improvement tickets: recurring complaints of a branch and category, with an owning department."""


@tickets.command("run")
@click.option("--now", "now_text", default=None,
              help=f"When the window ends, ISO 8601 ({ISO_EXAMPLE}); without an offset the time is local "
                   "(CLOSELOOP_TIMEZONE). Default: now.")  # fmt: skip
@click.pass_obj
def tickets_run(settings: Settings, now_text: str | None) -> None:
    """Group the window's complaints into tickets (open, update, reopen), then check the resolved ones."""
    now = parse_now(now_text, settings.timezone)
    catalog = load_catalog(settings)
    options = ticket_job_options(settings, catalog)
    click.echo(f"window ending {now.isoformat()}")
    result = asyncio.run(_run(settings, catalog, options, now))
    grouping = result.grouping
    if grouping.skipped:
        click.echo("grouping skipped: another process is running a pass (it holds the PostgreSQL lock)")
    else:
        ids = ", ".join(map(str, grouping.ticket_ids)) or "none"
        click.echo(f"tickets: {grouping.opened} opened, {grouping.updated} updated, {grouping.reopened} reopened "
                   f"(tickets changed: {ids})")  # fmt: skip
    verified = sum(v.improved for v in result.verifications)
    click.echo(f"resolved tickets checked: {len(result.verifications)}, verified: {verified}")
    for check in result.verifications:
        before, after = check.data["before"]["complaints"], check.data["after"]["complaints"]
        outcome = "verified" if check.improved else "not improved beyond noise; stays resolved"
        click.echo(f"  ticket {check.ticket_id}: {before} complaints before, {after} after: {outcome}")


def parse_now(text: str | None, timezone: str) -> datetime:
    """The pass's moment in UTC: now, or an ISO 8601 date-time (local to `timezone` without an offset).

    Raises:
        click.BadParameter: not ISO 8601, or later than now (a pass dates the tickets it opens and updates).
    """
    current = datetime.now(UTC)
    if text is None:
        return current
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date-time (e.g. {ISO_EXAMPLE})",
                                 param_hint="'--now'") from None  # fmt: skip
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    moment = moment.astimezone(UTC)
    if moment > current:
        raise click.BadParameter(f"{text!r} is in the future: a pass would date tickets ahead of time",
                                 param_hint="'--now'")  # fmt: skip
    return moment


async def _run(settings: Settings, catalog: Catalog, options: TicketJobOptions, now: datetime) -> TicketRound:
    """Check the database first (a wrong one fails in a second, not after the model's load), then run the round."""
    from reporting.ticket_jobs import run_ticket_round

    database = open_database(settings)
    try:
        await database.ping()
        await require_schema(database)
        analyzer = await asyncio.to_thread(load_analysis, settings, catalog)
        return await run_ticket_round(database, analyzer.embed, options, now=now)
    finally:
        await database.dispose()


async def require_schema(database: Database) -> None:
    revision, head = await current_revision(database), head_revision()
    if revision is None:
        raise StoreError(f"{database.target} has no tables yet: run `closeloop db upgrade`")
    if revision != head:
        raise StoreError(f"{database.target} is at schema revision {revision}, this version needs {head}: "
                         "run `closeloop db upgrade`")  # fmt: skip
