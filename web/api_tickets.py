"""Improvement tickets in the API: the list, one ticket with its evidence and history, and the staff actions.

Scope is the board's: the ticket's branch joined and `staff_branches(user)` added, so another branch's ticket
answers 404 like a missing id. State changes are reporting.tickets' own (with their events and audit entries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.scope import staff_branches
from reporting.tickets import (
    NOTE_LIMIT,
    TicketError,
    TicketInputError,
    TicketStateError,
    comment,
    resolve,
    start,
    verify,
)
from store import Database
from store.models import (
    Branch,
    Case,
    Feedback,
    StaffRole,
    StaffUser,
    Ticket,
    TicketEvent,
    TicketEvidence,
    TicketStatus,
)
from web.api_auth import api_user, require_api_role
from web.api_io import (
    BODY,
    Page,
    answer,
    branch_json,
    iso,
    masked,
    masked_data,
    query_choice,
    refusals_answered,
    staff_ref,
)
from web.keys import DATABASE
from web.openapi import (
    PAGE_PARAMETERS,
    TIMESTAMP,
    Operation,
    Schema,
    choice,
    integer,
    nullable,
    obj,
    page_of,
    path_id,
    query,
    ref,
    text,
)
from web.tickets import EVENTS_SHOWN, Filters, ticket_in_scope

TICKETS = "/api/v1/tickets"
TICKET = f"{TICKETS}/{{ticket_id}}"
STATUSES = tuple(s.value for s in TicketStatus)
EVIDENCE_SHOWN = 50
NOT_IN_SCOPE = "no such ticket in your scope"


async def list_tickets(request: web.Request) -> web.Response:
    user, db = api_user(request), request.app[DATABASE]
    status = query_choice(request.query, "status", STATUSES) or ""
    wanted = Filters(status=status, branch=request.query.get("branch", ""), category=request.query.get("category", ""),
                     owner=request.query.get("owner", ""))  # fmt: skip
    page = Page.of(request.query)
    statement = (
        select(Ticket, Branch)
        .join(Branch, Branch.id == Ticket.branch_id)
        .where(staff_branches(user), *wanted.conditions())
        .order_by(Ticket.id.desc())
        .limit(page.limit + 1)
    )
    if page.cursor is not None:
        statement = statement.where(Ticket.id < page.cursor)
    async with db.sessions() as session:
        rows = (await session.execute(statement)).all()
    return answer(page.body([ticket_summary(row.Ticket, row.Branch) for row in rows]))


async def get_ticket(request: web.Request) -> web.Response:
    user, db = api_user(request), request.app[DATABASE]
    found = await ticket_in_scope(db, user, int(request.match_info["ticket_id"]))
    if found is None:
        raise web.HTTPNotFound(text=NOT_IN_SCOPE)
    return answer(await ticket_detail(db, user, *found))


def ticket_summary(ticket: Ticket, branch: Branch) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "title": ticket.title,
        "status": ticket.status.value,
        "category": ticket.category,
        "owner_department": ticket.owner_department,
        "branch": branch_json(branch),
        "feedback_count": ticket.feedback_count,
        "reopened_count": ticket.reopened_count,
        "opened_at": iso(ticket.opened_at),
        "updated_at": iso(ticket.updated_at),
        "resolved_at": iso(ticket.resolved_at),
        "verified_at": iso(ticket.verified_at),
    }


async def ticket_detail(db: Database, user: StaffUser, ticket: Ticket, branch: Branch) -> dict[str, Any]:
    """The ticket with its trend, its newest evidence (masked) and its history, in one session."""
    async with db.sessions() as session:
        evidence = await _evidence(session, ticket.id)
        events = await _events(session, ticket.id)
        trend = await _trend_in_scope(session, user, ticket.trend or {})
    return ticket_summary(ticket, branch) | {"trend": trend, "evidence": evidence, "events": events}


async def _evidence(session: AsyncSession, ticket_id: int) -> list[dict[str, Any]]:
    statement = (
        select(
            Feedback.id,
            Feedback.comment,
            Feedback.submitted_at,
            Feedback.csat,
            Case.id.label("case_id"),
            TicketEvidence.is_representative,
        )
        .join(TicketEvidence, TicketEvidence.feedback_id == Feedback.id)
        .outerjoin(Case, Case.feedback_id == Feedback.id)
        .where(TicketEvidence.ticket_id == ticket_id)
        .order_by(Feedback.submitted_at.desc(), Feedback.id.desc())
        .limit(EVIDENCE_SHOWN)
    )
    return [
        {"feedback_id": row.id, "submitted_at": iso(row.submitted_at), "comment": masked(row.comment),
         "csat": row.csat, "case_id": row.case_id, "is_representative": bool(row.is_representative)}
        for row in await session.execute(statement)
    ]  # fmt: skip


async def _events(session: AsyncSession, ticket_id: int) -> list[dict[str, Any]]:
    """The latest events, oldest first."""
    statement = (
        select(TicketEvent, StaffUser.display_name)
        .outerjoin(StaffUser, StaffUser.id == TicketEvent.actor_id)
        .where(TicketEvent.ticket_id == ticket_id)
        .order_by(TicketEvent.id.desc())
        .limit(EVENTS_SHOWN)
    )
    rows = (await session.execute(statement)).all()
    return [
        {"id": event.id, "kind": event.kind, "at": iso(event.created_at), "actor": staff_ref(event.actor_id, name),
         "note": event.body, "data": masked_data(event.data or {})}
        for event, name in reversed(rows)
    ]  # fmt: skip


async def _trend_in_scope(session: AsyncSession, user: StaffUser, trend: dict[str, Any]) -> dict[str, Any]:
    """The grouping pass's numbers, naming only the other branches with the problem that lie in the user's scope."""
    codes = [str(code) for code in trend.get("other_branches") or []]
    if codes:
        statement = select(Branch.code).where(Branch.code.in_(codes), staff_branches(user)).order_by(Branch.code)
        codes = list(await session.scalars(statement))
    return masked_data(trend) | {"other_branches": codes}


# -- actions ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One action on one ticket as the request asked for it (its body checked against the declared schema)."""

    db: Database
    user: StaffUser
    ticket_id: int
    body: dict[str, Any]


Perform = Callable[[Call], Awaitable[object]]


def action(perform: Perform, *, is_managers: bool = False) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of one action: the ticket in scope (404 else), the role, the action, the ticket as it is now."""

    async def handle(request: web.Request) -> web.Response:
        user, db = api_user(request), request.app[DATABASE]
        ticket_id = int(request.match_info["ticket_id"])
        if await ticket_in_scope(db, user, ticket_id) is None:
            raise web.HTTPNotFound(text=NOT_IN_SCOPE)
        if is_managers:
            require_api_role(request, StaffRole.MANAGER, why="verifying a ticket takes a manager or an administrator")
        with refusals_answered(TicketStateError, TicketInputError, TicketError, not_found=NOT_IN_SCOPE):
            await perform(Call(db, user, ticket_id, request[BODY]))
        found = await ticket_in_scope(db, user, ticket_id)
        if found is None:
            raise web.HTTPNotFound(text=NOT_IN_SCOPE)
        return answer(await ticket_detail(db, user, *found))

    handle.__name__ = handle.__qualname__ = perform.__name__
    return handle


async def start_ticket(call: Call) -> None:
    await start(call.db, call.ticket_id, actor_id=call.user.id)


async def resolve_ticket(call: Call) -> None:
    await resolve(call.db, call.ticket_id, actor_id=call.user.id, note=call.body.get("note"))


async def verify_ticket(call: Call) -> None:
    await verify(call.db, call.ticket_id, actor_id=call.user.id, note=call.body.get("note"))


async def comment_on_ticket(call: Call) -> None:
    await comment(call.db, call.ticket_id, call.body["body"], actor_id=call.user.id)


# -- the declarations ---------------------------------------------------------------------------------------------

TICKET_ID = path_id("ticket_id", "the ticket's id")
NOTE_BODY = obj({"note": nullable(text("an optional note for the history", limit=NOTE_LIMIT))}, optional=("note",))
COMMENT_BODY = obj({"body": text("the comment", limit=NOTE_LIMIT, minimum=1)})
LIST_PARAMETERS = (
    query("status", choice(STATUSES, "a status"), "Only this status."),
    query("branch", text("a branch code"), "Only this branch (a branch outside your scope finds nothing)."),
    query("category", text("a category id"), "Only this category."),
    query("owner", text("a department id"), "Only tickets this department owns."),
    *PAGE_PARAMETERS,
)
ACTION_ERRORS = (400, 404, 409, 415, 422)


def _action(path: str, perform: Perform, summary: str, body: Schema, *, is_managers: bool = False) -> Operation:
    errors = (*ACTION_ERRORS, 403) if is_managers else ACTION_ERRORS
    handler = action(perform, is_managers=is_managers)
    return Operation("POST", f"{TICKET}/{path}", handler, summary, ref("TicketDetail"), (TICKET_ID,), body, errors)


OPERATIONS = (
    Operation("GET", TICKETS, list_tickets, "Improvement tickets in your scope, newest first",
              page_of("TicketSummary"), LIST_PARAMETERS, errors=(400,)),
    Operation("GET", TICKET, get_ticket, "One ticket with its trend, evidence and history", ref("TicketDetail"),
              (TICKET_ID,), errors=(404,)),
    _action("start", start_ticket, "Take up an open ticket", obj({})),
    _action("resolve", resolve_ticket, "Mark an open or in-progress ticket's problem fixed", NOTE_BODY),
    _action("verify", verify_ticket, "Confirm a resolved ticket's problem is gone (managers and administrators)",
            NOTE_BODY, is_managers=True),
    _action("comments", comment_on_ticket, "Add a comment to the ticket's history", COMMENT_BODY),
)  # fmt: skip

FREE: Schema = {"description": "stored JSON, its strings masked"}
TICKET_FIELDS: dict[str, Schema] = {
    "id": integer("ticket id"),
    "title": text("title"),
    "status": choice(STATUSES, "status"),
    "category": text("category id"),
    "owner_department": nullable(text("department id")),
    "branch": ref("Branch"),
    "feedback_count": integer("feedback behind the ticket"),
    "reopened_count": integer("times reopened"),
    "opened_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "resolved_at": nullable(TIMESTAMP),
    "verified_at": nullable(TIMESTAMP),
}
EVIDENCE = obj(
    {
        "feedback_id": integer("feedback id"),
        "submitted_at": TIMESTAMP,
        "comment": nullable(text("the customer's comment, masked")),
        "csat": nullable(integer("1-5")),
        "case_id": nullable(integer("the case opened for it")),
        "is_representative": {"type": "boolean"},
    }
)
TICKET_EVENT = obj(
    {
        "id": integer("event id"),
        "kind": text("opened, updated, reopened, started, resolved, verified, verification, comment"),
        "at": TIMESTAMP,
        "actor": nullable(ref("StaffRef")),
        "note": nullable(text("the staff member's note or comment")),
        "data": FREE,
    }
)
TREND = {
    "type": "object",
    "description": "the last grouping pass's numbers (weeks, windows, tests); other_branches within your scope",
    "properties": {"other_branches": {"type": "array", "items": text("branch code")}},
    "required": ["other_branches"],
}
SCHEMAS: dict[str, Schema] = {
    "TicketSummary": obj(TICKET_FIELDS),
    "TicketDetail": obj(
        TICKET_FIELDS
        | {
            "trend": TREND,
            "evidence": {"type": "array", "items": EVIDENCE, "description": f"the newest {EVIDENCE_SHOWN}"},
            "events": {"type": "array", "items": TICKET_EVENT, "description": f"the latest {EVENTS_SHOWN}"},
        }
    ),
}
