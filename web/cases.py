"""The inner loop in the console: the review queue, the case page, and the staff actions on a case.

Every action is a POST form (the guard has checked its CSRF token) that goes through reporting.cases (a message
to the customer through reporting.contact), which holds the state changes and writes the case's history and audit
entry in one transaction; this module checks the case lies within the user's scope (404 outside it, as for a
missing id) and turns refusals into a notice. A label correction changes no case: it is stored for training, and
its history and audit entries are written here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import select

from reporting.cases import (
    OPEN,
    CaseAccessError,
    CaseInputError,
    CaseStateError,
    acknowledge,
    add_note,
    assign,
    correct_labels,
    not_a_complaint,
    resolve,
)
from reporting.contact import CONTACTED, MESSAGE_LIMIT, OUTCOMES, NoReplyRouteError, contact_customer, reply_route
from reporting.scope import staff_branches
from store import Database
from store.models import Branch, Case, CaseStatus, Sentiment, StaffUser, utcnow
from web.auth import BadFormError, csrf_token, current_user, read_form, scope_of
from web.case_format import due_of, snippet
from web.case_page import CaseRecord, load_case
from web.case_queue import PAGE_SIZE, PRIORITIES, STATUS_VIEWS, QueueFilter, load_queue
from web.case_words import describe_case
from web.keys import DATABASE
from web.options import CONSOLE_OPTIONS, ConsoleOptions
from web.pages import error_page, language_of, options_html, render
from web.texts import texts

CASES = "/console/cases"
CASE_ID = r"{case_id:\d{1,9}}"  # fits a 32-bit id column; longer is no case
RESOLUTION_CODES = ("fixed", "explained", "compensated", "no_action_needed", "other")
SENTIMENTS = tuple(s.value for s in Sentiment)
AUDIT_TARGET = "case"


def add_case_routes(app: web.Application) -> None:
    """Register the queue, the case page and the case actions."""
    app.router.add_get(CASES, show_queue)
    app.router.add_get(f"{CASES}/{CASE_ID}", show_case)
    app.router.add_post(f"{CASES}/{CASE_ID}/{{action}}", post_action)


async def show_queue(request: web.Request) -> web.Response:
    user = current_user(request)
    wanted = QueueFilter.of(request.query)
    queue = await load_queue(request.app[DATABASE], user, wanted)
    options, language = request.app[CONSOLE_OPTIONS], language_of(request)
    t, now = texts(language), utcnow()
    rows = [
        {
            "id": row.id,
            "branch": row.branch_name_zh if language == "zh" else row.branch_name_en,
            "branch_code": row.branch_code,
            "priority": row.priority.value,
            "status": row.status.value,
            "due": due_of(row.sla_due_at, now, is_open=row.status in OPEN, timezone=options.timezone, t=t),
            "assignee": row.assignee,
            "snippet": snippet(row.comment),
        }
        for row in queue.rows
    ]
    choices = tuple((code, f"{code} · {name_zh if language == 'zh' else name_en}")
                    for code, name_en, name_zh in queue.branches)  # fmt: skip
    return render(request, "cases.html", user=user, csrf=csrf_token(request), signed_in_as=signed_in_as(user, t),
                  queue=queue, rows=rows, branch_options=options_html(choices, wanted.branch), wanted=wanted,
                  views=tuple(STATUS_VIEWS), priorities=PRIORITIES, page_size=PAGE_SIZE)  # fmt: skip


async def show_case(request: web.Request) -> web.Response:
    user = current_user(request)
    case_id = int(request.match_info["case_id"])
    record = await load_case(request.app[DATABASE], user, case_id)
    if record is None:
        raise web.HTTPNotFound()
    language = language_of(request)
    notice, error = _notice(request.query, texts(language))
    view = describe_case(record, language=language, options=request.app[CONSOLE_OPTIONS], now=utcnow())
    return render(request, "case.html", user=user, csrf=csrf_token(request), view=view, notice=notice, error=error,
                  codes=RESOLUTION_CODES, sentiments=SENTIMENTS, contact=_contact_panel(record))  # fmt: skip


def _contact_panel(record: CaseRecord) -> dict[str, Any]:
    """Whether the page offers to message the customer (else why not), and how many messages still wait to go out."""
    events = [event for event, _ in record.events]
    settled = {e.data.get("message_event_id") for e in events if e.kind in OUTCOMES and isinstance(e.data, dict)}
    waiting = sum(1 for e in events if e.kind == CONTACTED and e.id not in settled)
    route = reply_route(record.channel, record.feedback.reply_chat)
    return {"route": route.value, "limit": MESSAGE_LIMIT, "waiting": waiting}


def signed_in_as(user: StaffUser, t: Mapping[str, str]) -> str:
    """Who is signed in, with their role and scope: the queue is the console's home page."""
    scope = scope_of(user)
    label = t["scope_all"] if scope.kind == "all" else t[f"scope_{scope.kind}"].format(value=scope.label)
    return t["signed_in_as"].format(name=user.display_name, role=t[f"role_{user.role}"], scope=label)


# -- actions ------------------------------------------------------------------------------------------------------


class RefusedError(Exception):
    """An action refused with a notice for the user; ``key`` names its text (case_error_<key>)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True, slots=True)
class Acting:
    """One staff action on one case, as the form asked for it."""

    db: Database
    user: StaffUser
    case_id: int
    fields: Mapping[str, str]
    options: ConsoleOptions


Perform = Callable[[Acting], Awaitable[None]]
STATE_ERRORS = {"acknowledge": "acknowledged", "assign": "same_assignee"}  # when the case is still open


async def post_action(request: web.Request) -> web.Response:
    user = current_user(request)
    case_id, action = int(request.match_info["case_id"]), request.match_info["action"]
    perform = ACTIONS.get(action)
    db = request.app[DATABASE]
    if perform is None or await case_status_in_scope(db, user, case_id) is None:
        raise web.HTTPNotFound()  # the same answer for another branch's case as for no case: ids cannot be probed
    try:
        fields = await read_form(request)
    except BadFormError:
        return error_page(request, 400)
    acting = Acting(db, user, case_id, fields, request.app[CONSOLE_OPTIONS])
    try:
        await perform(acting)
    except RefusedError as exc:
        return _back(case_id, error=exc.key)
    except CaseStateError:
        status = await case_status_in_scope(db, user, case_id)
        return _back(case_id, error="closed" if status not in OPEN else STATE_ERRORS.get(action, "closed"))
    except CaseInputError:
        return _back(case_id, error="note")
    except CaseAccessError as exc:
        if action == "assign":
            return _back(case_id, error="assignee")
        raise web.HTTPForbidden() from exc
    return _back(case_id, done=action)


async def _acknowledge(acting: Acting) -> None:
    await acknowledge(acting.db, acting.case_id, actor_id=acting.user.id)


async def _assign(acting: Acting) -> None:
    chosen = acting.fields.get("assignee", "")
    if chosen and not (chosen.isdigit() and len(chosen) < 10):
        raise RefusedError("assignee")
    await assign(acting.db, acting.case_id, int(chosen) if chosen else None, actor_id=acting.user.id)


async def _note(acting: Acting) -> None:
    await add_note(acting.db, acting.case_id, acting.fields.get("note", ""), actor_id=acting.user.id)


async def _resolve(acting: Acting) -> None:
    code = acting.fields.get("code", "")
    if code not in RESOLUTION_CODES:
        raise RefusedError("code")
    await resolve(acting.db, acting.case_id, code, actor_id=acting.user.id, note=acting.fields.get("note"))


async def _not_a_complaint(acting: Acting) -> None:
    await not_a_complaint(acting.db, acting.case_id, actor_id=acting.user.id, note=acting.fields.get("note"))


async def _contact(acting: Acting) -> None:
    message = acting.fields.get("message", "")
    try:
        await contact_customer(acting.db, acting.case_id, message, actor_id=acting.user.id)
    except NoReplyRouteError as exc:
        raise RefusedError(f"contact_{exc.route}") from exc
    except CaseInputError as exc:
        raise RefusedError("contact_text") from exc


async def _correct_labels(acting: Acting) -> None:
    """Keep the staff member's labels for training; the case, its analysis and its figures stay as they are."""
    sentiment = acting.fields.get("sentiment") or None
    categories = [c for c in acting.options.category_names if acting.fields.get(f"category.{c}") == "on"]
    if (sentiment is not None and sentiment not in SENTIMENTS) or (sentiment is None and not categories):
        raise RefusedError("labels")
    await correct_labels(acting.db, acting.case_id, actor_id=acting.user.id, sentiment=sentiment,
                         categories=categories)  # fmt: skip


ACTIONS: dict[str, Perform] = {
    "acknowledge": _acknowledge,
    "assign": _assign,
    "note": _note,
    "resolve": _resolve,
    "not_a_complaint": _not_a_complaint,
    "labels": _correct_labels,
    "contact": _contact,
}


async def case_status_in_scope(db: Database, user: StaffUser, case_id: int) -> CaseStatus | None:
    """The case's status if it exists within the user's scope; None for every other id."""
    statement = (
        select(Case.status).join(Branch, Branch.id == Case.branch_id).where(Case.id == case_id, staff_branches(user))
    )
    async with db.sessions() as session:
        return await session.scalar(statement)


def _back(case_id: int, *, done: str | None = None, error: str | None = None) -> web.Response:
    query = f"?done={done}" if done else f"?error={error}" if error else ""
    return web.Response(status=303, headers={"Location": f"{CASES}/{case_id}{query}"})


def _notice(query: Mapping[str, str], t: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The notice an action left in the address; only known keys, so a crafted link cannot put words on the page."""
    done, error = f"case_done_{query.get('done', '')}", f"case_error_{query.get('error', '')}"
    return (t[done] if done in t and "done" in query else None, t[error] if error in t and "error" in query else None)
