"""The review queue: the cases in a user's scope, open first, urgent first, soonest due first, a page at a time.

Scope is part of every statement (reporting.scope.staff_branches on the joined branch), so a filter naming a
branch outside it finds nothing. One statement reads the page (branch, assignee and comment joined in: no query
per row), one counts the cases per status; the page count comes from those counts, not a third statement. Each
is built once per scope and filter (web.scoped_statements), the page's offset bound at each view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, bindparam, case, func, select

from reporting.cases import OPEN
from reporting.scope import staff_branches
from store import Database
from store.models import Branch, Case, CasePriority, CaseStatus, Feedback, ScopeKind, StaffUser
from web.scoped_statements import per_scope

PAGE_SIZE = 50
MAX_PAGE = 100  # a hard cap on the offset (5,000 rows): past it, filters find a case faster than paging does
CLOSED = (CaseStatus.RESOLVED, CaseStatus.NOT_A_COMPLAINT)
STATUS_VIEWS: dict[str, tuple[CaseStatus, ...] | None] = {
    "open": OPEN,
    **{status.value: (status,) for status in CaseStatus},
    "closed": CLOSED,
    "all": None,
}
URGENCY = {CasePriority.URGENT: 0, CasePriority.HIGH: 1, CasePriority.NORMAL: 2, CasePriority.LOW: 3}
PRIORITIES = tuple(URGENCY)
VALUES = frozenset(p.value for p in CasePriority)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What the queue shows: a status view (see STATUS_VIEWS), a branch code, a priority and a page (from 1)."""

    status: str = "open"
    branch: str | None = None
    priority: CasePriority | None = None
    page: int = 1

    @classmethod
    def of(cls, query: Mapping[str, str]) -> QueueFilter:
        """Read the filters from a query string; anything unknown falls back to its default rather than failing."""
        status = query.get("status", "open")
        priority = query.get("priority", "")
        page = query.get("page", "1")
        return cls(
            status=status if status in STATUS_VIEWS else "open",
            branch=query.get("branch") or None,
            priority=CasePriority(priority) if priority in VALUES else None,
            page=min(max(int(page), 1), MAX_PAGE) if page.isdigit() and len(page) <= 9 else 1,
        )

    def query(self, **changes: Any) -> dict[str, str]:
        """The query string of this filter with ``changes``: the links of the pager and the status tabs."""
        values = {"status": self.status, "branch": self.branch, "priority": self.priority, "page": self.page}
        values |= changes
        return {key: str(value) for key, value in values.items() if value and not (key == "page" and value == 1)}


@dataclass(frozen=True, slots=True)
class QueueRow:
    id: int
    branch_code: str
    branch_name_en: str
    branch_name_zh: str
    priority: CasePriority
    status: CaseStatus
    sla_due_at: Any
    escalated_at: Any
    assignee: str | None
    comment: str | None


@dataclass(frozen=True, slots=True)
class Queue:
    rows: list[QueueRow]
    counts: dict[str, int]  # per status, and per view ("open", "closed", "all")
    branches: list[tuple[str, str, str]]  # the filter's choices: (code, English name, Chinese name)
    pages: int
    is_capped: bool  # more cases match than MAX_PAGE pages hold


async def load_queue(db: Database, user: StaffUser, wanted: QueueFilter) -> Queue:
    """The page of the queue ``wanted`` asks for, with the counts and the branch choices, within the user's scope."""
    filters = replace(wanted, status="all", page=1)  # what the counts depend on
    async with db.engine.connect() as conn:  # plain rows: no ORM session needed
        choices = (await conn.execute(_branch_choices(user))).all()
        counted = await conn.execute(_counts(user, filters))
        counts = _view_counts({CaseStatus(status): n for status, n in counted})
        offset = {"offset": (wanted.page - 1) * PAGE_SIZE}
        rows = (await conn.execute(_page(user, replace(wanted, page=1)), offset)).all()
    total = counts[wanted.status]
    pages = max(1, -(-total // PAGE_SIZE))
    return Queue(
        rows=[QueueRow(*row) for row in rows],
        counts=counts,
        branches=[tuple(b) for b in choices],
        pages=min(pages, MAX_PAGE),
        is_capped=pages > MAX_PAGE,
    )


@per_scope
def _branch_choices(user: StaffUser) -> Select[Any]:
    return select(Branch.code, Branch.name_en, Branch.name_zh).where(staff_branches(user)).order_by(Branch.code)


@per_scope
def _counts(user: StaffUser, wanted: QueueFilter) -> Select[Any]:
    return filtered_cases(select(Case.status, func.count()), user, wanted).group_by(Case.status)


@per_scope
def _page(user: StaffUser, wanted: QueueFilter) -> Select[Any]:
    """The page's rows (from the bound "offset"): cases ranked and cut to the page first, then joined to their
    comment and assignee.

    In that order, the join reads PAGE_SIZE comments by primary key rather than every comment in scope (a year
    of feedback behind a deep "all" page took 0.4 s the other way round).
    """
    statuses = STATUS_VIEWS[wanted.status]
    ranked = filtered_cases(select(Case.id), user, wanted)
    if statuses is not None:
        ranked = ranked.where(Case.status.in_(statuses))
    offset = bindparam("offset", type_=Integer)
    ranked = ranked.order_by(*_queue_order()).limit(PAGE_SIZE).offset(offset).subquery()
    columns = (Case.id, Branch.code, Branch.name_en, Branch.name_zh, Case.priority, Case.status, Case.sla_due_at,
               Case.escalated_at, StaffUser.display_name, Feedback.comment)  # fmt: skip
    return (
        select(*columns)
        .select_from(ranked)
        .join(Case, Case.id == ranked.c.id)
        .join(Branch, Branch.id == Case.branch_id)
        .join(Feedback, Feedback.id == Case.feedback_id)
        .outerjoin(StaffUser, StaffUser.id == Case.assignee_id)
        .order_by(*_queue_order())
    )


def _queue_order() -> tuple[ColumnElement[Any], ...]:
    """Open before closed, urgent before low, the soonest deadline first, then the oldest case."""
    is_closed = case((Case.status.in_(OPEN), 0), else_=1)
    urgency = case(*((Case.priority == priority, rank) for priority, rank in URGENCY.items()), else_=len(URGENCY))
    return is_closed, urgency, Case.sla_due_at.asc().nulls_last(), Case.id


def filtered_cases(statement: Select[Any], user: StaffUser, wanted: QueueFilter) -> Select[Any]:
    """Cases limited to the user's scope and the branch and priority filters (their branch joined where they ask).

    Every case has a branch, so a user who sees all of them needs no join: counting an admin's cases without it
    halved the database's time for the queue.
    """
    statement = statement.select_from(Case)
    if user.scope_kind != ScopeKind.ALL or wanted.branch is not None:
        statement = statement.join(Branch, Branch.id == Case.branch_id).where(staff_branches(user))
    if wanted.branch is not None:
        statement = statement.where(Branch.code == wanted.branch)
    if wanted.priority is not None:
        statement = statement.where(Case.priority == wanted.priority)
    return statement


def _view_counts(by_status: dict[CaseStatus, int]) -> dict[str, int]:
    return {
        view: sum(n for status, n in by_status.items() if statuses is None or status in statuses)
        for view, statuses in STATUS_VIEWS.items()
    }
