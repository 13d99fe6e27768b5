"""The feedback list: what every dashboard figure drills down to, filtered, paginated and limited to the user's scope.

Each filter means exactly what the metrics count (reporting.aggregates): local days as UTC bounds, a region's,
branch's or counter's rows, the latest analysis's sentiment and categories, a rating on its scale. So the number
at the top of this page is the number on the chart that linked here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiMapping
from sqlalchemy import ColumnElement, Select, and_, exists, func, select, text

from nlp.masking import mask_text
from reporting.aggregates import SCALES, is_latest_analysis
from reporting.complaints import category_of_element
from reporting.periods import local_midnight
from reporting.scope import staff_branches
from store import Database
from store.models import Analysis, Branch, Case, Counter, Feedback, Sentiment, StaffUser
from web.auth import CONSOLE, csrf_token, current_user
from web.keys import DATABASE
from web.listing import MAX_PAGE, link, parse_choice, parse_days, parse_page, parse_text
from web.options import CONSOLE_OPTIONS, ConsoleOptions
from web.pages import language_of, render

FEEDBACK_PATH = f"{CONSOLE}/feedback"
PAGE_SIZE = 50
ANY = "any"  # a rating filter's value for "answered at all"
SENTIMENTS = tuple(s.value for s in Sentiment)


@dataclass(frozen=True, slots=True)
class FeedbackFilter:
    """The list's query string, validated: codes and names as given, days local and inclusive, ratings a score
    or "any"."""

    region: str | None = None
    branch: str | None = None
    counter: str | None = None
    first_day: date | None = None
    last_day: date | None = None
    category: str | None = None
    sentiment: str | None = None
    csat: str | None = None
    nps: str | None = None
    ces: str | None = None

    def query(self) -> dict[str, str]:
        """The filter as query parameters (from/to for the days), leaving out what is not set."""
        names = {"first_day": "from", "last_day": "to"}
        values = {names.get(f.name, f.name): getattr(self, f.name) for f in fields(self)}
        return {name: str(value) for name, value in values.items() if value is not None}


def feedback_link(rows: FeedbackFilter, **extra: str) -> str:
    """The list's address for a filter: what a chart's bar, point or row links to."""
    return link(FEEDBACK_PATH, rows.query() | extra)


def parse_filter(query: MultiMapping[str]) -> FeedbackFilter:
    """Read the filter from a query string.

    Raises:
        web.HTTPBadRequest: a malformed day, rating or sentiment, a range ending before it starts, a counter
            without its branch.
    """
    first, last = parse_days(query.get("from"), query.get("to"))
    rows = FeedbackFilter(
        region=parse_text(query.get("region")),
        branch=parse_text(query.get("branch")),
        counter=parse_text(query.get("counter")),
        first_day=first,
        last_day=last,
        category=parse_text(query.get("category")),
        sentiment=parse_choice(query.get("sentiment"), SENTIMENTS),
        **{name: _rating(query.get(name), scale) for name, scale in SCALES.items()},
    )
    if rows.counter and not rows.branch:
        raise web.HTTPBadRequest()
    return rows


def _filter_conditions(rows: FeedbackFilter, user: StaffUser, *, timezone: str) -> list[ColumnElement[bool]]:
    """The WHERE of a statement over Feedback joined to Branch (and Counter for a counter's rows).

    The user's scope comes first and always: a branch or region outside it finds nothing.
    """
    conditions = [staff_branches(user)]
    if rows.region is not None:
        conditions.append(Branch.region == rows.region)
    if rows.branch is not None:
        conditions.append(Branch.code == rows.branch)
    if rows.counter is not None:
        conditions.append(Counter.code == rows.counter)
    if rows.first_day is not None:
        conditions.append(Feedback.submitted_at >= local_midnight(rows.first_day, timezone))
    if rows.last_day is not None:
        conditions.append(Feedback.submitted_at < local_midnight(rows.last_day + timedelta(days=1), timezone))
    for name, scale in SCALES.items():
        value, column = getattr(rows, name), getattr(Feedback, name)
        if value == ANY:
            conditions.append(column.between(scale.start, scale.stop - 1))
        elif value is not None:
            conditions.append(column == int(value))
    return conditions


def _analysis_conditions(rows: FeedbackFilter, dialect: str) -> list[ColumnElement[bool]]:
    """Conditions on the latest analysis (joined as Analysis): its sentiment and whether it names the category."""
    conditions = []
    if rows.sentiment is not None:
        conditions.append(Analysis.sentiment == rows.sentiment)
    if rows.category is not None:
        element, category = category_of_element(dialect)
        conditions.append(exists(select(category).select_from(element).where(category == rows.category)))
    return conditions


async def show_feedback(request: web.Request) -> web.Response:
    user = current_user(request)
    rows = parse_filter(request.query)
    page = parse_page(request.query.get("page"))
    db, options = request.app[DATABASE], request.app[CONSOLE_OPTIONS]
    await require_known_place(db, rows, user)
    total, listed = await asyncio.gather(
        _count(db, rows, user, timezone=options.timezone),
        _listing(db, rows, user, timezone=options.timezone, page=page),
    )
    language = language_of(request)
    shown = [_row(item, options, language) for item in listed]
    pages = max(1, min(MAX_PAGE, -(-total // PAGE_SIZE)))
    return render(
        request,
        "feedback.html",
        user=user,
        csrf=csrf_token(request),
        rows=rows,
        total=total,
        items=shown,
        page=page,
        pages=pages,
        sentiments=SENTIMENTS,
        scales=SCALES,
        category_label=options.category_name(rows.category, language) if rows.category else None,
        previous=feedback_link(rows, page=str(page - 1)) if page > 1 else None,
        next=feedback_link(rows, page=str(page + 1)) if page < pages else None,
    )


async def require_known_place(db: Database, rows: FeedbackFilter, user: StaffUser) -> None:
    """Answer 404 for a region, branch or counter that does not exist or lies outside the user's scope.

    The same answer for both, so a changed code in the address tells nothing about other branches.
    """
    if rows.region is None and rows.branch is None:
        return
    statement = select(Branch.id).where(staff_branches(user))
    if rows.region is not None:
        statement = statement.where(Branch.region == rows.region)
    if rows.branch is not None:
        statement = statement.where(Branch.code == rows.branch)
    if rows.counter is not None:
        statement = statement.join(Counter, Counter.branch_id == Branch.id).where(Counter.code == rows.counter)
    async with db.sessions() as session:
        if (await session.execute(statement.limit(1))).first() is None:
            raise web.HTTPNotFound()


def scoped_feedback(
    statement: Select[Any], rows: FeedbackFilter, user: StaffUser, *, timezone: str, dialect: str
) -> Select[Any]:
    """The statement over Feedback joined to its branch (and counter) and filtered, scope first."""
    statement = statement.join(Branch, Branch.id == Feedback.branch_id)
    if rows.counter is not None:
        statement = statement.join(Counter, Counter.id == Feedback.counter_id)
    return statement.where(*_filter_conditions(rows, user, timezone=timezone), *_analysis_conditions(rows, dialect))


def latest_analysis_of(dialect: str) -> ColumnElement[bool]:
    """Join each feedback to its latest analysis only: the one the metrics count."""
    return and_(Analysis.feedback_id == Feedback.id, is_latest_analysis(dialect))


async def _count(db: Database, rows: FeedbackFilter, user: StaffUser, *, timezone: str) -> int:
    statement = select(func.count()).select_from(Feedback)
    if rows.sentiment is not None or rows.category is not None:
        statement = statement.join(Analysis, latest_analysis_of(db.dialect))
    statement = scoped_feedback(statement, rows, user, timezone=timezone, dialect=db.dialect)
    return (await run_listing(db, statement))[0][0] or 0


async def _listing(db: Database, rows: FeedbackFilter, user: StaffUser, *, timezone: str, page: int) -> list[Any]:
    """One page, newest first, with each row's latest analysis and case in the same query (no query per row)."""
    statement = (
        select(
            Feedback.id,
            Feedback.submitted_at,
            Feedback.csat,
            Feedback.nps,
            Feedback.ces,
            Feedback.comment,
            Branch.code.label("branch"),
            Branch.name_en,
            Branch.name_zh,
            Counter.code.label("counter"),
            Analysis.sentiment,
            Analysis.categories,
            Case.id.label("case_id"),
        )
        .select_from(Feedback)
        .outerjoin(Analysis, latest_analysis_of(db.dialect))
        .outerjoin(Case, Case.feedback_id == Feedback.id)
    )
    statement = scoped_feedback(statement, rows, user, timezone=timezone, dialect=db.dialect)
    if rows.counter is None:  # else scoped_feedback joined it already, as an inner join
        statement = statement.outerjoin(Counter, Counter.id == Feedback.counter_id)
    statement = statement.order_by(Feedback.submitted_at.desc(), Feedback.id.desc())
    return await run_listing(db, statement.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE))


async def run_listing(db: Database, statement: Select[Any]) -> list[Any]:
    async with db.sessions() as session:
        if db.dialect == "postgresql":
            # As in reporting.aggregates: the JSON unnesting makes the planner expect so many rows that it buys
            # JIT compiling, a third of the time of a bank-wide count (140 of 460 ms at a million rows).
            await session.execute(text("SET LOCAL jit = off"))
        return list(await session.execute(statement))


def _row(item: Any, options: ConsoleOptions, language: str) -> dict[str, Any]:
    """What the page shows of one feedback: local time, names in the reader's language, the comment masked."""
    names = [c[0] if isinstance(c, list | tuple) else c for c in item.categories or []]
    return {
        "id": item.id,
        "at": _local(item.submitted_at, options.timezone),
        "branch": item.branch,
        "branch_name": item.name_zh if language == "zh" else item.name_en,
        "counter": item.counter,
        "csat": item.csat,
        "nps": item.nps,
        "ces": item.ces,
        "sentiment": None if item.sentiment is None else str(item.sentiment),
        "categories": [options.category_name(str(name), language) for name in names],
        # Stored comments were masked on arrival; masking again costs little and covers older rows.
        "comment": mask_text(item.comment) if item.comment else None,
        "case_id": item.case_id,
    }


def _local(moment: datetime, timezone: str) -> str:
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def _rating(value: str | None, scale: range) -> str | None:
    return parse_choice(value, (ANY, *(str(score) for score in scale)))
