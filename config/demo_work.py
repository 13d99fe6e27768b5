"""The demo staff at work: cases acknowledged, resolved or taken up, and a ticket in progress, with their history.

Every action goes through reporting.cases and reporting.tickets, as a console click would, by the demo user whose
scope covers the branch (the teller in her branch, the manager in his region, the administrator elsewhere), and
at a moment after the case opened, so response times and SLAs read like a working branch network's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from config.demo_data import ACCOUNTS, CASE_NOTES, NOT_A_COMPLAINT_NOTE, RESOLUTION_CODES, TICKET_NOTES
from config.demo_fill import is_demo_branch
from reporting.cases import acknowledge, add_note, assign, escalate_overdue, not_a_complaint, resolve
from reporting.tickets import comment, start
from store import Database
from store.models import Branch, Case, CasePriority, Feedback, ScopeKind, StaffUser, Ticket, TicketStatus

RECENT = timedelta(days=2)  # younger cases are still being worked on; older ones are mostly closed
WORST = ("DEMO_HARBOUR", "waiting_time")  # the problem the demo makes worse: its ticket is taken up first
ROUTINE = (CasePriority.LOW, CasePriority.NORMAL)


@dataclass(frozen=True, slots=True)
class OpenCase:
    id: int
    created_at: datetime
    priority: CasePriority
    branch: str
    region: str | None
    language: str
    callback: bool


class Staff:
    """The demo users, widest scope first (as ACCOUNTS lists them), and who acts for which branch."""

    def __init__(self, users: list[StaffUser]) -> None:
        by_name = {u.username: u for u in users}
        self._users = [by_name[a.username] for a in ACCOUNTS]

    def for_branch(self, code: str, region: str | None) -> int:
        """The narrowest demo user whose scope takes in the branch: who answers its cases."""
        return next(u.id for u in reversed(self._users) if _covers(u, code, region))

    def lead_for(self, code: str, region: str | None) -> int:
        """The manager over the branch, else the administrator: who takes up its improvement tickets."""
        return next(u.id for u in [*self._users[1:], self._users[0]] if _covers(u, code, region))

    @property
    def admin(self) -> int:
        return self._users[0].id


async def work_cases(database: Database, rng: random.Random, *, now: datetime) -> int:
    """Work every demo case as staff would have, then escalate what is overdue; return how many were escalated."""
    staff = await _staff(database)
    for case in await _cases(database):
        actor = staff.for_branch(case.branch, case.region)
        if now - case.created_at > RECENT:
            await _close(database, case, actor, rng, now=now)
        else:
            await _take_up(database, case, actor, rng, now=now)
    return len(await escalate_overdue(database, now))


async def _close(database: Database, case: OpenCase, actor: int, rng: random.Random, *, now: datetime) -> None:
    """An older case: acknowledged within hours, then mostly resolved; a few were no complaint, a few linger.

    Only a routine case turns out to be no complaint: staff never wave away a fraud report or a legal threat.
    """
    seen = case.created_at + timedelta(minutes=rng.randrange(10, 240))
    await acknowledge(database, case.id, actor_id=actor, now=seen)
    draw = rng.random()
    if draw < 0.1 and case.priority in ROUTINE:
        note = NOT_A_COMPLAINT_NOTE[case.language]
        await not_a_complaint(database, case.id, actor_id=actor, note=note, now=seen + timedelta(minutes=20))
    elif draw > 0.92:
        return  # acknowledged and forgotten: the escalation finds it
    else:
        done = min(seen + timedelta(minutes=rng.randrange(60, 3 * 24 * 60)), now - timedelta(hours=1))
        code = "called_back" if case.callback else rng.choice(RESOLUTION_CODES)
        note = rng.choice(CASE_NOTES[case.language])
        await resolve(database, case.id, code, actor_id=actor, note=note, now=max(done, seen + timedelta(minutes=5)))


async def _take_up(database: Database, case: OpenCase, actor: int, rng: random.Random, *, now: datetime) -> None:
    """A recent case: some still new, some acknowledged, some assigned and in progress with a note."""
    seen = case.created_at + timedelta(minutes=rng.randrange(10, 120))
    draw = rng.random()
    if draw < 0.4 or seen >= now:
        return
    await acknowledge(database, case.id, actor_id=actor, now=seen)
    if draw < 0.75:
        return
    later = min(seen + timedelta(minutes=15), now)
    await assign(database, case.id, actor, actor_id=actor, now=later)
    await add_note(database, case.id, rng.choice(CASE_NOTES[case.language]), actor_id=actor, now=later)


async def work_tickets(database: Database, *, now: datetime) -> None:
    """Take up the worst problem's ticket (else the largest) with a plan; the next one gets a comment."""
    staff = await _staff(database)
    async with database.sessions() as session:
        rows = (
            await session.execute(
                select(Ticket.id, Ticket.category, Branch.code, Branch.region)
                .join(Branch, Branch.id == Ticket.branch_id)
                .where(is_demo_branch(), Ticket.status == TicketStatus.OPEN)
                .order_by(Ticket.feedback_count.desc(), Ticket.id)
            )
        ).all()
    rows.sort(key=lambda row: (row.code, row.category) != WORST)  # stable: the worst first, then by size
    if rows:
        first = rows[0]
        actor = staff.lead_for(first.code, first.region)
        await start(database, first.id, actor_id=actor, now=now)
        await comment(database, first.id, TICKET_NOTES[0], actor_id=actor, now=now)
    if len(rows) > 1:
        await comment(database, rows[1].id, TICKET_NOTES[1], actor_id=staff.admin, now=now)


def _covers(user: StaffUser, code: str, region: str | None) -> bool:
    return (
        user.scope_kind == ScopeKind.ALL
        or (user.scope_kind == ScopeKind.REGION and user.scope_value == region)
        or (user.scope_kind == ScopeKind.BRANCH and user.scope_value == code)
    )


async def _staff(database: Database) -> Staff:
    async with database.sessions() as session:
        users = await session.scalars(select(StaffUser).where(StaffUser.username.in_([a.username for a in ACCOUNTS])))
        return Staff(list(users))


async def _cases(database: Database) -> list[OpenCase]:
    query = (
        select(
            Case.id,
            Case.created_at,
            Case.priority,
            Branch.code,
            Branch.region,
            Feedback.language,
            Feedback.callback_requested,
        )
        .join(Branch, Branch.id == Case.branch_id)
        .join(Feedback, Feedback.id == Case.feedback_id)
        .where(is_demo_branch())
        .order_by(Case.id)
    )
    async with database.sessions() as session:
        return [OpenCase(*row) for row in await session.execute(query)]
