"""The scheduled ticket pass: group the window's complaints into tickets, then check the resolved ones.

    options = TicketJobOptions(rules, departments, category_names, interval=3600.0)
    await run_ticket_jobs(db, embed_provider, options, stop)

The embedding model loads in the background (the analysis worker's lazy load), so each round first asks
`embed_provider` for it; while it is not there yet the round is skipped and retried after `retry` seconds
rather than a whole interval. Grouping runs before verification so that a problem which came back reopens
its ticket before the numbers could mark that ticket verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from reporting.complaints import Embed, TicketRules
from reporting.grouping import GroupingResult, run_grouping
from reporting.tickets import Verification, verify_resolved
from store import Database
from store.models import utcnow

log = logging.getLogger(__name__)

# The embed function once the model is loaded, else None. Embed stays synchronous: run_grouping calls it in a thread.
EmbedProvider = Callable[[], Awaitable[Embed | None]]


@dataclass(frozen=True, slots=True)
class TicketJobOptions:
    """What a round needs: the rules, each category's owning department and name, and how often to run."""

    rules: TicketRules
    departments: Mapping[str, str]
    category_names: Mapping[str, str] = field(default_factory=dict)
    interval: float = 3600.0  # seconds between rounds; 0: no scheduled rounds (`closeloop tickets run` only)
    retry: float = 60.0  # seconds until the next try while the model is still loading

    def __post_init__(self) -> None:
        if self.interval < 0 or self.retry <= 0:
            raise ValueError("the ticket job's interval must not be negative, its retry must be longer than zero")


@dataclass(frozen=True, slots=True)
class TicketRound:
    """One round's outcome: what grouping did and which resolved tickets were checked."""

    grouping: GroupingResult
    verifications: list[Verification]


async def run_ticket_round(db: Database, embed: Embed, options: TicketJobOptions, *, now: datetime) -> TicketRound:
    """Group at `now`, then verify the tickets resolved at least a window before it."""
    grouping = await run_grouping(
        db, options.departments, embed, now=now, rules=options.rules, category_names=options.category_names
    )
    verifications = await verify_resolved(db, now, options.rules)
    if verifications:
        improved = sum(v.improved for v in verifications)
        log.info("tickets: %d resolved tickets checked, %d verified", len(verifications), improved)
    return TicketRound(grouping, verifications)


async def run_ticket_jobs(
    db: Database, embed_provider: EmbedProvider, options: TicketJobOptions, stop: asyncio.Event
) -> None:
    """Until `stop` is set: a round at once, then one every `interval` (every `retry` while the model loads)."""
    if not options.interval:
        log.info("tickets: no scheduled passes (interval 0)")
        return
    while not stop.is_set():
        delay = options.interval
        try:
            embed = await embed_provider()
            if embed is None:
                log.info("tickets: the embedding model is not loaded yet; next try in %g s", options.retry)
                delay = options.retry
            else:
                await _until_stopped(run_ticket_round(db, embed, options, now=utcnow()), stop)
        except Exception:
            # A background task: a database outage or a failing model must not end it; the next round tries again.
            log.exception("tickets: a round failed; next round in %g s", delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()


async def _until_stopped(work: Awaitable[TicketRound], stop: asyncio.Event) -> None:
    """Run a round, cancelling it when `stop` is set: a pass can embed for minutes and a shutdown must not wait.

    Each ticket change is its own transaction, so a cancelled pass leaves whole changes and the next one goes on.
    """
    round_task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([round_task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not round_task.done():
            round_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await round_task
    if not round_task.cancelled():
        round_task.result()  # a failed round raises here, into the loop's log
