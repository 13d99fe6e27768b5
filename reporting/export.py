"""Exports for analysts: feedback (masked comments), analyses and metrics as CSV files and an Excel workbook.

Feedback and analyses stream from the database in chunks (a server-side cursor) that are appended to the files
as they arrive, so a million rows never sit in memory together; reporting.tables writes them and neutralises
customer text a spreadsheet would run as a formula. The callback phone number is never exported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Select, func, select

from reporting.aggregates import is_latest_analysis
from reporting.metrics import metrics_for, metrics_frame
from reporting.periods import Period, range_period
from reporting.scope import Dimension, Scope, ScopeFilter, load_org
from reporting.tables import EXCEL_MAX_ROWS, Table, TableFiles
from store import Database
from store.models import Analysis, Branch, Counter, Feedback, utcnow

Format = Literal["csv", "xlsx"]
WORKBOOK = "closeloop-export.xlsx"
TABLES = ("feedback", "analyses", "metrics")

SENTIMENT_SCORES = ("negative", "neutral", "positive")
FEEDBACK_COLUMNS = ["id", "submitted_at", "branch", "counter", "language", "csat", "nps", "ces", "comment",
                    "customer_category", "callback_requested"]  # fmt: skip
ANALYSIS_COLUMNS = ["feedback_id", "model_version", "language", "sentiment", "p_negative", "p_neutral", "p_positive",
                    "categories", "is_flagged", "flags", "analysed_at"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export: local days (default: from the first feedback to today), one branch or all, which formats."""

    out_dir: Path
    timezone: str
    first_day: date | None = None
    last_day: date | None = None
    branch: str | None = None
    formats: frozenset[Format] = frozenset({"csv", "xlsx"})
    min_responses: int = 10
    chunk_rows: int = 5000
    xlsx_max_rows: int = EXCEL_MAX_ROWS


@dataclass(frozen=True, slots=True)
class ExportResult:
    files: tuple[Path, ...]
    period: Period
    feedback_rows: int
    analysis_rows: int
    xlsx_truncated: bool  # the workbook's feedback or analyses sheet stopped at xlsx_max_rows


async def export_files(db: Database, request: ExportRequest) -> ExportResult:
    """Write feedback, analyses and metrics of the request's period and scope into `request.out_dir`.

    Raises:
        ReportingError: the branch is unknown.
        ValueError: the last day comes before the first.
        OSError: the folder or a file cannot be written.
    """
    org = await load_org(db)
    scope = Scope.of_branch(request.branch) if request.branch else Scope.bank()
    rows = org.filter_for(scope)
    period = await _export_period(db, request, rows)
    request.out_dir.mkdir(parents=True, exist_ok=True)
    zone = ZoneInfo(request.timezone)
    files = TableFiles(request.out_dir, TABLES, csv="csv" in request.formats,
                       xlsx=WORKBOOK if "xlsx" in request.formats else None, cap=request.xlsx_max_rows)  # fmt: skip
    with files:
        feedback = await _stream(db, feedback_query(period, rows), files["feedback"], request.chunk_rows,
                                 shape=lambda frame: _feedback_frame(frame, zone))  # fmt: skip
        analyses = await _stream(db, analysis_query(period, rows, db.dialect), files["analyses"], request.chunk_rows,
                                 shape=lambda frame: _analysis_frame(frame, zone))  # fmt: skip
        files["metrics"].write(await _metrics(db, scope, period, request))
        files.add_notes(_notes(files, period, scope))
    return ExportResult(files.paths, period, feedback, analyses, files.truncated)


def feedback_query(period: Period, rows: ScopeFilter) -> Select[Any]:
    """Feedback of the period, oldest first, with branch and counter codes; never the callback phone number."""
    return (
        select(
            Feedback.id,
            Feedback.submitted_at,
            Branch.code.label("branch"),
            Counter.code.label("counter"),
            Feedback.language,
            Feedback.csat,
            Feedback.nps,
            Feedback.ces,
            Feedback.comment,
            Feedback.customer_category,
            Feedback.callback_requested,
        )
        .join(Branch, Branch.id == Feedback.branch_id)
        .outerjoin(Counter, Counter.id == Feedback.counter_id)
        .where(*_within(period, rows))
        .order_by(Feedback.submitted_at, Feedback.id)
    )


def analysis_query(period: Period, rows: ScopeFilter, dialect: str) -> Select[Any]:
    """The latest analysis of each feedback of the period (the one the metrics use)."""
    return (
        select(
            Analysis.feedback_id,
            Analysis.model_version,
            Analysis.language,
            Analysis.sentiment,
            *[Analysis.sentiment_scores[name].as_float().label(f"p_{name}") for name in SENTIMENT_SCORES],
            Analysis.categories,
            Analysis.is_flagged,
            Analysis.flag_reasons,
            Analysis.created_at,
        )
        .join(Feedback, Feedback.id == Analysis.feedback_id)
        .where(*_within(period, rows), is_latest_analysis(dialect))
        .order_by(Feedback.submitted_at, Feedback.id)
    )


async def _stream(
    db: Database,
    statement: Select[Any],
    table: Table,
    chunk_rows: int,
    *,
    shape: Callable[[pd.DataFrame], pd.DataFrame],
) -> int:
    """Fetch the rows in chunks (a server-side cursor) and hand each chunk to the table as it arrives."""
    async with db.sessions() as session:
        result = await session.stream(statement.execution_options(yield_per=chunk_rows))
        columns = list(result.keys())
        async for chunk in result.partitions(chunk_rows):
            table.write(shape(pd.DataFrame.from_records([tuple(row) for row in chunk], columns=columns)))
    if table.rows == 0:
        table.write(shape(pd.DataFrame(columns=columns)))
    return table.rows


def _feedback_frame(frame: pd.DataFrame, zone: ZoneInfo) -> pd.DataFrame:
    out = frame.assign(submitted_at=_local_times(frame["submitted_at"], zone))
    out = out.astype({"csat": "Int64", "nps": "Int64", "ces": "Int64", "callback_requested": "boolean"})
    return out[FEEDBACK_COLUMNS]


def _analysis_frame(frame: pd.DataFrame, zone: ZoneInfo) -> pd.DataFrame:
    out = frame.assign(
        sentiment=frame["sentiment"].map(str),
        p_negative=frame["p_negative"].astype("float64"),
        p_neutral=frame["p_neutral"].astype("float64"),
        p_positive=frame["p_positive"].astype("float64"),
        categories=frame["categories"].map(_category_names),
        is_flagged=frame["is_flagged"].astype("boolean"),
        flags=frame["flag_reasons"].map(_flag_ids),
        analysed_at=_local_times(frame["created_at"], zone),
    )
    return out[ANALYSIS_COLUMNS]


def _notes(files: TableFiles, period: Period, scope: Scope) -> list[tuple[str, str]]:
    notes = [("period", period.label), ("time zone", period.timezone), ("scope", scope.label),
             ("written at (UTC)", utcnow().isoformat(timespec="seconds"))]  # fmt: skip
    for name in ("feedback", "analyses"):
        table = files[name]
        notes.append((f"{name} rows", f"{table.sheet_rows} of {table.rows}"))
        if table.truncated:
            notes.append((name, f"the sheet stops at {table.sheet_rows} rows; {name}.csv (--format csv) has all"))
    return notes


async def _metrics(db: Database, scope: Scope, period: Period, request: ExportRequest) -> pd.DataFrame:
    """The scope's figures, then those of each region, branch and counter inside it."""
    dimensions: list[Dimension] = ["all", "region", "branch", "counter"] if scope.kind == "all" else ["all", "counter"]
    by_dimension = await metrics_for(db, dimensions, period, within=scope, min_responses=request.min_responses)
    return metrics_frame(report for dimension in dimensions for report in by_dimension[dimension])


async def _export_period(db: Database, request: ExportRequest, rows: ScopeFilter) -> Period:
    zone = ZoneInfo(request.timezone)
    first, last = request.first_day, request.last_day
    if first is None:
        async with db.sessions() as session:
            query = select(func.min(Feedback.submitted_at))
            if rows.branch_ids is not None:
                query = query.where(Feedback.branch_id.in_(rows.branch_ids))
            earliest = await session.scalar(query)
        first = earliest.astimezone(zone).date() if earliest else utcnow().astimezone(zone).date()
        first = min(first, last or first)  # --to before the first feedback: an empty export, not an error
    last = last or max(first, utcnow().astimezone(zone).date())
    return range_period(first, last, zone)


def _within(period: Period, rows: ScopeFilter) -> Iterator[Any]:
    yield Feedback.submitted_at >= period.start
    yield Feedback.submitted_at < period.end
    if rows.branch_ids is not None:
        yield Feedback.branch_id.in_(rows.branch_ids)


def _local_times(values: pd.Series, zone: ZoneInfo) -> pd.Series:
    """ISO 8601 local times with their offset (2026-11-02T09:00:00+08:00), vectorised.

    pandas formats naive times in C but aware ones one by one in Python (ten times slower on a million rows),
    so the local wall time and its offset are formatted apart; a zone has only a few distinct offsets.
    """
    utc = pd.to_datetime(values, utc=True)
    local = utc.dt.tz_convert(zone).dt.tz_localize(None)
    offsets = local - utc.dt.tz_localize(None)
    suffix = offsets.map({offset: _offset_text(offset) for offset in offsets.dropna().unique()})
    return local.dt.strftime("%Y-%m-%dT%H:%M:%S") + suffix


def _offset_text(offset: pd.Timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _category_names(categories: Any) -> str:
    names = [c[0] if isinstance(c, list | tuple) else c for c in categories or []]
    return "|".join(str(name) for name in names)


def _flag_ids(flags: Any) -> str:
    return "|".join(str(f.get("id", "")) if isinstance(f, dict) else str(f) for f in flags or [])
