"""One scope's metrics for one period, computed from plain counts (no database): what the digest and console read."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reporting import figures
from reporting.figures import CONFIDENCE, Figure
from reporting.periods import Period
from reporting.scope import Scope
from store.models import Sentiment

SENTIMENTS = tuple(s.value for s in Sentiment)
SCORE_FORMULAS = {"csat": figures.csat, "nps": figures.nps, "ces": figures.ces}
SCORE_NAMES = tuple(SCORE_FORMULAS)
CASE_FIGURES = (
    "first_response_median",
    "first_response_p90",
    "resolution_median",
    "resolution_p90",
    "first_response_sla",
    "resolution_sla",
)


@dataclass(frozen=True, slots=True)
class Counts:
    """Everything one group's figures are computed from; the SQL side fills it, tests can write it by hand."""

    responses: int = 0
    scores: Mapping[str, Mapping[int, int]] = field(default_factory=dict)  # "csat" -> {score: how many}
    link_opens: int = 0
    conversations_started: int = 0
    conversations_completed: int = 0
    sentiment: Mapping[str, int] = field(default_factory=dict)  # latest analysis per feedback
    categories: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # category -> sentiment -> count
    first_response_s: Sequence[float] = ()  # one per case opened; NaN while unanswered
    resolution_s: Sequence[float] = ()
    first_response_met: Sequence[float] = ()  # 1 met, 0 missed, NaN undecided or no SLA
    resolution_met: Sequence[float] = ()


@dataclass(frozen=True, slots=True)
class CaseMetrics:
    """How fast flagged complaints were answered and resolved (cases opened in the period)."""

    opened: int
    first_response_median: Figure
    first_response_p90: Figure
    resolution_median: Figure
    resolution_p90: Figure
    first_response_sla: Figure  # share answered by sla_due_at, among cases whose outcome is known
    resolution_sla: Figure

    def figures(self) -> dict[str, Figure]:
        return {name: getattr(self, name) for name in CASE_FIGURES}


@dataclass(frozen=True, slots=True)
class MetricsReport:
    """The figures of one scope over one period; score distributions are empty below the minimum sample."""

    scope: Scope
    period: Period
    min_responses: int
    responses: int
    csat: Figure
    nps: Figure
    ces: Figure
    score_counts: Mapping[str, Mapping[int, int]]
    link_opens: int
    conversations_started: int
    conversations_completed: int
    completion_rate: Figure
    analysed: int
    sentiment: Mapping[str, Figure]
    categories: Mapping[str, Figure]
    category_sentiment: Mapping[str, Mapping[str, Figure]]
    cases: CaseMetrics

    def figures(self) -> dict[str, Figure]:
        """Every figure by a flat name: csat, nps, ces, completion_rate, sentiment.negative,
        category.waiting_time, category.waiting_time.negative, cases.first_response_median and so on."""
        named = {"csat": self.csat, "nps": self.nps, "ces": self.ces, "completion_rate": self.completion_rate}
        named |= {f"sentiment.{s}": f for s, f in self.sentiment.items()}
        named |= {f"category.{c}": f for c, f in self.categories.items()}
        named |= {f"category.{c}.{s}": f for c, by in self.category_sentiment.items() for s, f in by.items()}
        named |= {f"cases.{name}": f for name, f in self.cases.figures().items()}
        return named

    def figure(self, name: str) -> Figure:
        """The named figure; a category nobody mentioned is a 0% share of the analysed comments.

        Raises:
            KeyError: the name is neither a fixed metric nor a category metric.
        """
        named = self.figures()
        if name in named:
            return named[name]
        parts = name.split(".")
        if parts[0] == "category" and len(parts) == 2:
            return figures.share(0, self.analysed, min_responses=self.min_responses)
        if parts[0] == "category" and len(parts) == 3 and parts[2] in SENTIMENTS:
            return figures.hidden("share", 0)
        raise KeyError(f"no metric {name!r}; known: {', '.join(sorted(named))}")


def build_report(
    scope: Scope, period: Period, counts: Counts, *, min_responses: int, confidence: float = CONFIDENCE
) -> MetricsReport:
    """Compute every figure of a group from its counts."""
    limits = {"min_responses": min_responses, "confidence": confidence}
    scores = {name: dict(counts.scores.get(name, {})) for name in SCORE_NAMES}
    rated = {name: formula(scores[name], **limits) for name, formula in SCORE_FORMULAS.items()}
    return MetricsReport(
        scope=scope,
        period=period,
        min_responses=min_responses,
        responses=counts.responses,
        csat=rated["csat"],
        nps=rated["nps"],
        ces=rated["ces"],
        # A distribution of a small group would show the very answers its hidden figure stands for.
        score_counts={name: scores[name] if rated[name].enough else {} for name in SCORE_NAMES},
        link_opens=counts.link_opens,
        conversations_started=counts.conversations_started,
        conversations_completed=counts.conversations_completed,
        completion_rate=_completion_rate(counts, **limits),
        analysed=sum(counts.sentiment.values()),
        sentiment=_sentiment_shares(counts.sentiment, **limits),
        categories=_category_shares(counts, **limits),
        category_sentiment={c: _sentiment_shares(by, **limits) for c, by in sorted(counts.categories.items())},
        cases=_case_metrics(counts, min_responses=min_responses),
    )


def _completion_rate(counts: Counts, *, min_responses: int, confidence: float) -> Figure:
    """Completed conversations over link opens; over conversations started where opens were not all counted.

    Every conversation begins with an open, so fewer opens than conversations means the daily counts are
    incomplete (imported history, a gap): the larger number is the better denominator.
    """
    denominator = max(counts.link_opens, counts.conversations_started)
    completed = min(counts.conversations_completed, denominator)
    return figures.share(completed, denominator, min_responses=min_responses, confidence=confidence)


def _sentiment_shares(by_sentiment: Mapping[str, int], *, min_responses: int, confidence: float) -> dict[str, Figure]:
    total = sum(by_sentiment.values())
    return {
        s: figures.share(by_sentiment.get(s, 0), total, min_responses=min_responses, confidence=confidence)
        for s in SENTIMENTS
    }


def _category_shares(counts: Counts, *, min_responses: int, confidence: float) -> dict[str, Figure]:
    """Each category's share of analysed comments (a comment may fall in several, so shares need not sum to 100)."""
    analysed = sum(counts.sentiment.values())
    return {
        category: figures.share(
            min(sum(by.values()), analysed), analysed, min_responses=min_responses, confidence=confidence
        )
        for category, by in sorted(counts.categories.items())
    }


def _case_metrics(counts: Counts, *, min_responses: int) -> CaseMetrics:
    def sla(flags: Sequence[float]) -> Figure:
        decided = [flag for flag in flags if not math.isnan(flag)]  # NaN: undecided
        return figures.share(int(sum(decided)), len(decided), min_responses=min_responses)

    return CaseMetrics(
        opened=len(counts.first_response_s),
        first_response_median=figures.duration(counts.first_response_s, 0.5, min_responses=min_responses),
        first_response_p90=figures.duration(counts.first_response_s, 0.9, min_responses=min_responses),
        resolution_median=figures.duration(counts.resolution_s, 0.5, min_responses=min_responses),
        resolution_p90=figures.duration(counts.resolution_s, 0.9, min_responses=min_responses),
        first_response_sla=sla(counts.first_response_met),
        resolution_sla=sla(counts.resolution_met),
    )
