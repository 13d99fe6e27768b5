"""Weekly digests out on schedule: each sent once to every subscriber, retried when a channel fails, never lost.

The ``digests`` table is the ledger. A round first inserts one row per scope, channel and language that has
active subscribers for the week now due; its unique key makes the insert the claim on the week, so a second
process or a restart finds the row instead of making another. Then each row that is due is leased (pending, a
failed row whose back-off has passed, or a "sending" row whose sender went quiet for longer than the lease) by
one conditional UPDATE that also counts the attempt, and only the sender holding that attempt may write the row
after. The row's ``recipients`` list records each subscriber's outcome straight after their send, so a sender
that dies mid-way costs at most one repeated message, to the subscriber it was sending to at the time.

Subscribers who join while their group's row is not finished are added when it is next leased; once the row is
sent, a newcomer waits for the next week (the unique key allows one digest per group and week). Only the week
now due is sent: a row of an older week that never went out stays as it is rather than arriving weeks late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from time import monotonic
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from reporting.delivery.notifier import Notice, Notifier
from reporting.delivery.outbox import Backoff
from reporting.digest import DigestData, Names, build_digest
from reporting.periods import Period
from reporting.render import RenderedDigest, render_digest
from reporting.schedule import GRACE, due_week, next_run
from reporting.scope import ReportingError, Scope
from store import Database
from store.models import Digest, DigestStatus, Subscription, SubscriptionPurpose, utcnow

log = logging.getLogger(__name__)

# A recipient's status in digests.recipients ("pending": still owed the digest); SENT, RETRY and FAILED also name
# a row's outcome in a round.
PENDING, SENT, GONE, FAILED, RETRY = "pending", "sent", "gone", "failed", "retry"
# Keys of digests.artefacts.
LEASED_AT, NEXT_ATTEMPT_AT, GAVE_UP, SUBJECT = "leased_at", "next_attempt_at", "gave_up", "subject"
ERROR_LIMIT = 2000
ERROR_WAIT = timedelta(minutes=1)  # after a round that failed (the database went away)
# The longest sleep: picks up subscribers added meanwhile and rows a dead sender left, and copes with a clock
# that jumps (a suspended machine, an NTP step) while the loop sleeps towards next Monday.
POLL = timedelta(minutes=5)
UNIQUE_KEY = ("scope_kind", "scope_value", "period_start", "channel", "language")

Key = tuple[str, str, str, str]  # scope kind, scope value ("" for all), channel, language


@dataclass(frozen=True, slots=True)
class DigestOptions:
    """When digests go out and how hard to try; the composition root builds it from ``[reporting]``.

    ``lease``: how long a "sending" row may stay silent before another sender takes it over; each send ends
    within its channel's timeout and refreshes the lease, so this only has to outlast one send.
    """

    timezone: str = "UTC"
    weekday: str = "monday"
    at: time = time(8, 0)
    min_responses: int = 10
    category_names: Names = field(default_factory=dict)
    max_attempts: int = 8
    backoff: Backoff = field(default_factory=Backoff)
    lease: timedelta = timedelta(minutes=15)
    grace: timedelta = GRACE


@dataclass(slots=True)
class DigestSummary:
    """What one round did, in rows; ``due_again_at`` is the earliest moment a row of the week is due again."""

    week: str | None = None
    created: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    delivered: int = 0  # messages that reached a subscriber
    due_again_at: datetime | None = None

    def due_again(self, moment: datetime | None) -> None:
        if moment is not None and (self.due_again_at is None or moment < self.due_again_at):
            self.due_again_at = moment


async def send_due_digests(db: Database, notifier: Notifier, options: DigestOptions, now: datetime) -> DigestSummary:
    """Create the rows of the week due at ``now``, then send every row of it that is due; return what happened."""
    week = due_week(now, options.weekday, options.at, options.timezone, grace=options.grace)
    if week is None:
        return DigestSummary()
    groups = await subscriber_groups(db)
    summary = DigestSummary(week=week.label, created=await _create_rows(db, week, groups))
    sender = _Round(db, notifier, options, week, groups, now)
    for row in await _unfinished_rows(db, week):
        await sender.handle(row, summary)
    summary.delivered = sender.delivered
    return summary


async def run_digest_jobs(
    db: Database,
    notifier: Notifier,
    options: DigestOptions,
    stop: asyncio.Event,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Until ``stop`` is set: send what is due, then sleep until the next run, a retry or ``POLL``, whichever first."""
    while not stop.is_set():
        now = clock()
        wake = min(next_run(now, options.weekday, options.at, options.timezone), now + POLL)
        try:
            summary = await send_due_digests(db, notifier, options, now)
        except Exception:
            # A background task: a database outage or a renderer's surprise must not end it; rows it leased are
            # taken over when their lease ends.
            log.exception("digests: a round failed; trying again in %s", ERROR_WAIT)
            wake = min(wake, now + ERROR_WAIT)
        else:
            if summary.due_again_at is not None:
                wake = min(wake, summary.due_again_at)
        seconds = max((wake - clock()).total_seconds(), 1.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()


async def subscriber_groups(db: Database) -> dict[Key, list[int]]:
    """Active digest subscriptions with an address, by what they receive: scope, channel and language."""
    query = select(
        Subscription.id, Subscription.scope_kind, Subscription.scope_value, Subscription.channel, Subscription.language
    ).where(
        Subscription.purpose == SubscriptionPurpose.DIGEST,
        Subscription.is_active.is_(True),
        Subscription.address.is_not(None),
    )
    groups: dict[Key, list[int]] = {}
    async with db.sessions() as session:
        for row in await session.execute(query.order_by(Subscription.id)):
            key = (str(row.scope_kind), row.scope_value or "", str(row.channel), row.language)
            groups.setdefault(key, []).append(row.id)
    return groups


async def _create_rows(db: Database, week: Period, groups: Mapping[Key, list[int]]) -> int:
    """Insert the week's row of every group that has none yet; return how many were new."""
    if not groups:
        return 0
    rows = [
        {
            "scope_kind": kind,
            "scope_value": value,
            "period_start": week.first_day,
            "period_end": week.last_day,  # the week's last day, inclusive, as people read "16 to 22 November"
            "channel": channel,
            "language": language,
            "recipients": [{"subscription": sid, "status": PENDING} for sid in ids],
            "artefacts": {},
            "status": DigestStatus.PENDING,
            "attempts": 0,
        }
        for (kind, value, channel, language), ids in groups.items()
    ]
    insert = postgresql_insert if db.dialect == "postgresql" else sqlite_insert
    statement = insert(Digest).values(rows).on_conflict_do_nothing(index_elements=list(UNIQUE_KEY))
    async with db.writing(), db.sessions() as session, session.begin():
        created = (await session.execute(statement.returning(Digest.id))).all()
    if created:
        log.info("digests: %s: %d new digest(s) to send", week.label, len(created))
    return len(created)


async def _unfinished_rows(db: Database, week: Period) -> list[Digest]:
    query = select(Digest).where(Digest.period_start == week.first_day, Digest.status != DigestStatus.SENT)
    async with db.sessions() as session:
        rows = list(await session.scalars(query.order_by(Digest.id)))
    return [row for row in rows if not (row.artefacts or {}).get(GAVE_UP)]


class _Round:
    """One round's sending: leases rows, builds and renders each scope's digest once, records every send."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        options: DigestOptions,
        week: Period,
        groups: Mapping[Key, list[int]],
        now: datetime,
    ) -> None:
        self.db, self.notifier, self.options = db, notifier, options
        self.week, self.groups, self.now = week, groups, now
        self.delivered = 0  # messages that reached a subscriber in this round
        self._started = monotonic()
        self._contents: dict[tuple[str, str], DigestData] = {}
        self._renders: dict[tuple[str, str, str], RenderedDigest] = {}

    def clock(self) -> datetime:
        """The round's ``now`` moved on by the time the round has taken, for leases and back-off."""
        return self.now + timedelta(seconds=monotonic() - self._started)

    async def handle(self, row: Digest, summary: DigestSummary) -> None:
        """Send the row if it is due and still ours to take; count the outcome in ``summary``."""
        due = self._due_at(row)
        if due > self.now:
            summary.due_again(due)
            return
        artefacts = dict(row.artefacts or {})
        if row.attempts >= self.options.max_attempts:  # its last sender stopped mid-way, on the last attempt
            error = f"gave up after {row.attempts} attempt(s): the last sender stopped mid-way"
            values = {"status": DigestStatus.FAILED, "artefacts": artefacts | {GAVE_UP: True}, "last_error": error}
            summary.failed += await self._take(row, **values)
            return
        artefacts[LEASED_AT] = self.clock().isoformat()
        recipients = _merged(row.recipients or [], self.groups.get(_key(row), []))
        values = {"status": DigestStatus.SENDING, "attempts": row.attempts + 1}
        if not await self._take(row, recipients=recipients, artefacts=artefacts, **values):
            return  # another sender took it first
        attempt = row.attempts + 1
        outcome = await self._send(row, attempt, recipients, artefacts)
        if outcome == SENT:
            summary.sent += 1
        elif outcome == RETRY:
            summary.retrying += 1
            summary.due_again(self.clock() + self.options.backoff.delay(attempt))
        elif outcome == FAILED:
            summary.failed += 1

    def _due_at(self, row: Digest) -> datetime:
        artefacts = row.artefacts or {}
        if row.status == DigestStatus.FAILED:
            return _instant(artefacts.get(NEXT_ATTEMPT_AT)) or self.now
        if row.status == DigestStatus.SENDING:
            return (_instant(artefacts.get(LEASED_AT)) or row.created_at) + self.options.lease
        return self.now

    async def _take(self, row: Digest, **values: Any) -> bool:
        """Update the row as read if nobody changed it since (same status and attempts); False if somebody did."""
        statement = (
            update(Digest)
            .where(Digest.id == row.id, Digest.status == row.status, Digest.attempts == row.attempts)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        async with self.db.writing(), self.db.sessions() as session, session.begin():
            return (await session.execute(statement)).rowcount == 1

    async def _send(
        self, row: Digest, attempt: int, recipients: list[dict[str, Any]], artefacts: dict[str, Any]
    ) -> str | None:
        """Send to every recipient still owed the digest; return the row's outcome (None: taken over meanwhile)."""
        owed = [r for r in recipients if r["status"] == PENDING]
        if owed:
            try:
                rendered = await self._rendered(_key(row))
            except ReportingError as exc:  # the branch or region is gone: no retry can help
                await self._close(row.id, attempt, artefacts, recipients, f"cannot build the digest: {exc}")
                return FAILED
            artefacts[SUBJECT] = rendered.subject
            notice = rendered.notice(row.channel)
            subscriptions = await self._subscriptions([r["subscription"] for r in owed])
            for entry in owed:
                await self._deliver(entry, subscriptions.get(entry["subscription"]), notice)
                artefacts[LEASED_AT] = self.clock().isoformat()
                if not await self._write(row.id, attempt, recipients=recipients, artefacts=artefacts):
                    log.warning("digests: digest %d was taken over by another sender; leaving it to them", row.id)
                    return None
        return await self._finish(row, attempt, recipients, artefacts)

    async def _deliver(self, entry: dict[str, Any], subscription: Subscription | None, notice: Notice) -> None:
        """Send to one recipient and note the outcome in its entry (left "pending" when a retry may help)."""
        if subscription is None or not subscription.is_active or not subscription.address:
            entry.update(status=GONE, error="subscription deleted or switched off")
            return
        result = await self.notifier.notify(subscription, notice)
        if result.is_delivered:
            entry.update(status=SENT, at=self.clock().isoformat())
            entry.pop("error", None)
            self.delivered += 1
        elif result.deactivated:
            entry.update(status=GONE, error=result.error)
        elif result.retryable:
            entry["error"] = result.error
        else:
            entry.update(status=FAILED, error=result.error)

    async def _finish(
        self, row: Digest, attempt: int, recipients: list[dict[str, Any]], artefacts: dict[str, Any]
    ) -> str:
        """Close the row as sent, or leave it for a retry after the back-off, or give it up after the last attempt."""
        owed = [r for r in recipients if r["status"] == PENDING]
        errors = "; ".join(f"{r['subscription']}: {r['error']}" for r in recipients if r.get("error"))
        where = f"digest {row.id} ({row.scope_kind} {row.scope_value or 'all'}, {row.channel}, {row.language})"
        if owed and attempt < self.options.max_attempts:
            retry_at = self.clock() + self.options.backoff.delay(attempt)
            log.info("digests: %s: %d recipient(s) left for %s", where, len(owed), retry_at.isoformat())
            artefacts = {**artefacts, NEXT_ATTEMPT_AT: retry_at.isoformat()}
            await self._write(row.id, attempt, status=DigestStatus.FAILED, artefacts=artefacts, last_error=_cut(errors))
            return RETRY
        if owed or not any(r["status"] == SENT for r in recipients):
            reason = f"gave up after {attempt} attempt(s): {errors or 'no active subscriber left'}"
            await self._close(row.id, attempt, artefacts, recipients, reason)
            return FAILED
        sent = sum(1 for r in recipients if r["status"] == SENT)
        log.info("digests: %s sent to %d of %d recipient(s)", where, sent, len(recipients))
        artefacts.pop(NEXT_ATTEMPT_AT, None)
        await self._write(row.id, attempt, status=DigestStatus.SENT, sent_at=self.clock(), artefacts=artefacts,
                          last_error=_cut(errors) or None)  # fmt: skip
        return SENT

    async def _close(
        self, row_id: int, attempt: int, artefacts: dict[str, Any], recipients: list[dict[str, Any]], reason: str
    ) -> None:
        """Mark the row failed for good: no later round takes it again."""
        log.warning("digests: digest %d failed for good: %s", row_id, reason)
        await self._write(row_id, attempt, status=DigestStatus.FAILED, recipients=recipients,
                          artefacts={**artefacts, GAVE_UP: True}, last_error=_cut(reason))  # fmt: skip

    async def _write(self, row_id: int, attempt: int, **values: Any) -> bool:
        """Update the row if this round still holds it (same attempt, still sending); False if it lost it."""
        statement = (
            update(Digest)
            .where(Digest.id == row_id, Digest.attempts == attempt, Digest.status == DigestStatus.SENDING)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        async with self.db.writing(), self.db.sessions() as session, session.begin():
            return (await session.execute(statement)).rowcount == 1

    async def _rendered(self, key: Key) -> RenderedDigest:
        """The digest of a scope in a language, built once per scope and rendered once per language in the round.

        Raises:
            ReportingError: the scope names a branch or region that no longer exists.
        """
        kind, value, _, language = key
        if (kind, value, language) not in self._renders:
            if (kind, value) not in self._contents:
                self._contents[kind, value] = await build_digest(
                    self.db, _scope(kind, value), self.week, min_responses=self.options.min_responses,
                    category_names=self.options.category_names, now=self.now,
                )  # fmt: skip
            # Charts and the PDF are CPU-bound for about a second: off the event loop, which keeps serving.
            content = self._contents[kind, value]
            self._renders[kind, value, language] = await asyncio.to_thread(render_digest, content, language)
        return self._renders[kind, value, language]

    async def _subscriptions(self, ids: list[int]) -> dict[int, Subscription]:
        async with self.db.sessions() as session:
            found = await session.scalars(select(Subscription).where(Subscription.id.in_(ids)))
            return {s.id: s for s in found}


def _key(row: Digest) -> Key:
    return (str(row.scope_kind), row.scope_value or "", str(row.channel), row.language)


def _scope(kind: str, value: str) -> Scope:
    if kind == "branch":
        return Scope.of_branch(value)
    return Scope.of_region(value) if kind == "region" else Scope.bank()


def _merged(recipients: list[dict[str, Any]], subscription_ids: list[int]) -> list[dict[str, Any]]:
    """The row's recipients (copied), with the group's subscribers who joined since added as pending."""
    known = {r["subscription"] for r in recipients}
    joined = [{"subscription": sid, "status": PENDING} for sid in subscription_ids if sid not in known]
    return [dict(r) for r in recipients] + joined


def _instant(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _cut(text: str) -> str:
    return text[:ERROR_LIMIT]
