"""The weekly digest's content for one scope: headline figures against last week, categories that moved, follow-up.

    week = week_period("2026-W47", settings.timezone)
    digest = await build_digest(db, Scope.of_branch("B01"), week, min_responses=10, category_names=names)

Plain data out; reporting.render turns it into e-mail, PDF and Telegram text, reporting.charts into images.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from nlp.masking import mask_text
from reporting.aggregates import is_latest_analysis
from reporting.figures import Change, Figure
from reporting.metrics import compare, metrics_for, score_trend
from reporting.periods import Period
from reporting.report import MetricsReport
from reporting.scope import Scope, load_org
from store import Database
from store.models import (
    Analysis,
    Branch,
    Case,
    CaseStatus,
    Feedback,
    Ticket,
    TicketStatus,
)

TREND_WEEKS = 8
HEADLINE_FIGURES = ("csat", "nps", "ces", "completion_rate", "sentiment.positive", "sentiment.neutral",
                    "sentiment.negative")  # fmt: skip
MOVERS = 3
QUOTES_PER_CATEGORY = 2
QUOTE_CHARS = 240
OPEN_CASE = (CaseStatus.NEW, CaseStatus.ACKNOWLEDGED, CaseStatus.IN_PROGRESS)
CLOSED_TICKET = (TicketStatus.RESOLVED, TicketStatus.VERIFIED)
Names = Mapping[str, Mapping[str, str]]  # id -> {"en": ..., "zh": ...}


@dataclass(frozen=True, slots=True)
class Headline:
    """One headline figure this week, last week's, and whether the difference is beyond noise."""

    name: str
    change: Change

    @property
    def figure(self) -> Figure:
        return self.change.current

    @property
    def interval(self) -> tuple[float, float] | None:
        """The confidence interval of the change (current minus previous), when both sides have enough responses."""
        return change_interval(self.change)


@dataclass(frozen=True, slots=True)
class CategoryMove:
    """A category whose share of comments changed, with a few masked comments that mention it."""

    category: str
    change: Change
    quotes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FollowUp:
    """Cases and improvement tickets of the scope: opened and closed in the week, overdue or open at its end."""

    cases_new: int = 0
    cases_overdue: int = 0
    cases_closed: int = 0
    tickets_new: int = 0
    tickets_open: int = 0
    tickets_closed: int = 0

    @property
    def is_empty(self) -> bool:
        return not any((self.cases_new, self.cases_overdue, self.cases_closed, self.tickets_new, self.tickets_open,
                        self.tickets_closed))  # fmt: skip


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One week of the trend chart; hidden figures (too few responses) leave a gap."""

    week: str
    csat: Figure
    nps: Figure


@dataclass(frozen=True, slots=True)
class BranchCategories:
    """How many of a branch's comments this week fell in each category (branches with enough responses only)."""

    branch: str
    names: Mapping[str, str]
    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class DigestData:
    """Everything one scope's weekly digest shows, in both languages' raw form (renderers pick the labels)."""

    scope: Scope
    scope_names: Mapping[str, str]
    period: Period
    previous: Period
    min_responses: int
    responses: int
    previous_responses: int
    headlines: tuple[Headline, ...]
    movers: tuple[CategoryMove, ...]
    follow_up: FollowUp
    trend: tuple[TrendPoint, ...]
    branches: tuple[BranchCategories, ...]
    category_names: Names = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """True when nobody answered in the week: the digest then says so instead of showing figures."""
        return self.responses == 0

    def category_name(self, category: str, language: str) -> str:
        names = self.category_names.get(category)
        if names and names.get(language):
            return names[language]
        return category.replace("_", " ").capitalize()

    def scope_name(self, language: str) -> str:
        return self.scope_names.get(language) or self.scope_names.get("en") or self.scope.label


async def build_digest(
    db: Database,
    scope: Scope,
    week: Period,
    *,
    min_responses: int = 10,
    category_names: Names | None = None,
    now: datetime | None = None,
) -> DigestData:
    """Gather one scope's digest for one week (an empty week gives a digest that says nothing happened).

    Raises:
        ReportingError: the scope names an unknown branch or region.
    """
    periods = trend_periods(week)
    (await load_org(db)).filter_for(scope)  # an unknown scope fails here, before two query rounds run at once
    # Every figure for this week and last (branches too, for the categories chart); the older weeks of the
    # trend show CSAT and NPS only, so they cost the rating counts alone and no pass over the comments.
    reports, scores = await asyncio.gather(
        metrics_for(db, ["all", "branch"], periods[-2:], within=scope, min_responses=min_responses, now=now),
        score_trend(db, periods, within=scope, min_responses=min_responses),
    )
    previous, current = reports["all"]
    changes = compare(current, previous)
    names = dict(category_names or {})
    return DigestData(
        scope=scope,
        scope_names=await scope_names(db, scope),
        period=week,
        previous=previous.period,
        min_responses=min_responses,
        responses=current.responses,
        previous_responses=previous.responses,
        headlines=tuple(Headline(name, changes[name]) for name in HEADLINE_FIGURES),
        movers=await _movers(db, scope, week, changes),
        follow_up=await follow_up(db, scope, week),
        trend=tuple(TrendPoint(p.label, s["csat"], s["nps"]) for p, s in zip(periods, scores, strict=True)),
        branches=await _branch_categories(db, [r for r in reports["branch"] if r.period == week]),
        category_names=names,
    )


def trend_periods(week: Period, weeks: int = TREND_WEEKS) -> list[Period]:
    """The `weeks` ISO weeks ending with `week`, oldest first."""
    periods = [week]
    while len(periods) < weeks:
        periods.insert(0, periods[0].previous())
    return periods


def change_interval(change: Change) -> tuple[float, float] | None:
    """The confidence interval of current minus previous, from the test's own standard error and critical value."""
    if change.delta is None or change.critical is None or not change.statistic:
        return None
    se = abs(change.delta / change.statistic)
    low, high = change.delta - change.critical * se, change.delta + change.critical * se
    if change.current.kind == "share":  # a share moves by at most 100 points
        return max(low, -100.0), min(high, 100.0)
    if change.current.kind == "nps":
        return max(low, -200.0), min(high, 200.0)
    return low, high


async def scope_names(db: Database, scope: Scope) -> dict[str, str]:
    """The scope as people read it: a branch's English and Chinese names, a region's name, or the whole bank."""
    if scope.kind == "branch":
        async with db.sessions() as session:
            row = (
                await session.execute(select(Branch.name_en, Branch.name_zh).where(Branch.code == scope.branch))
            ).first()
        if row is not None:
            return {"en": f"{row.name_en} ({scope.branch})", "zh": f"{row.name_zh}（{scope.branch}）"}
        return {"en": scope.branch or "", "zh": scope.branch or ""}
    if scope.kind == "region":
        return {"en": f"Region {scope.region}", "zh": f"{scope.region} 区域"}
    return {"en": "All branches", "zh": "全部网点"}


async def follow_up(db: Database, scope: Scope, week: Period) -> FollowUp:
    """Count the scope's cases and tickets straight from their tables (either may still be empty)."""
    branch_ids = (await load_org(db)).filter_for(scope).branch_ids
    start, end = week.start, week.end

    def within(statement, column):
        return statement if branch_ids is None else statement.where(column.in_(branch_ids))

    case_count = within(select(func.count()).select_from(Case), Case.branch_id)
    ticket_count = within(select(func.count()).select_from(Ticket), Ticket.branch_id)
    unresolved_at_end = (Case.resolved_at.is_(None)) | (Case.resolved_at >= end)
    statements = {
        "cases_new": case_count.where(Case.created_at >= start, Case.created_at < end),
        # Overdue as the week ended, so the digest of a past week reads the same whenever it is rendered.
        "cases_overdue": case_count.where(
            Case.created_at < end, Case.sla_due_at < end, unresolved_at_end, Case.status != CaseStatus.NOT_A_COMPLAINT
        ),
        "cases_closed": case_count.where(Case.resolved_at >= start, Case.resolved_at < end),
        "tickets_new": ticket_count.where(Ticket.opened_at >= start, Ticket.opened_at < end),
        "tickets_open": ticket_count.where(
            Ticket.opened_at < end, (Ticket.resolved_at.is_(None)) | (Ticket.resolved_at >= end)
        ),
        "tickets_closed": ticket_count.where(Ticket.resolved_at >= start, Ticket.resolved_at < end),
    }
    async with db.sessions() as session:
        counts = {name: int((await session.execute(statement)).scalar_one()) for name, statement in statements.items()}
    return FollowUp(**counts)


async def _movers(db: Database, scope: Scope, week: Period, changes: Mapping[str, Change]) -> tuple[CategoryMove, ...]:
    """The categories whose share moved most, changes beyond noise first, each with up to two masked comments."""
    moved = [
        (name.removeprefix("category."), change)
        for name, change in changes.items()
        if name.startswith("category.") and name.count(".") == 1 and change.delta
    ]
    moved.sort(key=lambda item: (not item[1].is_beyond_noise, -abs(item[1].delta or 0.0), item[0]))
    top = moved[:MOVERS]
    quotes = await _quotes(db, scope, week, {category for category, _ in top})
    return tuple(CategoryMove(category, change, tuple(quotes.get(category, ()))) for category, change in top)


async def _quotes(db: Database, scope: Scope, week: Period, categories: set[str]) -> dict[str, list[str]]:
    """Up to two recent comments per category (latest analysis), negative ones first, masked again and shortened.

    Comments are masked when stored; masking once more costs little and guards against rows imported without it.
    """
    if not categories:
        return {}
    branch_ids = (await load_org(db)).filter_for(scope).branch_ids
    statement = (
        select(Feedback.comment, Analysis.categories, Analysis.sentiment)
        .join(Analysis, Analysis.feedback_id == Feedback.id)
        .where(
            Feedback.submitted_at >= week.start,
            Feedback.submitted_at < week.end,
            Feedback.comment.is_not(None),
            is_latest_analysis(db.dialect),
        )
        .order_by(Feedback.submitted_at.desc(), Feedback.id.desc())
        .limit(5000)
    )
    if branch_ids is not None:
        statement = statement.where(Feedback.branch_id.in_(branch_ids))
    async with db.sessions() as session:
        rows = (await session.execute(statement)).all()
    found: dict[str, list[tuple[bool, str]]] = {c: [] for c in categories}
    for comment, labels, sentiment in rows:
        text = (comment or "").strip()
        if not text:
            continue
        for category in {_category_id(label) for label in labels or ()} & categories:
            found[category].append((sentiment != "negative", text))
    return {c: [_shorten(mask_text(t)) for _, t in sorted(q, key=lambda x: x[0])[:QUOTES_PER_CATEGORY]]
            for c, q in found.items() if q}  # fmt: skip


def _category_id(label: object) -> str:
    """analyses.categories holds [name, score] pairs (older rows: bare names)."""
    return str(label[0]) if isinstance(label, list | tuple) and label else str(label)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1].rstrip() + "…"


async def _branch_categories(db: Database, reports: Sequence[MetricsReport]) -> tuple[BranchCategories, ...]:
    """Category counts per branch, from the shares of branches with enough analysed comments."""
    async with db.sessions() as session:
        found = (await session.execute(select(Branch.code, Branch.name_en, Branch.name_zh))).all()
    names = {row.code: {"en": row.name_en, "zh": row.name_zh} for row in found}
    rows = []
    for report in reports:
        counts = {
            category: round((figure.value or 0.0) * figure.n / 100)
            for category, figure in report.categories.items()
            if figure.enough and figure.value and not math.isnan(figure.value)
        }
        if counts:
            code = report.scope.branch or ""
            rows.append(BranchCategories(code, names.get(code, {"en": code, "zh": code}), counts))
    return tuple(rows)
