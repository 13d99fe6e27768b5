"""Metrics for the weekly digest and the console: a scope, or every branch, counter or region, over periods.

    week = week_period("2026-W47", settings.timezone)
    report = await scope_metrics(db, Scope.of_branch("B01"), week, min_responses=settings.reporting.min_responses)
    before = await scope_metrics(db, Scope.of_branch("B01"), week.previous(), min_responses=...)
    noteworthy = {name: c for name, c in compare(report, before).items() if c.is_beyond_noise}
    best_first = rank(await metrics_by(db, "branch", week, min_responses=...), "csat")

The database counts (reporting.aggregates), pandas rolls counters up into branches, regions and the whole scope,
reporting.report computes the figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from reporting.aggregates import PARTS, SCALES, Aggregates, Grouping, aggregate, rating_frame
from reporting.figures import CONFIDENCE, Change, Figure, compare_figures
from reporting.figures import rank as rank_figures
from reporting.periods import Period
from reporting.report import SCORE_FORMULAS, Counts, MetricsReport, build_report
from reporting.scope import Dimension, Org, Scope, load_org
from store import Database
from store.models import utcnow

Key = tuple[Scope, int]  # (group, index of its period)
FRAME_COLUMNS = ["period", "period_start", "period_end", "scope_kind", "region", "branch", "counter", "metric",
                 "value", "n", "low", "high", "enough", "shown"]  # fmt: skip
COUNT_METRICS = ("responses", "link_opens", "conversations_started", "conversations_completed", "analysed")


async def scope_metrics(
    db: Database,
    scope: Scope,
    period: Period,
    *,
    min_responses: int = 10,
    now: datetime | None = None,
    confidence: float = CONFIDENCE,
) -> MetricsReport:
    """Return the metrics of one scope over one period (a report of hidden figures when nothing happened).

    Raises:
        ReportingError: the scope names an unknown branch, counter or region.
    """
    reports = await metrics_by(
        db, "all", [period], within=scope, min_responses=min_responses, now=now, confidence=confidence
    )
    return reports[0]


async def metrics_by(
    db: Database,
    dimension: Dimension,
    periods: Period | Sequence[Period],
    *,
    within: Scope | None = None,
    min_responses: int = 10,
    now: datetime | None = None,
    confidence: float = CONFIDENCE,
    parts: Collection[str] = PARTS,
) -> list[MetricsReport]:
    """Return one report per group of the dimension and period, in period order, then by scope label.

    `dimension` "all" gives one report per period for `within` itself (even an empty one); "branch", "counter"
    and "region" give the groups inside `within` that had any feedback, start, conversation or case.
    `now` decides whether an unanswered case is already past its SLA (default: the current time). `parts`
    limits the counts fetched (reporting.aggregates.PARTS): the figures of the others read as nothing happened.

    Raises:
        ReportingError: `within` names an unknown branch, counter or region.
    """
    limits = {"min_responses": min_responses, "now": now, "confidence": confidence, "parts": parts}
    return (await metrics_for(db, [dimension], periods, within=within, **limits))[dimension]


async def metrics_for(
    db: Database,
    dimensions: Sequence[Dimension],
    periods: Period | Sequence[Period],
    *,
    within: Scope | None = None,
    min_responses: int = 10,
    now: datetime | None = None,
    confidence: float = CONFIDENCE,
    parts: Collection[str] = PARTS,
) -> dict[Dimension, list[MetricsReport]]:
    """Return `metrics_by` for several dimensions from one round of queries.

    Every count adds up, so the database groups once at the finest dimension asked for (counter rows include
    a "no counter" row per branch) and pandas rolls those rows up to branches, regions and the whole scope:
    the bank, its regions, branches and counters cost one pass over the feedback instead of four.
    """
    periods = (periods,) if isinstance(periods, Period) else tuple(periods)
    if not periods:
        raise ValueError("metrics need at least one period")
    within = within or Scope.bank()
    org = await load_org(db)
    grouping = Grouping(_finest(dimensions), periods, org.filter_for(within), db.dialect)
    data = await aggregate(db, grouping, org, now=now or utcnow(), parts=parts)
    reports: dict[Dimension, list[MetricsReport]] = {}
    for dimension in dimensions:
        counts = counts_by_group(data, dimension, org, within)
        if dimension == "all":
            counts = {(within, i): counts.get((within, i), Counts()) for i in range(len(periods))}
        ordered = sorted(counts.items(), key=lambda item: (item[0][1], item[0][0].label))
        reports[dimension] = [
            build_report(scope, periods[bucket], group, min_responses=min_responses, confidence=confidence)
            for (scope, bucket), group in ordered
        ]
    return reports


async def score_trend(
    db: Database,
    periods: Sequence[Period],
    *,
    within: Scope | None = None,
    min_responses: int = 10,
    confidence: float = CONFIDENCE,
) -> list[dict[str, Figure]]:
    """Return CSAT, NPS and CES of one scope per period ("csat", "nps", "ces"), in the order of `periods`.

    The same figures as `metrics_by(db, "all", periods, ...)` from the rating counts alone: a trend chart shows
    no comment, conversation or case figures, and those queries (the comments' above all) would cost more than
    the ratings for every week of the trend.

    Raises:
        ReportingError: `within` names an unknown branch, counter or region.
    """
    periods = tuple(periods)
    if not periods:
        raise ValueError("a trend needs at least one period")
    org = await load_org(db)
    frame = await rating_frame(db, Grouping("all", periods, org.filter_for(within or Scope.bank()), db.dialect))
    rows = {int(row["bucket"]): row for _, row in frame.iterrows() if pd.notna(row["bucket"])}
    limits = {"min_responses": min_responses, "confidence": confidence}
    trend, nobody = [], pd.Series(0, index=_score_columns())
    for bucket in range(len(periods)):
        row = rows.get(bucket, nobody)
        scores = {name: {s: int(row[f"{name}_{s}"]) for s in scale} for name, scale in SCALES.items()}
        trend.append({name: formula(scores[name], **limits) for name, formula in SCORE_FORMULAS.items()})
    return trend


def compare(current: MetricsReport, previous: MetricsReport, *, confidence: float = CONFIDENCE) -> dict[str, Change]:
    """Compare every figure of two reports (normally consecutive periods of one scope), by figure name.

    A category mentioned in only one period counts as 0% in the other. Each Change says whether it is beyond
    noise; a figure without enough responses on either side never is.
    """
    names = sorted(current.figures().keys() | previous.figures().keys())
    return {name: compare_figures(current.figure(name), previous.figure(name), confidence=confidence) for name in names}


def rank(reports: Iterable[MetricsReport], metric: str, *, descending: bool = True) -> list[tuple[Scope, Figure]]:
    """Order the reports' scopes by a figure, best first; scopes without enough responses are left out."""
    return rank_figures(((r.scope, r.figure(metric)) for r in reports), descending=descending)


def metrics_frame(reports: Iterable[MetricsReport], *, language: str = "en") -> pd.DataFrame:
    """Every figure and count of the reports as one long table (a row per scope, period and metric).

    Hidden figures have no value and `shown` says "not enough responses" in the language asked for.
    """
    rows: list[dict[str, Any]] = []
    for report in reports:
        where = _describe(report)
        rows += [where | _count_row(name, getattr(report, name)) for name in COUNT_METRICS]
        rows.append(where | _count_row("cases.opened", report.cases.opened))
        rows += [where | _figure_row(name, figure, language) for name, figure in report.figures().items()]
    frame = pd.DataFrame.from_records(rows, columns=FRAME_COLUMNS)
    return frame.astype({"value": "float64", "low": "float64", "high": "float64"})


def counts_by_group(data: Aggregates, dimension: Dimension, org: Org, within: Scope) -> dict[Key, Counts]:
    """Roll the queries' rows up to the dimension's groups (counters into branches into regions), per group."""
    fields: dict[Key, dict[str, Any]] = defaultdict(dict)
    label = _labeller(dimension, org, within)
    for key, row in _summed(label(data.ratings), ["responses", *_score_columns()]):
        fields[key]["responses"] = int(row["responses"])
        fields[key]["scores"] = {name: {s: int(row[f"{name}_{s}"]) for s in scale} for name, scale in SCALES.items()}
    for key, row in _summed(label(data.starts), ["link_opens"]):
        fields[key]["link_opens"] = int(row["link_opens"])
    for key, row in _summed(label(data.conversations), ["started", "completed"]):
        fields[key] |= {"conversations_started": int(row["started"]), "conversations_completed": int(row["completed"])}
    sentiment = label(data.sentiment)
    for (scope, bucket, mood), count in _sums(sentiment, ["sentiment"]):
        fields[(scope, bucket)].setdefault("sentiment", {})[mood] = count
    for (scope, bucket, category, mood), count in _sums(label(data.categories), ["category", "sentiment"]):
        fields[(scope, bucket)].setdefault("categories", {}).setdefault(category, {})[mood] = count
    for key, times in _case_lists(label(data.cases)):
        fields[key] |= times
    return {key: Counts(**values) for key, values in fields.items()}


def _finest(dimensions: Sequence[Dimension]) -> Dimension:
    """The grouping every asked dimension can be rolled up from."""
    if "counter" in dimensions:
        return "counter"
    return "branch" if {"branch", "region"} & set(dimensions) else "all"


def _labeller(dimension: Dimension, org: Org, within: Scope):
    """Give each row its group's Scope; drop rows outside every group and outside every period."""

    def label(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            return frame.assign(scope=pd.Series(dtype=object), bucket=pd.Series(dtype="int64"))
        frame = frame[frame["bucket"].notna()]
        if dimension == "all":
            scopes = [within] * len(frame)
        else:
            counters = frame["counter_id"] if "counter_id" in frame.columns else [None] * len(frame)
            scopes = [
                org.scope_of(dimension, _id(b), _id(c)) for b, c in zip(frame["branch_id"], counters, strict=True)
            ]
        scope = pd.Series(scopes, index=frame.index, dtype=object)
        frame = frame.assign(scope=scope, bucket=frame["bucket"].astype("int64"))
        return frame[frame["scope"].notna()]

    return label


def _summed(frame: pd.DataFrame, columns: list[str]) -> Iterable[tuple[Key, pd.Series]]:
    if frame.empty:
        return []
    totals = frame[["scope", "bucket", *columns]].astype({c: "int64" for c in columns})
    return totals.groupby(["scope", "bucket"], sort=False)[columns].sum().iterrows()


def _sums(frame: pd.DataFrame, extra: list[str]) -> Iterable[tuple[tuple[Any, ...], int]]:
    if frame.empty:
        return []
    keyed = frame.assign(sentiment=frame["sentiment"].map(str), count=frame["count"].astype("int64"))
    totals = keyed.groupby(["scope", "bucket", *extra], sort=False)["count"].sum()
    return [(key, int(count)) for key, count in totals.items()]


def _case_lists(frame: pd.DataFrame) -> Iterable[tuple[Key, dict[str, list[float]]]]:
    if frame.empty:
        return []
    columns = ("first_response_s", "resolution_s", "first_response_met", "resolution_met")
    # Convert once and slice arrays by each group's row positions: converting and slicing a DataFrame per
    # group cost a second for the 1,200 branch-weeks of a bank digest.
    arrays = {column: frame[column].to_numpy(dtype="float64", na_value=np.nan) for column in columns}
    groups = frame.groupby(["scope", "bucket"], sort=False).indices
    return [(key, {column: arrays[column][rows].tolist() for column in columns}) for key, rows in groups.items()]


def _score_columns() -> list[str]:
    return [f"{name}_{score}" for name, scale in SCALES.items() for score in scale]


def _id(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _figure_row(metric: str, figure: Figure, language: str) -> dict[str, Any]:
    low, high = figure.interval or (None, None)
    shown = figure.render(language)
    return {"metric": metric, "value": figure.value, "n": figure.n, "low": low, "high": high, "enough": figure.enough,
            "shown": shown}  # fmt: skip


def _count_row(metric: str, count: int) -> dict[str, Any]:
    return {"metric": metric, "value": float(count), "n": count, "enough": True, "shown": str(count)}


def _describe(report: MetricsReport) -> dict[str, Any]:
    scope, period = report.scope, report.period
    return {
        "period": period.label,
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
        "scope_kind": scope.kind,
        "region": scope.region,
        "branch": scope.branch,
        "counter": scope.counter,
    }
