"""Improvement tickets, the outer loop: recurring complaints of a branch × category become a ticket with an owner.

    departments = {c.id: c.department for c in taxonomy.categories}
    result = await run_grouping(db, departments, encoder.encode, now=now, rules=TicketRules())
    checked = await verify_resolved(db, now)
    await start(db, ticket_id, actor_id=user.id)

reporting.grouping finds the problems and opens, updates and reopens tickets; this module checks resolved
tickets against the numbers a window later and carries the staff actions (start, resolve, verify, comment).
Each action is one transaction over the locked ticket with a TicketEvent (who, the state before and after) and
a webhook event; the errors are TicketError subclasses whose messages are safe to show staff.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.complaints import GroupCounts, TicketRules, rate_change, window_counts
from reporting.delivery.outbox import add_event
from reporting.figures import compare_figures, share
from reporting.grouping import ACTIVE, GroupingResult, lock_ticket, run_grouping, ticket_payload
from reporting.scope import staff_covers
from store import Database
from store.audit import audit_entry
from store.models import ActorKind, Branch, StaffUser, Ticket, TicketEvent, TicketStatus, utcnow

__all__ = [
    "GroupingResult",
    "TicketAccessError",
    "TicketError",
    "TicketInputError",
    "TicketNotFoundError",
    "TicketRules",
    "TicketStateError",
    "Verification",
    "comment",
    "resolve",
    "run_grouping",
    "start",
    "verify",
    "verify_resolved",
]

# -- checking resolved tickets -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verification:
    """A resolved ticket's window after resolution against the window before it."""

    ticket_id: int
    improved: bool
    data: dict[str, Any]


async def verify_resolved(db: Database, now: datetime, rules: TicketRules | None = None) -> list[Verification]:
    """Check every ticket resolved at least a window ago and not checked since: did its complaints fall beyond noise?

    The branch × category's complaints in the window after resolution are compared with the window before
    (the exact Poisson rate test), and so is their share of the category's feedback (two-proportion z-test).
    Either falling beyond noise moves the ticket to VERIFIED; the numbers go into a "verification" event either
    way, and a ticket that did not improve stays resolved (it is not checked again until resolved again).
    """
    rules = rules or TicketRules()
    checked_since = (
        select(TicketEvent.id)
        .where(
            TicketEvent.ticket_id == Ticket.id,
            TicketEvent.kind == "verification",
            TicketEvent.created_at >= Ticket.resolved_at,
        )
        .exists()
    )
    due = (
        select(Ticket.id, Ticket.branch_id, Ticket.category, Ticket.resolved_at)
        .where(Ticket.status == TicketStatus.RESOLVED, Ticket.resolved_at <= now - rules.window, ~checked_since)
        .order_by(Ticket.id)
    )
    async with db.sessions() as session:
        rows = (await session.execute(due)).all()
    results = []
    for row in rows:
        async with db.sessions() as session:
            key = (row.branch_id, row.category)
            counts = await window_counts(
                session, db.dialect, rules, end=row.resolved_at + rules.window, branch_id=key[0], category=key[1]
            )
        result = await _record_verification(db, row.id, row.resolved_at, counts.get(key, GroupCounts()), rules, now)
        results += [result] if result else []
    return results


async def _record_verification(
    db: Database, ticket_id: int, resolved_at: datetime, counts: GroupCounts, rules: TicketRules, now: datetime
) -> Verification | None:
    rate = rate_change(counts.complaints, counts.previous_complaints, confidence=rules.confidence)
    after = share(counts.complaints, counts.feedback, min_responses=rules.min_share_feedback)
    before = share(counts.previous_complaints, counts.previous_feedback, min_responses=rules.min_share_feedback)
    share_change = compare_figures(after, before, confidence=rules.confidence)
    fewer = rate.is_beyond_noise and rate.direction == "down"
    lower_share = share_change.is_beyond_noise and share_change.direction == "down"
    data = {
        "before": {"complaints": counts.previous_complaints, "feedback": counts.previous_feedback,
                   "share_pct": before.value},
        "after": {"complaints": counts.complaints, "feedback": counts.feedback, "share_pct": after.value},
        "window_days": rules.window.days,
        "rate_test": {"p_value": round(rate.p_value, 6), "beyond_noise": rate.is_beyond_noise},
        "share_test": {"statistic": share_change.statistic, "beyond_noise": share_change.is_beyond_noise},
        "improved": fewer or lower_share,
    }  # fmt: skip
    async with db.writing(), db.sessions() as session, session.begin():
        ticket = await lock_ticket(session, db, ticket_id)
        if ticket is None or ticket.status != TicketStatus.RESOLVED or ticket.resolved_at != resolved_at:
            return None  # reopened or verified by hand since it was picked
        before_state = _state(ticket)
        if data["improved"]:
            ticket.status, ticket.verified_at, ticket.updated_at = TicketStatus.VERIFIED, now, now
        data |= {"before_state": before_state, "after_state": _state(ticket)}
        session.add(TicketEvent(ticket_id=ticket.id, kind="verification", data=data, created_at=now))
        if data["improved"]:
            branch = await session.get_one(Branch, ticket.branch_id)
            add_event(session, "ticket.verified", ticket_payload(ticket, branch, now, by="verification"))
    return Verification(ticket_id, bool(data["improved"]), data)


# -- staff actions ----------------------------------------------------------------------------------------------


class TicketError(Exception):
    """A ticket action that cannot be done as asked; the message is safe to show staff."""


class TicketNotFoundError(TicketError):
    """No ticket with that id."""


class TicketStateError(TicketError):
    """The ticket's status does not allow the action (starting a resolved ticket)."""


class TicketAccessError(TicketError):
    """The staff user is unknown, inactive, or not responsible for the ticket's branch."""


class TicketInputError(TicketError):
    """A value given with the action is not acceptable (an empty comment)."""


NOTE_LIMIT = 4000
# action -> (statuses it may start from, status it leads to, webhook topic)
TRANSITIONS: dict[str, tuple[tuple[TicketStatus, ...], TicketStatus, str]] = {
    "started": ((TicketStatus.OPEN,), TicketStatus.IN_PROGRESS, "ticket.updated"),
    "resolved": (ACTIVE, TicketStatus.RESOLVED, "ticket.resolved"),
    "verified": ((TicketStatus.RESOLVED,), TicketStatus.VERIFIED, "ticket.verified"),
}


async def start(db: Database, ticket_id: int, *, actor_id: int, now: datetime | None = None) -> Ticket:
    """Take up an open ticket: it is in progress."""
    return await _transition(db, ticket_id, "started", actor_id=actor_id, note=None, now=now)


async def resolve(
    db: Database, ticket_id: int, *, actor_id: int, note: str | None = None, now: datetime | None = None
) -> Ticket:
    """Mark an open or in-progress ticket's problem as fixed; verify_resolved checks it a window later."""
    return await _transition(db, ticket_id, "resolved", actor_id=actor_id, note=note, now=now)


async def verify(
    db: Database, ticket_id: int, *, actor_id: int, note: str | None = None, now: datetime | None = None
) -> Ticket:
    """Confirm by hand that a resolved ticket's problem is gone (verify_resolved does it from the numbers)."""
    return await _transition(db, ticket_id, "verified", actor_id=actor_id, note=note, now=now)


async def comment(db: Database, ticket_id: int, body: str, *, actor_id: int, now: datetime | None = None) -> Ticket:
    """Add a staff comment to a ticket's history, in any status."""
    body = _note(body)
    if body is None:
        raise TicketInputError(f"a comment needs 1 to {NOTE_LIMIT} characters")
    now = now or utcnow()
    async with _editing(db, ticket_id, actor_id) as (session, ticket, branch):
        state = _state(ticket)
        data = {"before": state, "after": state}
        session.add(TicketEvent(ticket_id=ticket.id, actor_id=actor_id, kind="comment", body=body, data=data,
                                created_at=now))  # fmt: skip
        session.add(audit_entry(actor_kind=ActorKind.STAFF, actor_id=actor_id, action="ticket.commented",
                                target_type="ticket", target_id=ticket.id, before=state, after=state))  # fmt: skip
        add_event(session, "ticket.updated", ticket_payload(ticket, branch, now, action="comment", actor_id=actor_id))
    return ticket


async def _transition(
    db: Database, ticket_id: int, action: str, *, actor_id: int, note: str | None, now: datetime | None
) -> Ticket:
    sources, target, topic = TRANSITIONS[action]
    body = (note or "").strip() or None
    if body is not None and len(body) > NOTE_LIMIT:
        raise TicketInputError(f"a note needs 1 to {NOTE_LIMIT} characters")
    now = now or utcnow()
    async with _editing(db, ticket_id, actor_id) as (session, ticket, branch):
        if ticket.status not in sources:
            allowed = " or ".join(s.value for s in sources)
            raise TicketStateError(
                f"ticket {ticket_id} is {ticket.status.value}: it can be {action} only when {allowed}"
            )
        before = _state(ticket)
        ticket.status, ticket.updated_at = target, now
        if target == TicketStatus.RESOLVED:
            ticket.resolved_at = now
        if target == TicketStatus.VERIFIED:
            ticket.verified_at = now
        data = {"before": before, "after": _state(ticket)}
        session.add(TicketEvent(ticket_id=ticket.id, actor_id=actor_id, kind=action, body=body, data=data,
                                created_at=now))  # fmt: skip
        session.add(audit_entry(actor_kind=ActorKind.STAFF, actor_id=actor_id, action=f"ticket.{action}",
                                target_type="ticket", target_id=ticket.id, **data))  # fmt: skip
        add_event(session, topic, ticket_payload(ticket, branch, now, action=action, actor_id=actor_id))
    return ticket


@asynccontextmanager
async def _editing(db: Database, ticket_id: int, actor_id: int) -> AsyncIterator[tuple[AsyncSession, Ticket, Branch]]:
    """One write transaction over a locked ticket, with the actor checked against the ticket's branch."""
    async with db.writing(), db.sessions() as session, session.begin():
        ticket = await lock_ticket(session, db, ticket_id)
        if ticket is None:
            raise TicketNotFoundError(f"no ticket {ticket_id}")
        branch = await session.get_one(Branch, ticket.branch_id)
        user = await session.get(StaffUser, actor_id)
        if user is None or not user.is_active:
            raise TicketAccessError(f"staff user {actor_id}: no such active staff user")
        if not staff_covers(user, branch):
            raise TicketAccessError(f"staff user {actor_id} is not responsible for branch {branch.code}")
        yield session, ticket, branch


def _note(text: str | None) -> str | None:
    text = (text or "").strip()
    return text if 0 < len(text) <= NOTE_LIMIT else None


def _state(ticket: Ticket) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"status": ticket.status.value, "resolved_at": moment(ticket.resolved_at),
            "verified_at": moment(ticket.verified_at), "reopened_count": ticket.reopened_count}  # fmt: skip
