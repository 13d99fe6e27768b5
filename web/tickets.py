"""The improvement-ticket board and the ticket page: the outer loop, where staff follow a recurring problem to its fix.

Every query joins the ticket's branch and adds `staff_branches(user)`, so scope holds in SQL: a ticket of another
branch is missing from the board and answers 404 by id, exactly as an id that does not exist. State changes are
reporting.tickets' own (start, resolve, verify, comment, each with its audit entry); this module adds the way back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import ColumnElement, Integer, Select, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nlp.masking import mask_text
from reporting.scope import staff_branches
from reporting.tickets import (
    TRANSITIONS,
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
from web.auth import BadFormError, csrf_token, current_user, read_form, require_role
from web.keys import DATABASE
from web.options import CONSOLE_OPTIONS, ConsoleOptions
from web.pages import error_page, language_of, options_html, render
from web.scoped_statements import per_scope
from web.texts import texts
from web.ticket_chart import weekly_chart

BOARD = "/console/tickets"
PAGE_SIZE = 25
MAX_PAGE = 40  # a thousand tickets deep at most: past that, filters find a ticket faster than paging does
SOURCES_PAGE = 50
EVENTS_SHOWN = 200
QUOTES_SHOWN = 5
STATUSES = tuple(TicketStatus)
# The board's order: work still to do first, then the biggest problems, then the most recently changed.
STATUS_RANK = case({s: rank for rank, s in enumerate(STATUSES)}, value=Ticket.status)
# action in the URL -> the TicketEvent kind reporting.tickets records for it
ACTIONS = {"start": "started", "resolve": "resolved", "verify": "verified", "comment": "comment"}


def add_ticket_routes(app: web.Application) -> None:
    app.router.add_get(BOARD, show_board)
    app.router.add_get(BOARD + r"/{ticket_id:\d{1,18}}", show_ticket)
    app.router.add_post(BOARD + r"/{ticket_id:\d{1,18}}/{action:start|resolve|verify|comment}", post_action)


# -- the board --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    """The board's filters from the query string; a value that names nothing filters nothing."""

    status: str = ""
    branch: str = ""
    category: str = ""
    owner: str = ""
    page: int = 1

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filters:
        status = query.get("status", "")
        return cls(status=status if status in STATUSES else "", branch=query.get("branch", "")[:32],
                   category=query.get("category", "")[:64], owner=query.get("owner", "")[:64],
                   page=_page(query))  # fmt: skip

    def conditions(self, *, with_status: bool = True) -> list[ColumnElement[bool]]:
        chosen = [
            (self.status and with_status, Ticket.status == self.status),
            (self.branch, Branch.code == self.branch),
            (self.category, Ticket.category == self.category),
            (self.owner, Ticket.owner_department == self.owner),
        ]
        return [condition for is_set, condition in chosen if is_set]

    def link(self, **changes: Any) -> str:
        """The board's URL with these filters, some changed (page 1 unless a page is given)."""
        values = {"status": self.status, "branch": self.branch, "category": self.category, "owner": self.owner,
                  "page": 1} | changes  # fmt: skip
        query = urlencode({k: v for k, v in values.items() if v and not (k == "page" and v == 1)})
        return f"{BOARD}?{query}" if query else BOARD


@dataclass(frozen=True, slots=True)
class Trend:
    """Which way a ticket's complaints moved between the last two windows, from the grouping pass's numbers."""

    direction: str  # up, down or flat
    is_beyond_noise: bool
    current: int | None  # the branch × category's complaints in the window, as the rate test compared them
    previous: int | None  # ... and in the window before
    in_ticket: int | None  # those of the window that are this ticket's evidence
    days: int | None

    @classmethod
    def of(cls, trend: Mapping[str, Any]) -> Trend:
        rate, now, before = trend.get("rate_test") or {}, trend.get("current") or {}, trend.get("previous") or {}
        direction = rate.get("direction")
        return cls(direction=direction if direction in ("up", "down") else "flat",
                   is_beyond_noise=bool(rate.get("beyond_noise")), current=now.get("complaints"),
                   previous=before.get("complaints"), in_ticket=now.get("in_ticket", now.get("complaints")),
                   days=trend.get("window_days"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Card:
    id: int
    title: str
    status: str
    branch: str
    category: str
    owner: str
    count: int
    trend: Trend
    updated: str


async def show_board(request: web.Request) -> web.Response:
    user, options = current_user(request), request.app[CONSOLE_OPTIONS]
    language, filters = language_of(request), Filters.of(request.query)
    in_scope = select(Ticket).join(Branch, Branch.id == Ticket.branch_id).where(staff_branches(user))
    listing = (
        in_scope.with_only_columns(Ticket, Branch.code, Branch.name_en, Branch.name_zh)
        .where(*filters.conditions())
        .order_by(STATUS_RANK, Ticket.feedback_count.desc(), Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((filters.page - 1) * PAGE_SIZE)
    )
    tally = (
        in_scope.with_only_columns(Ticket.status, func.count())
        .where(*filters.conditions(with_status=False))
        .group_by(Ticket.status)
    )
    branches = select(Branch.code, Branch.name_en, Branch.name_zh).where(staff_branches(user)).order_by(Branch.code)
    async with request.app[DATABASE].sessions() as session:
        rows = (await session.execute(listing)).all()
        counts = {TicketStatus(status): n for status, n in await session.execute(tally)}
        branch_names = {row.code: _name(row, language) for row in await session.execute(branches)}
    zone = ZoneInfo(options.timezone)
    cards = [_card(row, options, language, zone) for row in rows[:PAGE_SIZE]]
    departments = sorted(set(options.departments.values()))
    owners = [(department, options.department_name(department, language)) for department in departments]
    return render(
        request, "tickets.html", user=user, csrf=csrf_token(request), filters=filters, cards=cards, counts=counts,
        total=sum(counts.values()), statuses=STATUSES, branches=branch_names, owners=owners,
        branch_options=options_html(tuple((code, f"{name} ({code})") for code, name in branch_names.items()),
                                    filters.branch),
        categories=_categories(options, language), has_more=len(rows) > PAGE_SIZE, max_page=MAX_PAGE,
    )  # fmt: skip


def _card(row: Any, options: ConsoleOptions, language: str, zone: ZoneInfo) -> Card:
    ticket: Ticket = row.Ticket
    return Card(id=ticket.id, title=ticket.title, status=ticket.status.value, branch=_name(row, language),
                category=options.category_name(ticket.category, language),
                owner=options.department_name(ticket.owner_department, language), count=ticket.feedback_count,
                trend=Trend.of(ticket.trend or {}), updated=_local(ticket.updated_at, zone))  # fmt: skip


def _categories(options: ConsoleOptions, language: str) -> list[tuple[str, str]]:
    names = [(category, options.category_name(category, language)) for category in options.category_names]
    return sorted(names, key=lambda pair: pair[1])


# -- the ticket page --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """A feedback behind the ticket: its masked comment, and its case where one was opened."""

    feedback_id: int
    comment: str | None
    submitted: str
    csat: int | None
    case_id: int | None


@dataclass(frozen=True, slots=True)
class Event:
    text: str
    who: str
    when: str
    body: str | None


async def show_ticket(request: web.Request) -> web.Response:
    user, db, options = current_user(request), request.app[DATABASE], request.app[CONSOLE_OPTIONS]
    language, t, zone = language_of(request), texts(language_of(request)), ZoneInfo(options.timezone)
    page = _page(request.query)
    async with db.sessions() as session:  # one session, one pooled connection, for all of the page
        found = await _in_scope(session, user, int(request.match_info["ticket_id"]))
        if found is None:
            raise web.HTTPNotFound()
        ticket, branch = found
        quotes = await _sources(session, ticket.id, zone, only_quotes=True, limit=QUOTES_SHOWN)
        sources = await _sources(session, ticket.id, zone, limit=SOURCES_PAGE + 1, offset=(page - 1) * SOURCES_PAGE)
        events = await _events(session, ticket.id, t, zone)
        also_at = await _also_at(session, user, (ticket.trend or {}).get("other_branches") or [])
    status_label, trend = t[f"ticket_status_{ticket.status.value}"], ticket.trend or {}
    notice, error = _outcome(request.query, t, ticket.status)
    return render(
        request, "ticket.html", user=user, csrf=csrf_token(request), ticket=ticket, status_label=status_label,
        branch=_name(branch, language), also_at=[_name(row, language) for row in also_at],
        category=options.category_name(ticket.category, language),
        owner=options.department_name(ticket.owner_department, language),
        trend=Trend.of(trend), chart=weekly_chart(trend.get("weeks", []), t, zone), quotes=quotes,
        sources=sources[:SOURCES_PAGE], page=page, has_more=len(sources) > SOURCES_PAGE and page < MAX_PAGE,
        events=events, opened=_local(ticket.opened_at, zone), notice=notice, error=error,
        can_verify=user.role in (StaffRole.ADMIN, StaffRole.MANAGER),
    )  # fmt: skip


async def ticket_in_scope(db: Database, user: StaffUser, ticket_id: int) -> tuple[Ticket, Branch] | None:
    """The ticket and its branch, or None when there is no such ticket or its branch is outside the user's scope."""
    async with db.sessions() as session:
        return await _in_scope(session, user, ticket_id)


async def _in_scope(session: AsyncSession, user: StaffUser, ticket_id: int) -> tuple[Ticket, Branch] | None:
    row = (await session.execute(_ticket_in_scope(user), {"ticket_id": ticket_id})).first()
    return None if row is None else (row.Ticket, row.Branch)


@per_scope
def _ticket_in_scope(user: StaffUser) -> Select[Any]:
    query = select(Ticket, Branch).join(Branch, Branch.id == Ticket.branch_id)
    return query.where(Ticket.id == bindparam("ticket_id"), staff_branches(user))


async def _also_at(session: AsyncSession, user: StaffUser, codes: Sequence[str]) -> list[Any]:
    """The other branches with the same problem open, as the last grouping pass saw them, within the user's scope."""
    if not codes:
        return []
    query = select(Branch.code, Branch.name_en, Branch.name_zh).where(Branch.code.in_([str(c) for c in codes]))
    return list((await session.execute(query.where(staff_branches(user)).order_by(Branch.code))).all())


def _newest_sources(*, only_quotes: bool) -> Select[Any]:
    """A ticket's feedback, newest first: the bound "ticket_id", "limit" and "offset" pick the rows."""
    query = (
        select(Feedback.id, Feedback.comment, Feedback.submitted_at, Feedback.csat, Case.id.label("case_id"))
        .join(TicketEvidence, TicketEvidence.feedback_id == Feedback.id)
        .outerjoin(Case, Case.feedback_id == Feedback.id)
        .where(TicketEvidence.ticket_id == bindparam("ticket_id"))
        .order_by(Feedback.submitted_at.desc(), Feedback.id.desc())
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    return query.where(TicketEvidence.is_representative) if only_quotes else query


# Built once (scoped_statements says why): each page view runs them with its ticket's id.
QUOTES, SOURCES = _newest_sources(only_quotes=True), _newest_sources(only_quotes=False)
EVENTS = (
    select(TicketEvent, StaffUser.display_name)
    .outerjoin(StaffUser, StaffUser.id == TicketEvent.actor_id)
    .where(TicketEvent.ticket_id == bindparam("ticket_id"))
    .order_by(TicketEvent.id.desc())
    .limit(EVENTS_SHOWN)
)


async def _sources(
    session: AsyncSession, ticket_id: int, zone: ZoneInfo, *, limit: int, offset: int = 0, only_quotes: bool = False
) -> list[Source]:
    query = QUOTES if only_quotes else SOURCES
    rows = await session.execute(query, {"ticket_id": ticket_id, "limit": limit, "offset": offset})
    # Comments are stored masked; masking again on the way out costs little and covers rows from older masks.
    return [Source(row.id, mask_text(row.comment) if row.comment else None, _local(row.submitted_at, zone),
                   row.csat, row.case_id) for row in rows]  # fmt: skip


async def _events(session: AsyncSession, ticket_id: int, t: Mapping[str, str], zone: ZoneInfo) -> list[Event]:
    rows = (await session.execute(EVENTS, {"ticket_id": ticket_id})).all()
    who = t["ticket_by_system"]
    return [
        Event(_event_text(row.TicketEvent, t), row.display_name or who, _local(row.TicketEvent.created_at, zone),
              row.TicketEvent.body)
        for row in reversed(rows)
    ]  # fmt: skip


def _event_text(event: TicketEvent, t: Mapping[str, str]) -> str:
    data = event.data or {}
    if event.kind in ("opened", "updated", "reopened"):
        return t[f"ticket_event_{event.kind}"].format(count=len(data.get("feedback_ids") or []))
    if event.kind == "verification":
        key = "ticket_event_verification_" + ("improved" if data.get("improved") else "same")
        before, after = data.get("before") or {}, data.get("after") or {}
        return t[key].format(before=before.get("complaints", "?"), after=after.get("complaints", "?"))
    return t.get(f"ticket_event_{event.kind}", event.kind)


def _outcome(query: Mapping[str, str], t: Mapping[str, str], status: TicketStatus) -> tuple[str | None, str | None]:
    """The notice or the error to show after an action sent the browser back here.

    A refusal is explained only while the status still refuses it: an old link must not contradict the page.
    """
    done, refused = query.get("done"), query.get("refused")
    if done in ACTIONS:
        return t[f"ticket_done_{done}"], None
    if refused == "input":
        return None, t["ticket_refused_input"]
    if refused in ("start", "resolve", "verify") and status not in TRANSITIONS[ACTIONS[refused]][0]:
        return None, t[f"ticket_refused_{refused}"].format(status=t[f"ticket_status_{status.value}"])
    return None, None


# -- the actions ------------------------------------------------------------------------------------------------


async def post_action(request: web.Request) -> web.StreamResponse:
    """Start, resolve, verify or comment on a ticket in scope; 303 back to its page with the outcome."""
    user, db = current_user(request), request.app[DATABASE]
    ticket_id, action = int(request.match_info["ticket_id"]), request.match_info["action"]
    if await ticket_in_scope(db, user, ticket_id) is None:
        raise web.HTTPNotFound()
    if action == "verify":
        require_role(request, StaffRole.MANAGER)
    try:
        fields = await read_form(request)
    except BadFormError:
        return error_page(request, 400)
    page = f"{BOARD}/{ticket_id}"
    try:
        await _act(db, action, ticket_id, user.id, fields)
    except TicketStateError:
        raise web.HTTPSeeOther(f"{page}?refused={action}") from None
    except TicketInputError:
        raise web.HTTPSeeOther(f"{page}?refused=input") from None
    except TicketError:  # gone or out of reach since the check above: the same answer as for any unknown id
        raise web.HTTPNotFound() from None
    raise web.HTTPSeeOther(f"{page}?done={action}")


async def _act(db: Database, action: str, ticket_id: int, user_id: int, fields: Mapping[str, str]) -> None:
    note = fields.get("note")
    if action == "start":
        await start(db, ticket_id, actor_id=user_id)
    elif action == "resolve":
        await resolve(db, ticket_id, actor_id=user_id, note=note)
    elif action == "verify":
        await verify(db, ticket_id, actor_id=user_id, note=note)
    else:
        await comment(db, ticket_id, fields.get("body", ""), actor_id=user_id)


# -- shared bits ------------------------------------------------------------------------------------------------


def _page(query: Mapping[str, str]) -> int:
    text = query.get("page", "1")
    return min(max(int(text), 1), MAX_PAGE) if text.isascii() and text.isdigit() and len(text) < 6 else 1


def _name(row: Any, language: str) -> str:
    return row.name_zh if language == "zh" else row.name_en


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
