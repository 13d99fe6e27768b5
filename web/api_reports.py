"""Figures and records in the API: metrics with the minimum-n rule, the feedback list, and the audit log (admins).

The feedback list is the console's (web.feedback: the same filters, meaning exactly what the metrics count, scope
first); the audit log is web.audit's statement. Only the paging differs: a cursor on the id, newest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from functools import partial
from typing import Any, cast

from aiohttp import web
from sqlalchemy import select

from reporting.figures import Figure
from reporting.metrics import metrics_by
from reporting.periods import Grain, Period, periods_between, range_period, zone
from reporting.report import MetricsReport
from reporting.scope import ReportingError, Scope, staff_branches
from store import Database
from store.models import Analysis, AuditEntry, Branch, Case, Counter, Feedback, StaffRole, StaffUser, utcnow
from web.api_auth import api_user, require_api_role
from web.api_io import Page, answer, iso, masked, query_choice
from web.audit import KINDS, audit_statement
from web.audit import parse_filter as parse_audit_filter
from web.auth import scope_of
from web.feedback import SENTIMENTS, require_known_place, run_listing, scoped_feedback
from web.feedback import latest_analysis_of as latest_analysis
from web.feedback import parse_filter as parse_feedback_filter
from web.keys import DATABASE
from web.listing import parse_days
from web.openapi import (
    DAY,
    NOT_ENOUGH,
    PAGE_PARAMETERS,
    TIMESTAMP,
    Operation,
    Schema,
    choice,
    integer,
    nullable,
    obj,
    page_of,
    query,
    ref,
    text,
)
from web.options import CONSOLE_OPTIONS
from web.shared_results import SharedResults

METRICS_PATH = "/api/v1/metrics"
FEEDBACK_PATH = "/api/v1/feedback"
AUDIT_PATH = "/api/v1/audit"
GRAINS = ("day", "week", "month", "range")
DEFAULT_DAYS = 28  # four weeks up to today when no range is given
MAX_PERIODS = 366
FRESH_FOR = 300.0  # seconds figures are reused: as on the dashboard, twenty callers of one scope share one run
REMEMBERED = 256

Reports = list[MetricsReport]
METRICS = web.AppKey("api_metrics", SharedResults[Reports])


def add_report_state(app: web.Application) -> None:
    app[METRICS] = SharedResults(ttl=FRESH_FOR, size=REMEMBERED)


# -- metrics ------------------------------------------------------------------------------------------------------


async def get_metrics(request: web.Request) -> web.Response:
    user, db, options = api_user(request), request.app[DATABASE], request.app[CONSOLE_OPTIONS]
    scope = await _scope_in_reach(db, user, request.query.get("scope"))
    grain = query_choice(request.query, "period", GRAINS) or "week"
    first, last = _days(request.query, options.timezone)
    periods = _periods(first, last, grain, options.timezone)
    key = (scope, tuple(p.label for p in periods), options.min_responses)
    compute = partial(metrics_by, db, "all", periods, within=scope, min_responses=options.min_responses)
    try:
        reports, computed_at = await request.app[METRICS].get(key, compute)
    except ReportingError:  # a region or branch in the user's scope without any branch left in it
        raise web.HTTPNotFound(text="no such scope within yours") from None
    return answer(
        {
            "scope": {"kind": scope.kind, "value": None if scope.kind == "all" else scope.label},
            "period": grain,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "timezone": options.timezone,
            "min_responses": options.min_responses,
            "computed_at": iso(computed_at),
            "periods": [_report(report) for report in reports],
        }
    )


async def _scope_in_reach(db: Database, user: StaffUser, value: str | None) -> Scope:
    """The asked scope ("all", "region:R", "branch:CODE"; default the user's own) if the user may see it.

    Raises:
        web.HTTPBadRequest: not written as a scope.
        web.HTTPNotFound: outside the user's scope, or no such region or branch: the same answer for both.
    """
    if not value:
        return scope_of(user)
    kind, _, name = value.partition(":")
    if value == "all":
        if scope_of(user).kind != "all":
            raise web.HTTPNotFound(text="no such scope within yours")
        return Scope.bank()
    if kind not in ("region", "branch") or not name or len(name) > 64:
        raise web.HTTPBadRequest(text="scope must be all, region:NAME or branch:CODE")
    column = Branch.region if kind == "region" else Branch.code
    async with db.sessions() as session:
        found = await session.scalar(select(Branch.id).where(column == name, staff_branches(user)).limit(1))
    if found is None:
        raise web.HTTPNotFound(text="no such scope within yours")
    return Scope.of_region(name) if kind == "region" else Scope.of_branch(name)


def _days(query: Mapping[str, str], timezone: str) -> tuple[date, date]:
    try:
        first, last = parse_days(query.get("from"), query.get("to"))
    except web.HTTPBadRequest:
        raise web.HTTPBadRequest(text="from and to are local days (YYYY-MM-DD), from not after to") from None
    if last is None:
        last = max(utcnow().astimezone(zone(timezone)).date(), first or date.min)
    return first or last - timedelta(days=DEFAULT_DAYS - 1), last


def _periods(first: date, last: date, grain: str, timezone: str) -> list[Period]:
    if grain == "range":
        return [range_period(first, last, timezone)]
    if (last - first).days > MAX_PERIODS * 31:
        raise web.HTTPBadRequest(text=f"ask for at most {MAX_PERIODS} periods at once")
    periods = periods_between(first, last, cast(Grain, grain), timezone)  # one of GRAINS: checked on the way in
    if len(periods) > MAX_PERIODS:
        raise web.HTTPBadRequest(text=f"ask for at most {MAX_PERIODS} periods at once")
    return periods


def _report(report: MetricsReport) -> dict[str, Any]:
    period = report.period
    return {
        "label": period.label,
        "start": iso(period.start),
        "end": iso(period.end),
        "responses": report.responses,
        "link_opens": report.link_opens,
        "conversations_started": report.conversations_started,
        "conversations_completed": report.conversations_completed,
        "analysed": report.analysed,
        "cases_opened": report.cases.opened,
        "figures": {name: figure_json(figure) for name, figure in sorted(report.figures().items())},
    }


def figure_json(figure: Figure) -> dict[str, Any]:
    """A figure as data: below the minimum sample its value is null and the reason says why."""
    interval = None if figure.interval is None else [float(bound) for bound in figure.interval]
    body = {"kind": figure.kind, "value": None if figure.value is None else float(figure.value), "n": int(figure.n),
            "interval": interval}  # fmt: skip
    return body | ({"reason": NOT_ENOUGH} if figure.value is None else {})


# -- feedback -----------------------------------------------------------------------------------------------------


async def list_feedback(request: web.Request) -> web.Response:
    user, db, options = api_user(request), request.app[DATABASE], request.app[CONSOLE_OPTIONS]
    try:
        rows = parse_feedback_filter(request.query)
    except web.HTTPBadRequest:
        raise web.HTTPBadRequest(text="a filter is malformed (see the parameters in /api/openapi.json)") from None
    page = Page.of(request.query)
    await require_known_place(db, rows, user)
    columns = (Feedback.id, Feedback.submitted_at, Feedback.csat, Feedback.nps, Feedback.ces, Feedback.comment,
               Branch.code, Branch.name_en, Branch.name_zh, Branch.region, Counter.code.label("counter"),
               Analysis.sentiment, Analysis.categories, Case.id.label("case_id"))  # fmt: skip
    statement = (
        select(*columns)
        .select_from(Feedback)
        .outerjoin(Analysis, latest_analysis(db.dialect))
        .outerjoin(Case, Case.feedback_id == Feedback.id)
    )
    statement = scoped_feedback(statement, rows, user, timezone=options.timezone, dialect=db.dialect)
    if rows.counter is None:  # else the filter joined it already, as an inner join
        statement = statement.outerjoin(Counter, Counter.id == Feedback.counter_id)
    if page.cursor is not None:
        statement = statement.where(Feedback.id < page.cursor)
    listed = await run_listing(db, statement.order_by(Feedback.id.desc()).limit(page.limit + 1))
    return answer(page.body([_feedback(item) for item in listed]))


def _feedback(item: Any) -> dict[str, Any]:
    return {
        "id": item.id,
        "submitted_at": iso(item.submitted_at),
        "branch": {"code": item.code, "name_en": item.name_en, "name_zh": item.name_zh, "region": item.region},
        "counter": item.counter,
        "csat": item.csat,
        "nps": item.nps,
        "ces": item.ces,
        "sentiment": None if item.sentiment is None else str(item.sentiment),
        "categories": [str(c[0] if isinstance(c, list | tuple) else c) for c in item.categories or []],
        "comment": masked(item.comment),
        "case_id": item.case_id,
    }


# -- the audit log ------------------------------------------------------------------------------------------------


async def list_audit(request: web.Request) -> web.Response:
    require_api_role(request, StaffRole.ADMIN, why="the audit log is for administrators")
    try:
        wanted = parse_audit_filter(request.query)
    except web.HTTPBadRequest:
        raise web.HTTPBadRequest(text="a filter is malformed (see the parameters in /api/openapi.json)") from None
    page = Page.of(request.query)
    statement = audit_statement(wanted, request.app[CONSOLE_OPTIONS].timezone).order_by(None)
    if page.cursor is not None:
        statement = statement.where(AuditEntry.id < page.cursor)
    async with request.app[DATABASE].sessions() as session:
        rows = (await session.execute(statement.order_by(AuditEntry.id.desc()).limit(page.limit + 1))).all()
    return answer(page.body([_audit(row.AuditEntry, row.username) for row in rows]))


def _audit(entry: AuditEntry, username: str | None) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "actor_kind": str(entry.actor_kind),
        "actor_id": entry.actor_id,
        "actor": username,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "before": entry.before,
        "after": entry.after,
        "remote_addr": entry.remote_addr,
    }


# -- the declarations ---------------------------------------------------------------------------------------------

RATING = {"type": "string", "pattern": r"^(any|\d{1,2})$"}
DAY_PARAMETERS = (
    query("from", DAY, "The first local day (CLOSELOOP_TIMEZONE), included."),
    query("to", DAY, "The last local day, included."),
)
METRICS_PARAMETERS = (
    query("scope", {"type": "string", "pattern": r"^(all|(region|branch):.{1,64})$"},
          "all, region:NAME or branch:CODE within your scope; default: your own scope."),
    query("from", DAY, f"The first local day, included; default: {DEFAULT_DAYS} days up to `to`."),
    query("to", DAY, "The last local day, included; default: today."),
    query("period", choice(GRAINS, "grain"), "One figure set per day, ISO week (default), month, or the whole range."),
)  # fmt: skip
FEEDBACK_PARAMETERS = (
    query("region", text("a region"), "Only this region's branches."),
    query("branch", text("a branch code"), "Only this branch."),
    query("counter", text("a counter code"), "Only this counter of `branch` (needs `branch`)."),
    *DAY_PARAMETERS,
    query("category", text("a category id"), "Only comments the latest analysis puts in this category."),
    query("sentiment", choice(SENTIMENTS, "sentiment"), "Only comments of this sentiment (latest analysis)."),
    *(query(name, RATING, f"A {name.upper()} score, or `any` for every answer.") for name in ("csat", "nps", "ces")),
    *PAGE_PARAMETERS,
)
AUDIT_PARAMETERS = (
    query("actor", text("a username"), "Only this staff user's actions."),
    query("kind", choice(KINDS, "actor kind"), "Only actions of this kind of actor."),
    query("action", text("an action"), "One action by its name, or every action starting so when it ends in '.'."),
    query("target_type", text("a target type"), "Only actions on this kind of thing (case, ticket, staff_user...)."),
    *DAY_PARAMETERS,
    *PAGE_PARAMETERS,
)

OPERATIONS = (
    Operation("GET", METRICS_PATH, get_metrics, "Figures of a scope per period, hidden below the minimum sample",
              ref("Metrics"), METRICS_PARAMETERS, errors=(400, 404)),
    Operation("GET", FEEDBACK_PATH, list_feedback, "Feedback in your scope, newest first, comments masked",
              page_of("Feedback"), FEEDBACK_PARAMETERS, errors=(400, 404)),
    Operation("GET", AUDIT_PATH, list_audit, "The audit log, newest first (administrators)", page_of("AuditEntry"),
              AUDIT_PARAMETERS, errors=(400, 403)),
)  # fmt: skip

FIGURE = {
    "type": "object",
    "description": f'value null with reason "{NOT_ENOUGH}" below the minimum sample',
    "properties": {
        "kind": choice(("share", "nps", "mean", "duration"), "percent, NPS points, scale mean or seconds"),
        "value": {"type": ["number", "null"]},
        "n": integer("the sample size"),
        "interval": nullable({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}),
        "reason": {"const": NOT_ENOUGH},
    },
    "required": ["kind", "value", "n", "interval"],
    "additionalProperties": False,
}
COUNT = integer("a count", minimum=0)
PERIOD = obj(
    {
        "label": text("2026-W47, 2026-11-24, 2026-11 or 2026-11-01..2026-11-30"),
        "start": TIMESTAMP,
        "end": TIMESTAMP,
        "responses": COUNT,
        "link_opens": COUNT,
        "conversations_started": COUNT,
        "conversations_completed": COUNT,
        "analysed": COUNT,
        "cases_opened": COUNT,
        "figures": {
            "type": "object",
            "description": "csat, nps, ces, completion_rate, sentiment.*, category.*, cases.*",
            "additionalProperties": ref("Figure"),
        },
    }
)
SCHEMAS: dict[str, Schema] = {
    "Figure": FIGURE,
    "Metrics": obj(
        {
            "scope": obj({"kind": choice(("all", "region", "branch"), "scope kind"), "value": nullable(text("name"))}),
            "period": choice(GRAINS, "grain"),
            "from": DAY,
            "to": DAY,
            "timezone": text("the local time zone of days and weeks"),
            "min_responses": integer("fewest responses behind a shown figure"),
            "computed_at": TIMESTAMP,
            "periods": {"type": "array", "items": PERIOD},
        }
    ),
    "Feedback": obj(
        {
            "id": integer("feedback id"),
            "submitted_at": TIMESTAMP,
            "branch": ref("Branch"),
            "counter": nullable(text("counter code")),
            "csat": nullable(integer("1-5")),
            "nps": nullable(integer("0-10")),
            "ces": nullable(integer("1-7")),
            "sentiment": nullable(choice(SENTIMENTS, "the latest analysis's sentiment")),
            "categories": {"type": "array", "items": text("category id")},
            "comment": nullable(text("the customer's comment, masked")),
            "case_id": nullable(integer("its case")),
        }
    ),
    "AuditEntry": obj(
        {
            "id": integer("entry id"),
            "at": TIMESTAMP,
            "actor_kind": choice(KINDS, "who acted"),
            "actor_id": nullable(integer("staff user id")),
            "actor": nullable(text("the staff user's username")),
            "action": text("e.g. case.acknowledged, ticket.started, api_token.created"),
            "target_type": text("case, ticket, staff_user, api_token, ..."),
            "target_id": nullable(text("the target's id")),
            "before": nullable({"type": "object", "description": "state before"}),
            "after": nullable({"type": "object", "description": "state after"}),
            "remote_addr": nullable(text("where the request came from")),
        }
    ),
}
