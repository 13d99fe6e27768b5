"""One-row leases on the outbox: claim the oldest due row of some topics, then write to it only while it is ours.

Staff alerts (reporting.alerts) and messages to customers (reporting.contact) share the webhook's outbox table but
send one row per claim, since one row may take several sends or a history entry. Both claim alike: the claim counts
the attempt and moves ``next_attempt_at`` past the lease, so a second dispatcher skips the row; every later write
names the attempt it claimed, so a row re-claimed after an expired lease belongs to its new claimer alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from store import Database
from store.models import Base, OutboxMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    """A leased row as it was claimed; ``attempt`` counts this attempt and proves the lease in later writes."""

    id: int
    topic: str
    payload: dict[str, Any]
    attempt: int


class LeasedRows:
    """Claim due rows of ``topics`` one at a time and write to a claimed row only while the lease is ours."""

    def __init__(
        self,
        database: Database,
        topics: Sequence[str],
        *,
        lease: timedelta,
        max_attempts: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._database = database
        self._topics = tuple(topics)
        self._lease = lease
        self._max_attempts = max_attempts
        self._clock = clock

    async def drain(self, send: Callable[[Claim], Awaitable[None]], *, limit: int) -> int:
        """Claim and ``send`` up to ``limit`` due rows, one after another; return how many were tried."""
        for handled in range(limit):
            claim = await self.claim()
            if claim is None:
                return handled
            await send(claim)
        return limit

    async def claim(self) -> Claim | None:
        """Lease the oldest due row and count the attempt, so no other dispatcher takes it meanwhile."""
        now = self._clock()
        due = (
            OutboxMessage.topic.in_(self._topics),
            OutboxMessage.delivered_at.is_(None),
            OutboxMessage.next_attempt_at <= now,
            OutboxMessage.attempts < self._max_attempts,
        )
        chosen = select(OutboxMessage.id).where(*due).order_by(OutboxMessage.id).limit(1)
        async with self._database.writing(), self._database.sessions() as session, session.begin():
            if self._database.dialect == "postgresql":
                # Lock first, then update by id: see OutboxDispatcher._claim for why not one statement here.
                row_id = await session.scalar(chosen.with_for_update(skip_locked=True))
                if row_id is None:
                    return None
                where = OutboxMessage.id == row_id
            else:
                where = OutboxMessage.id.in_(chosen.scalar_subquery())
            statement = (
                update(OutboxMessage)
                .where(where, *due)
                .values(attempts=OutboxMessage.attempts + 1, next_attempt_at=now + self._lease)
                .returning(OutboxMessage.id, OutboxMessage.topic, OutboxMessage.payload, OutboxMessage.attempts)
                .execution_options(synchronize_session=False)
            )
            row = (await session.execute(statement)).first()
        return None if row is None else Claim(row.id, row.topic, dict(row.payload), row.attempts)

    async def write(self, claim: Claim, values: dict[str, Any], *, record: Base | None = None) -> bool:
        """Update the claimed row and add ``record`` in one transaction, only while the row is still ours.

        Returns whether it was: False when the lease ran out and another claim took the row, or it was delivered.
        """
        owned = update(OutboxMessage).where(
            OutboxMessage.id == claim.id, OutboxMessage.attempts == claim.attempt, OutboxMessage.delivered_at.is_(None)
        )
        async with self._database.writing(), self._database.sessions() as session, session.begin():
            changed = await session.execute(owned.values(**values))
            is_ours = bool(changed.rowcount)
            if is_ours and record is not None:
                session.add(record)
        return is_ours


async def run_until(
    stop: asyncio.Event, dispatch_once: Callable[[], Awaitable[int]], *, name: str, idle_seconds: float
) -> None:
    """Call ``dispatch_once`` until ``stop`` is set, pausing ``idle_seconds`` whenever it found nothing due."""
    while not stop.is_set():
        try:
            handled = await dispatch_once()
        except Exception:
            # A background task: a database outage must not end it; the next round tries again.
            log.exception("%s: sending failed; trying again in %g s", name, idle_seconds)
            handled = 0
        if handled == 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle_seconds):
                    await stop.wait()
