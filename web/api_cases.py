"""Cases in the API: the list and one case as JSON, and the staff actions on a case.

Reads go through the console's queries (web.case_queue's scoped filter, web.case_page.load_case), so scope is the
same SQL condition: another branch's case answers 404 exactly like a missing id. Actions are reporting.cases'
own (each with its history, audit entry and webhook event); a label correction is web.cases' own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from reporting.cases import (
    NOTE_LIMIT,
    OPEN,
    CaseAccessError,
    CaseError,
    CaseInputError,
    CaseStateError,
    acknowledge,
    add_note,
    assign,
    correct_labels,
    not_a_complaint,
    resolve,
)
from store import Database
from store.models import Branch, Case, CaseEvent, CasePriority, CaseStatus, Counter, Feedback, StaffUser, utcnow
from web.api_auth import api_user
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
from web.case_page import CaseRecord, Correction, load_case
from web.case_queue import STATUS_VIEWS, QueueFilter
from web.case_queue import filtered_cases as scoped_cases
from web.case_words import label_names
from web.cases import RESOLUTION_CODES, SENTIMENTS, case_status_in_scope
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
from web.options import CONSOLE_OPTIONS, ConsoleOptions

CASES = "/api/v1/cases"
CASE = f"{CASES}/{{case_id}}"
PRIORITIES = tuple(p.value for p in CasePriority)
STATUSES = tuple(s.value for s in CaseStatus)
MAX_CATEGORIES = 50
NOT_IN_SCOPE = "no such case in your scope"

# -- reading ------------------------------------------------------------------------------------------------------


async def list_cases(request: web.Request) -> web.Response:
    user, db = api_user(request), request.app[DATABASE]
    view = query_choice(request.query, "status", tuple(STATUS_VIEWS)) or "open"
    priority = query_choice(request.query, "priority", PRIORITIES)
    branch = request.query.get("branch") or None
    wanted = QueueFilter(status=view, branch=branch, priority=CasePriority(priority) if priority else None)
    page = Page.of(request.query)
    ranked = scoped_cases(select(Case.id), user, wanted)
    statuses = STATUS_VIEWS[wanted.status]
    if statuses is not None:
        ranked = ranked.where(Case.status.in_(statuses))
    if page.cursor is not None:
        ranked = ranked.where(Case.id < page.cursor)
    # The page's ids first, then their rows: the joins read `limit` comments, not every comment in scope.
    ids = ranked.order_by(Case.id.desc()).limit(page.limit + 1).subquery()
    statement = (
        select(Case, Branch, StaffUser.display_name, Feedback.comment)
        .select_from(ids)
        .join(Case, Case.id == ids.c.id)
        .join(Branch, Branch.id == Case.branch_id)
        .join(Feedback, Feedback.id == Case.feedback_id)
        .outerjoin(StaffUser, StaffUser.id == Case.assignee_id)
        .order_by(Case.id.desc())
    )
    async with db.sessions() as session:
        rows = (await session.execute(statement)).all()
    now = utcnow()
    return answer(page.body([case_summary(row.Case, row.Branch, row.display_name, row.comment, now) for row in rows]))


async def get_case(request: web.Request) -> web.Response:
    user, db = api_user(request), request.app[DATABASE]
    record = await load_case(db, user, int(request.match_info["case_id"]))
    if record is None:
        raise web.HTTPNotFound(text=NOT_IN_SCOPE)
    return answer(case_detail(record))


def case_summary(
    case: Case, branch: Branch, assignee: str | None, comment: str | None, now: datetime
) -> dict[str, Any]:
    """A case as the list shows it; only an open case can be overdue."""
    is_open = case.status in OPEN
    return {
        "id": case.id,
        "status": case.status.value,
        "priority": case.priority.value,
        "branch": branch_json(branch),
        "assignee": staff_ref(case.assignee_id, assignee),
        "sla_due_at": iso(case.sla_due_at),
        "is_overdue": is_open and case.sla_due_at is not None and case.sla_due_at < now,
        "escalated_at": iso(case.escalated_at),
        "first_response_at": iso(case.first_response_at),
        "resolved_at": iso(case.resolved_at),
        "resolution_code": case.resolution_code,
        "created_at": iso(case.created_at),
        "updated_at": iso(case.updated_at),
        "comment": masked(comment),
    }


def case_detail(record: CaseRecord) -> dict[str, Any]:
    """A case with its feedback, the customer's answers, the analysis, its history and who may take it."""
    case, feedback, counter = record.case, record.feedback, record.counter
    summary = case_summary(case, record.branch, record.names.get(case.assignee_id or 0), feedback.comment, utcnow())
    return summary | {
        "reason": masked(case.reason),
        "feedback": {
            "id": feedback.id,
            "submitted_at": iso(feedback.submitted_at),
            "language": feedback.language,
            "counter": None if counter is None else _names(counter),
            "csat": feedback.csat,
            "nps": feedback.nps,
            "ces": feedback.ces,
            "callback_requested": feedback.callback_requested,
            # Unmasked, as on the case page: the customer gave it for staff to call back.
            "contact_phone": feedback.contact_phone if feedback.callback_requested else None,
        },
        "answers": [{"step": step, "value": masked_data(value)} for step, value in record.answers],
        "analysis": _analysis(record),
        "events": [_event(event, name) for event, name in record.events],
        "assignable": [{"id": user_id, "name": name} for user_id, name in record.staff],
        "label_correction": _correction(record.correction),
    }


def _names(counter: Counter) -> dict[str, str]:
    return {"code": counter.code, "name_en": counter.name_en, "name_zh": counter.name_zh}


def _event(event: CaseEvent, name: str | None) -> dict[str, Any]:
    return {"id": event.id, "kind": event.kind, "at": iso(event.created_at), "actor": staff_ref(event.actor_id, name),
            "note": event.body, "data": masked_data(event.data or {})}  # fmt: skip


def _correction(correction: Correction | None) -> dict[str, Any] | None:
    if correction is None:
        return None
    return {"by": correction.name, "at": iso(correction.at), "sentiment": correction.sentiment,
            "categories": list(correction.categories)}  # fmt: skip


def _analysis(record: CaseRecord) -> dict[str, Any] | None:
    analysis = record.analysis
    if analysis is None:
        return None
    categories = label_names(analysis)["categories"]
    scores = [c[1] if isinstance(c, list | tuple) and len(c) > 1 else None for c in analysis.categories]
    return {
        "model_version": analysis.model_version,
        "sentiment": str(analysis.sentiment),
        "sentiment_scores": dict(analysis.sentiment_scores or {}),
        "categories": [{"category": c, "score": s} for c, s in zip(categories, scores, strict=True)],
        "aspects": [masked_data(aspect) for aspect in analysis.aspects or [] if isinstance(aspect, dict)],
        "flags": [masked_data(flag) for flag in analysis.flag_reasons or []],
    }


# -- actions ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One action on one case as the request asked for it (its body checked against the declared schema)."""

    db: Database
    user: StaffUser
    case_id: int
    body: dict[str, Any]
    options: ConsoleOptions


Perform = Callable[[Call], Awaitable[object]]


def action(perform: Perform) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of one action: the case in scope (404 else), the action, and the case as it is now.

    Refusals keep reporting.cases' own words: 409 for a state that does not allow the action, 422 for a value.
    """

    async def handle(request: web.Request) -> web.Response:
        user, db = api_user(request), request.app[DATABASE]
        case_id = int(request.match_info["case_id"])
        if await case_status_in_scope(db, user, case_id) is None:
            raise web.HTTPNotFound(text=NOT_IN_SCOPE)
        with refusals_answered(CaseStateError, CaseInputError, CaseError, not_found=NOT_IN_SCOPE):
            await perform(Call(db, user, case_id, request[BODY], request.app[CONSOLE_OPTIONS]))
        record = await load_case(db, user, case_id)
        if record is None:
            raise web.HTTPNotFound(text=NOT_IN_SCOPE)
        return answer(case_detail(record))

    handle.__name__ = handle.__qualname__ = perform.__name__.strip("_")
    return handle


async def acknowledge_case(call: Call) -> None:
    await acknowledge(call.db, call.case_id, actor_id=call.user.id)


async def assign_case(call: Call) -> None:
    try:
        await assign(call.db, call.case_id, call.body["assignee_id"], actor_id=call.user.id)
    except CaseAccessError as exc:  # the actor was checked already: it is the assignee who does not cover the branch
        raise CaseInputError(str(exc)) from None


async def add_case_note(call: Call) -> None:
    await add_note(call.db, call.case_id, call.body["note"], actor_id=call.user.id)


async def resolve_case(call: Call) -> None:
    await resolve(call.db, call.case_id, call.body["code"], actor_id=call.user.id, note=call.body.get("note"))


async def close_not_a_complaint(call: Call) -> None:
    await not_a_complaint(call.db, call.case_id, actor_id=call.user.id, note=call.body.get("note"))


async def correct_case_labels(call: Call) -> None:
    """Keep the labels for training (the correction, the history and the audit entry in one transaction)."""
    categories, sentiment = call.body.get("categories", []), call.body.get("sentiment")
    unknown = sorted(set(categories) - set(call.options.category_names))
    if unknown:
        raise CaseInputError(f"unknown category {unknown[0]!r}")
    await correct_labels(call.db, call.case_id, actor_id=call.user.id, sentiment=sentiment, categories=categories)


# -- the declarations ---------------------------------------------------------------------------------------------

NOTE = text("a note for the case's history", limit=NOTE_LIMIT, minimum=1)
CLOSING_NOTE = nullable(text("an optional note for the history", limit=NOTE_LIMIT))
CASE_ID = path_id("case_id", "the case's id")
LIST_PARAMETERS = (
    query("status", choice(STATUS_VIEWS, "a status or a view"), "open (the default), closed, all, or one status."),
    query("branch", text("a branch code"), "Only this branch (a branch outside your scope finds nothing)."),
    query("priority", choice(PRIORITIES, "a priority"), "Only this priority."),
    *PAGE_PARAMETERS,
)
ASSIGN_BODY = obj({"assignee_id": nullable(integer("a staff user covering the case's branch", minimum=1))})
RESOLVE_BODY = obj({"code": choice(RESOLUTION_CODES, "the resolution"), "note": CLOSING_NOTE}, optional=("note",))
CATEGORY_LIST = {"type": "array", "maxItems": MAX_CATEGORIES, "items": text("a category id of the taxonomy")}
LABELS_BODY = obj(
    {"sentiment": nullable(choice(SENTIMENTS, "the right sentiment")), "categories": CATEGORY_LIST},
    optional=("sentiment", "categories"),
)
ACTION_ERRORS = (400, 404, 409, 415, 422)


def _action(path: str, perform: Perform, summary: str, body: Schema) -> Operation:
    handler = action(perform)
    return Operation("POST", f"{CASE}/{path}", handler, summary, ref("CaseDetail"), (CASE_ID,), body, ACTION_ERRORS)


OPERATIONS = (
    Operation("GET", CASES, list_cases, "Cases in your scope, newest first", page_of("CaseSummary"), LIST_PARAMETERS,
              errors=(400,)),
    Operation("GET", CASE, get_case, "One case with its feedback, analysis and history", ref("CaseDetail"),
              (CASE_ID,), errors=(404,)),
    _action("acknowledge", acknowledge_case, "Say a new case has been seen", obj({})),
    _action("assign", assign_case, "Give an open case to a staff member (null: take it back)", ASSIGN_BODY),
    _action("notes", add_case_note, "Add a note to the case's history", obj({"note": NOTE})),
    _action("resolve", resolve_case, "Close an open case as handled", RESOLVE_BODY),
    _action("not-a-complaint", close_not_a_complaint, "Close an open case that should not have been one",
            obj({"note": CLOSING_NOTE}, optional=("note",))),
    _action("labels", correct_case_labels, "Correct the comment's labels for training (the case stays)", LABELS_BODY),
)  # fmt: skip

FREE: Schema = {"description": "stored JSON, its strings masked"}
NAMES = {"code": text("code"), "name_en": text("English name"), "name_zh": text("Chinese name")}
CASE_FIELDS: dict[str, Schema] = {
    "id": integer("case id"),
    "status": choice(STATUSES, "status"),
    "priority": choice(PRIORITIES, "priority"),
    "branch": ref("Branch"),
    "assignee": nullable(ref("StaffRef")),
    "sla_due_at": nullable(TIMESTAMP),
    "is_overdue": {"type": "boolean", "description": "open and past its SLA"},
    "escalated_at": nullable(TIMESTAMP),
    "first_response_at": nullable(TIMESTAMP),
    "resolved_at": nullable(TIMESTAMP),
    "resolution_code": nullable(text("how it was closed")),
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "comment": nullable(text("the customer's comment, masked")),
}
FEEDBACK = obj(
    {
        "id": integer("feedback id"),
        "submitted_at": TIMESTAMP,
        "language": text("en or zh"),
        "counter": nullable(obj(NAMES)),
        "csat": nullable(integer("1-5")),
        "nps": nullable(integer("0-10")),
        "ces": nullable(integer("1-7")),
        "callback_requested": {"type": "boolean"},
        "contact_phone": nullable(text("given for a callback: only when one was asked for")),
    }
)
ANALYSIS = obj(
    {
        "model_version": text("model version"),
        "sentiment": choice(SENTIMENTS, "sentiment"),
        "sentiment_scores": {"type": "object", "additionalProperties": {"type": "number"}},
        "categories": {
            "type": "array",
            "items": obj({"category": text("category id"), "score": nullable({"type": "number"})}),
        },
        "aspects": {"type": "array", "items": FREE},
        "flags": {"type": "array", "items": FREE},
    }
)
CASE_EVENT = obj(
    {
        "id": integer("event id"),
        "kind": text("opened, acknowledged, assigned, note, resolved, escalated, labels_corrected, ..."),
        "at": TIMESTAMP,
        "actor": nullable(ref("StaffRef")),
        "note": nullable(text("the staff member's note")),
        "data": FREE,
    }
)
CORRECTION = obj(
    {
        "by": text("who corrected"),
        "at": TIMESTAMP,
        "sentiment": nullable(choice(SENTIMENTS, "sentiment")),
        "categories": {"type": "array", "items": text("category id")},
    }
)
SCHEMAS: dict[str, Schema] = {
    "Branch": obj(NAMES | {"region": nullable(text("region"))}),
    "StaffRef": obj({"id": integer("staff user id"), "name": nullable(text("display name"))}),
    "CaseSummary": obj(CASE_FIELDS),
    "CaseDetail": obj(
        CASE_FIELDS
        | {
            "reason": nullable(text("the flags that opened it, masked")),
            "feedback": FEEDBACK,
            "answers": {"type": "array", "items": obj({"step": text("survey step"), "value": FREE})},
            "analysis": nullable(ANALYSIS),
            "events": {"type": "array", "items": CASE_EVENT},
            "assignable": {"type": "array", "items": ref("StaffRef")},
            "label_correction": nullable(CORRECTION),
        }
    ),
}
