"""The SQL behind the metrics: counts grouped in the database, so only small DataFrames come back.

Every query groups by the ids its grouping level needs (none for the bank, the branch id for branches and
regions, branch and counter ids for counters; reporting.metrics rolls them up) and by the period's position in
the list asked for ("bucket"). Periods are local and DST-aware, so the bucket is computed from their UTC bounds,
precomputed in Python, rather than by a date_trunc that SQLite lacks and that would need the zone inside the
database. Grouping happens in an outer query over a subquery: PostgreSQL cannot match a GROUP BY expression
holding bind parameters to the same expression in the select list, but it can group by a subquery's column.

Only case durations come back one row per case: medians and P90s do not add up across groups, and cases are
few (one per flagged complaint), so the rows are four numbers each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Select, and_, case, extract, func, literal, literal_column, select, text, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import aliased

from reporting.periods import Period
from reporting.scope import Dimension, Org, ScopeFilter
from store import Database
from store.models import Analysis, Case, Conversation, ConversationStatus, Feedback, SurveyStart

SCALES = {"csat": range(1, 6), "nps": range(0, 11), "ces": range(1, 8)}
ONE = literal_column("1")  # inlined: a bare bind parameter in CASE ... THEN has no type on PostgreSQL
HALF_DAY = timedelta(hours=12)
ID_COLUMNS = {"all": [], "region": ["branch_id"], "branch": ["branch_id"], "counter": ["branch_id", "counter_id"]}
# The families of counts a grouping can fetch; "comments" (sentiment and categories of the latest analyses) costs
# the most, since it reads every analysis to find each feedback's latest.
PARTS = frozenset({"ratings", "starts", "conversations", "comments", "cases"})


@dataclass(frozen=True, slots=True)
class Grouping:
    """What to group by (a level and periods), which rows to keep (a scope in ids), and the SQL dialect."""

    dimension: Dimension
    periods: tuple[Period, ...]
    scope: ScopeFilter
    dialect: str = "sqlite"

    @property
    def id_columns(self) -> list[str]:
        return ID_COLUMNS[self.dimension]


@dataclass(frozen=True, slots=True)
class Aggregates:
    """The small frames one report (or one set of grouped reports) is computed from."""

    ratings: pd.DataFrame  # ids, bucket, responses, csat_1..5, nps_0..10, ces_1..7
    starts: pd.DataFrame  # ids, bucket, link_opens
    conversations: pd.DataFrame  # ids, bucket, started, completed
    sentiment: pd.DataFrame  # ids, bucket, sentiment, count
    categories: pd.DataFrame  # ids, bucket, category, sentiment, count
    cases: pd.DataFrame  # ids, bucket, first_response_s, resolution_s, first_response_met, resolution_met


async def aggregate(
    db: Database, grouping: Grouping, org: Org, *, now: datetime, parts: Collection[str] = PARTS
) -> Aggregates:
    """Run the aggregate queries of a grouping concurrently (each in its own session).

    `parts` picks the families of counts (see PARTS; all by default); the frames of the others stay empty.

    Raises:
        ValueError: `parts` names an unknown family.
    """
    if unknown := set(parts) - PARTS:
        raise ValueError(f"unknown parts {sorted(unknown)} (known: {sorted(PARTS)})")

    async def fetch(part: str, statement: Callable[[], Select[Any]]) -> pd.DataFrame:
        return await _frame(db, statement()) if part in parts else pd.DataFrame()

    frames = await asyncio.gather(
        fetch("ratings", lambda: rating_counts(grouping)),
        fetch("starts", lambda: start_counts(grouping)),
        fetch("conversations", lambda: conversation_counts(grouping)),
        fetch("comments", lambda: sentiment_counts(grouping)),
        fetch("comments", lambda: category_counts(grouping)),
        fetch("cases", lambda: case_times(grouping, now=now)),
    )
    ratings, starts, conversations, sentiment, categories, cases = frames
    return Aggregates(ratings, _counter_ids(starts, org), conversations, sentiment, categories, cases)


async def rating_frame(db: Database, grouping: Grouping) -> pd.DataFrame:
    """Run only the rating counts of a grouping: what a CSAT or NPS trend needs."""
    return await _frame(db, rating_counts(grouping))


def rating_counts(grouping: Grouping) -> Select[Any]:
    """Responses and how many gave each CSAT, NPS and CES score: one row per group."""
    inner = (
        select(
            *_keys(grouping, Feedback.branch_id, Feedback.counter_id, Feedback.submitted_at),
            Feedback.csat,
            Feedback.nps,
            Feedback.ces,
        )
        .where(*_scope(grouping, Feedback.branch_id, Feedback.counter_id, Feedback.submitted_at))
        .subquery()
    )
    counts = [func.count().label("responses")]
    for name, scale in SCALES.items():
        counts += [func.count(case((inner.c[name] == score, ONE))).label(f"{name}_{score}") for score in scale]
    return _grouped(inner, grouping, counts)


def start_counts(grouping: Grouping) -> Select[Any]:
    """Link opens (QR code, deep link, web-chat URL) from the anonymous daily counts."""
    keys: list[ColumnElement[Any]] = []
    if grouping.dimension != "all":
        keys.append(SurveyStart.branch_id.label("branch_id"))
    if grouping.dimension == "counter":
        keys.append(SurveyStart.counter_code.label("counter_code"))
    days = [utc_days(p) for p in grouping.periods]
    conditions = [SurveyStart.day >= min(d[0] for d in days), SurveyStart.day < max(d[1] for d in days)]
    if grouping.scope.branch_ids is not None:
        conditions.append(SurveyStart.branch_id.in_(grouping.scope.branch_ids))
    if grouping.scope.counter_code is not None:
        conditions.append(SurveyStart.counter_code == grouping.scope.counter_code)
    bucket = _bucket(SurveyStart.day, days, grouping.dialect)
    inner = select(*keys, bucket.label("bucket"), SurveyStart.count).where(*conditions).subquery()
    names = [c.name for c in keys] + ["bucket"]
    columns = [inner.c[n] for n in names]
    return select(*columns, func.sum(inner.c.count).label("link_opens")).group_by(*columns)


def conversation_counts(grouping: Grouping) -> Select[Any]:
    """Conversations started in each period, and how many of them were completed."""
    moment = Conversation.started_at
    inner = (
        select(*_keys(grouping, Conversation.branch_id, Conversation.counter_id, moment), Conversation.status)
        .where(*_scope(grouping, Conversation.branch_id, Conversation.counter_id, moment))
        .subquery()
    )
    completed = func.count(case((inner.c.status == ConversationStatus.COMPLETED, ONE)))
    return _grouped(inner, grouping, [func.count().label("started"), completed.label("completed")])


def sentiment_counts(grouping: Grouping) -> Select[Any]:
    """How many comments got each sentiment, under each feedback's latest analysis."""
    inner = (
        select(*_keys(grouping, Feedback.branch_id, Feedback.counter_id, Feedback.submitted_at), Analysis.sentiment)
        .select_from(Feedback)
        .join(Analysis, Analysis.feedback_id == Feedback.id)
        .where(
            *_scope(grouping, Feedback.branch_id, Feedback.counter_id, Feedback.submitted_at),
            is_latest_analysis(grouping.dialect),
        )
        .subquery()
    )
    return _grouped(inner, grouping, [func.count().label("count")], extra=["sentiment"])


def category_counts(grouping: Grouping) -> Select[Any]:
    """How many comments fall in each category, split by sentiment, under each feedback's latest analysis.

    `analyses.categories` is a JSON list of [category, score] pairs (older rows: bare names), unnested in SQL.
    """
    if grouping.dialect == "postgresql":
        element = func.jsonb_array_elements(Analysis.categories).table_valued("value", name="element")
        is_pair = func.jsonb_typeof(element.c.value) == "array"
        category = case(
            (is_pair, element.c.value.op("->>")(literal_column("0"))),
            else_=element.c.value.op("#>>")(literal_column("'{}'")),
        )
    else:
        element = func.json_each(Analysis.categories).table_valued("value", "type", name="element")
        is_pair = element.c.type == "array"
        category = case((is_pair, func.json_extract(element.c.value, "$[0]")), else_=element.c.value)
    inner = (
        select(
            *_keys(grouping, Feedback.branch_id, Feedback.counter_id, Feedback.submitted_at),
            category.label("category"),
            Analysis.sentiment,
        )
        .select_from(Feedback)
        .join(Analysis, Analysis.feedback_id == Feedback.id)
        .join(element, true())
        .where(
            *_scope(grouping, Feedback.branch_id, Feedback.counter_id, Feedback.submitted_at),
            is_latest_analysis(grouping.dialect),
        )
        .subquery()
    )
    return _grouped(inner, grouping, [func.count().label("count")], extra=["category", "sentiment"])


def case_times(grouping: Grouping, *, now: datetime) -> Select[Any]:
    """Per case opened in the period: seconds to first response and to resolution, and whether each met the SLA.

    A case is credited to its own branch and to the counter of the visit behind it. The SLA flag is 1 (met),
    0 (missed, or still open past due at `now`) or NULL (no SLA, or open and not yet due: undecided).
    """
    moment = Case.created_at
    return (
        select(
            *_keys(grouping, Case.branch_id, Feedback.counter_id, moment),
            _seconds(grouping.dialect, Case.first_response_at, Case.created_at).label("first_response_s"),
            _seconds(grouping.dialect, Case.resolved_at, Case.created_at).label("resolution_s"),
            _sla_met(Case.first_response_at, now).label("first_response_met"),
            _sla_met(Case.resolved_at, now).label("resolution_met"),
        )
        .select_from(Case)
        .join(Feedback, Feedback.id == Case.feedback_id)
        .where(*_scope(grouping, Case.branch_id, Feedback.counter_id, moment))
    )


def is_latest_analysis(dialect: str) -> ColumnElement[bool]:
    """True for the newest analysis of its feedback (the query must join Feedback to Analysis on feedback_id).

    Re-analysis adds a row, so the highest id is the latest model version; model version strings themselves do
    not sort. On PostgreSQL it is NOT EXISTS a newer one: an anti-join (hash or merge over the whole table when
    that pays) or an index-only probe per row. On SQLite, which keeps no statistics unless ANALYZE runs, the
    planner drives that form from a scan of every analysis, a cost that grows with the whole history rather
    than the period (1M analyses: 0.7 s for eight weeks); comparing with the feedback's highest analysis id
    instead starts from the period's feedback and costs one probe of the (feedback_id, id) index per row (0.2 s).
    """
    newer = aliased(Analysis)
    if dialect == "sqlite":
        return Analysis.id == select(func.max(newer.id)).where(newer.feedback_id == Feedback.id).scalar_subquery()
    return ~select(newer.id).where(newer.feedback_id == Analysis.feedback_id, newer.id > Analysis.id).exists()


def utc_days(period: Period) -> tuple[date, date]:
    """The UTC days [first, end) whose noon falls in the period.

    survey_starts.day is the UTC date of the start (the engine's clock); a local period rarely begins at UTC
    midnight, so each UTC day goes to the period that holds most of it. Every day lands in exactly one period,
    and the edge error is under half a day.
    """
    return _ceil_to_day(period.start - HALF_DAY), _ceil_to_day(period.end - HALF_DAY)


def _ceil_to_day(instant: datetime) -> date:
    instant = instant.astimezone(UTC)
    return instant.date() if instant.time() == time(0) else instant.date() + timedelta(days=1)


def _keys(grouping: Grouping, branch: Any, counter: Any, moment: Any) -> list[ColumnElement[Any]]:
    keys: list[ColumnElement[Any]] = []
    if grouping.dimension != "all":
        keys.append(branch.label("branch_id"))
    if grouping.dimension == "counter":
        keys.append(counter.label("counter_id"))
    bounds = [(p.start, p.end) for p in grouping.periods]
    return [*keys, _bucket(moment, bounds, grouping.dialect).label("bucket")]


def _bucket(moment: Any, bounds: Sequence[tuple[Any, Any]], dialect: str) -> ColumnElement[int]:
    """The index of the [start, end) interval holding `moment`; NULL in none (the WHERE keeps such rows out).

    Evaluated once per row, so its cost counts: contiguous periods (the usual weeks or months in a row) need
    one comparison per period on SQLite and a binary search (width_bucket) on PostgreSQL.
    """
    contiguous = all(a[1] == b[0] for a, b in pairwise(bounds))
    if contiguous and dialect == "postgresql":
        edges = [literal(start, moment.type) for start, _ in bounds] + [literal(bounds[-1][1], moment.type)]
        return func.width_bucket(moment, postgresql.array(edges)) - 1
    if contiguous:
        return case(*[(moment < end, literal_column(str(i))) for i, (_, end) in enumerate(bounds)])
    return case(
        *[(and_(moment >= start, moment < end), literal_column(str(i))) for i, (start, end) in enumerate(bounds)]
    )


def _scope(grouping: Grouping, branch: Any, counter: Any, moment: Any) -> list[ColumnElement[bool]]:
    # The overall range keeps the (branch_id, submitted_at) and time indexes usable; the CASE alone would not.
    conditions = [moment >= min(p.start for p in grouping.periods), moment < max(p.end for p in grouping.periods)]
    if grouping.scope.branch_ids is not None:
        ids = grouping.scope.branch_ids
        conditions.append(branch == ids[0] if len(ids) == 1 else branch.in_(ids))
    if grouping.scope.counter_id is not None:
        conditions.append(counter == grouping.scope.counter_id)
    return conditions


def _grouped(inner: Any, grouping: Grouping, aggregates: list[Any], *, extra: Sequence[str] = ()) -> Select[Any]:
    columns = [inner.c[name] for name in [*grouping.id_columns, "bucket", *extra]]
    return select(*columns, *aggregates).group_by(*columns)


def _seconds(dialect: str, later: Any, earlier: Any) -> ColumnElement[float]:
    if dialect == "postgresql":
        return extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _sla_met(done_at: Any, now: datetime) -> ColumnElement[int | None]:
    return case(
        (Case.sla_due_at.is_(None), None),
        (done_at.is_not(None), case((done_at <= Case.sla_due_at, ONE), else_=literal_column("0"))),
        (Case.sla_due_at < now, literal_column("0")),
        else_=None,
    )


def _counter_ids(starts: pd.DataFrame, org: Org) -> pd.DataFrame:
    """Starts name their counter by code; turn (branch id, code) into the counter id the other frames use."""
    if "counter_code" not in starts.columns:
        return starts
    by_code = {(branch_id, code): counter_id for counter_id, (branch_id, code) in org.counters.items()}
    ids = [by_code.get((b, c)) for b, c in zip(starts["branch_id"], starts["counter_code"], strict=True)]
    return starts.drop(columns="counter_code").assign(counter_id=pd.array(ids, dtype="Int64"))


async def _frame(db: Database, statement: Select[Any]) -> pd.DataFrame:
    async with db.sessions() as session:
        if db.dialect == "postgresql":
            # Unnesting JSON makes the planner expect 100 rows per analysis, and a cost that high buys JIT with
            # inlining and optimisation: up to a second of compiling for queries that read a few weeks of rows.
            await session.execute(text("SET LOCAL jit = off"))
        result = await session.execute(statement)
        columns = list(result.keys())
        rows = [tuple(row) for row in result]
    return pd.DataFrame.from_records(rows, columns=columns)
