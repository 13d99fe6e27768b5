"""The webhook outbox: events written in their cause's transaction, claimed by one dispatcher each, retried.

Writing the event beside its cause (a case opened, a ticket closed) means the event exists exactly when the
cause does: no event for a rolled-back change, no change without its event. A dispatcher then claims due rows
with a lease (``next_attempt_at`` moves past the time the batch can take), so a second dispatcher, in this
process or another, skips them; a dispatcher that dies mid-batch only delays its rows until the lease ends.
A row is never deleted: delivered rows keep ``delivered_at``, given-up rows keep ``last_error``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.delivery.errors import DeliveryError
from reporting.delivery.queue import run_until
from reporting.delivery.webhook import Event, WebhookSender
from store import Database
from store.models import OutboxMessage, utcnow

log = logging.getLogger(__name__)

_TOPIC = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
LEASE_MARGIN = timedelta(seconds=60)  # database time on top of the senders' own timeouts
GAVE_UP = "gave up after"
# Staff alerts live in this table too (written in the same transaction as their case); the alert dispatcher sends
# them, never the webhook.
ALERT_PREFIX = "alert."
# Staff messages to a customer through the bot, likewise: reporting.contact sends them, never the webhook.
CONTACT_PREFIX = "contact."


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between attempts: ``first``, doubling, never more than ``maximum``."""

    first: timedelta = timedelta(seconds=30)
    maximum: timedelta = timedelta(hours=1)

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (1 is the first)."""
        return min(self.first * 2 ** min(max(attempts - 1, 0), 30), self.maximum)


def add_event(session: AsyncSession, topic: str, payload: Mapping[str, Any]) -> OutboxMessage:
    """Add a webhook event to ``session``: it is stored, and later sent, only if the caller's transaction commits.

    ``topic`` is a dotted lower-case name such as ``case.created``; ``payload`` must be JSON-serialisable and
    should carry ids and statuses rather than customer text, which stays on the premises.
    """
    if len(topic) > 64 or not _TOPIC.fullmatch(topic):
        raise ValueError(f"topic {topic!r}: use dotted lower-case words such as 'case.created' (64 characters at most)")
    message = OutboxMessage(topic=topic, payload=dict(payload))
    session.add(message)
    return message


class OutboxDispatcher:
    """Deliver due outbox rows through a WebhookSender, one attempt per claim, with back-off between attempts."""

    def __init__(
        self,
        database: Database,
        sender: WebhookSender,
        *,
        batch_size: int = 10,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._sender = sender
        self._max_attempts = sender.options.max_attempts
        self._batch_size = batch_size
        self._backoff = backoff or Backoff()
        self._clock = clock
        # Events in a batch go out one after another, each within the sender's timeout.
        self._lease = timedelta(seconds=sender.options.timeout) * batch_size + LEASE_MARGIN

    async def run(self, stop: asyncio.Event, *, idle_seconds: float = 2.0) -> None:
        """Deliver until ``stop`` is set, pausing ``idle_seconds`` whenever nothing is due."""
        await run_until(stop, self.dispatch_once, name="outbox", idle_seconds=idle_seconds)

    async def dispatch_once(self) -> int:
        """Claim the events due now and try each once; return how many were tried."""
        events = await self._claim()
        for event, attempt in events:
            try:
                await self._sender.post(event)
            except DeliveryError as exc:
                await self._record_failure(event.id, attempt, exc)
            else:
                await self._record_delivery(event.id)
        return len(events)

    async def _claim(self) -> list[tuple[Event, int]]:
        """Lease up to ``batch_size`` due rows and count the attempt, so no other dispatcher takes them meanwhile."""
        now = self._clock()
        due = (
            ~OutboxMessage.topic.startswith(ALERT_PREFIX),  # staff alerts share the table; their own dispatcher
            ~OutboxMessage.topic.startswith(CONTACT_PREFIX),  # so do messages to customers
            OutboxMessage.delivered_at.is_(None),
            OutboxMessage.next_attempt_at <= now,
            OutboxMessage.attempts < self._max_attempts,
        )
        chosen = select(OutboxMessage.id).where(*due).order_by(OutboxMessage.id).limit(self._batch_size)
        async with self._database.writing(), self._database.sessions() as session, session.begin():
            if self._database.dialect == "postgresql":
                # Pick and lock first. As a subquery of the UPDATE, PostgreSQL may run the SELECT again for each
                # row, and SKIP LOCKED then skips the rows this very statement has just taken: all rows match.
                ids = list(await session.scalars(chosen.with_for_update(skip_locked=True)))
                if not ids:
                    return []
                where = OutboxMessage.id.in_(ids)
            else:
                # One statement: SQLite takes its write lock at once, so even two processes cannot both pick a row.
                where = OutboxMessage.id.in_(chosen.scalar_subquery())
            statement = (
                update(OutboxMessage)
                .where(where, *due)
                .values(attempts=OutboxMessage.attempts + 1, next_attempt_at=now + self._lease)
                .returning(
                    OutboxMessage.id,
                    OutboxMessage.topic,
                    OutboxMessage.payload,
                    OutboxMessage.created_at,
                    OutboxMessage.attempts,
                )
                .execution_options(synchronize_session=False)
            )
            rows = (await session.execute(statement)).all()
        return sorted(((Event(r.id, r.topic, r.payload, r.created_at), r.attempts) for r in rows), key=_by_id)

    async def _record_delivery(self, outbox_id: int) -> None:
        statement = (
            update(OutboxMessage)
            .where(OutboxMessage.id == outbox_id, OutboxMessage.delivered_at.is_(None))
            .values(delivered_at=self._clock(), last_error=None)
        )
        await self._execute(statement)

    async def _record_failure(self, outbox_id: int, attempt: int, error: DeliveryError) -> None:
        """Schedule the next attempt, or give up for good after the last one (the row stays, with its error)."""
        message = str(error)
        if attempt >= self._max_attempts or not error.retryable:
            message = f"{GAVE_UP} {attempt} attempt(s): {message}"
            log.warning("outbox: event %d %s", outbox_id, message)
            # Raising attempts to the cap takes the row out of every later claim.
            values: dict[str, Any] = {"attempts": max(attempt, self._max_attempts)}
        else:
            delay = self._backoff.delay(attempt)
            if error.retry_after is not None:
                delay = max(delay, timedelta(seconds=error.retry_after))
            values = {"next_attempt_at": self._clock() + delay}
            log.info("outbox: event %d attempt %d failed, next in %s: %s", outbox_id, attempt, delay, message)
        statement = (
            update(OutboxMessage)
            # attempts = ours: a row re-claimed after an expired lease belongs to its new claimer.
            .where(OutboxMessage.id == outbox_id, OutboxMessage.attempts == attempt)
            .where(OutboxMessage.delivered_at.is_(None))
            .values(last_error=message[:2000], **values)
        )
        await self._execute(statement)

    async def _execute(self, statement: Any) -> None:
        async with self._database.writing(), self._database.sessions() as session, session.begin():
            await session.execute(statement)


def _by_id(item: tuple[Event, int]) -> int:
    return item[0].id


async def failed_events(database: Database) -> list[OutboxMessage]:
    """The events given up on, oldest first, for the console and for an operator to requeue."""
    async with database.sessions() as session:
        query = select(OutboxMessage).where(
            OutboxMessage.delivered_at.is_(None), OutboxMessage.last_error.like(f"{GAVE_UP} %")
        )
        return list(await session.scalars(query.order_by(OutboxMessage.id)))
