"""The window's complaints: counted and selected in SQL, tested for change beyond noise, clustered by meaning.

A complaint is a feedback whose latest analysis is negative (or whose CSAT is 2 or less) and names the category.
Only counts per branch × category come back for the whole window; texts come back, at most `max_texts` of the
most recent, only for the groups that crossed a threshold or already hold an open ticket. No NLP import here:
the caller injects `embed` (texts -> unit rows), and this module clusters the rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, case, func, literal_column, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.aggregates import is_latest_analysis
from reporting.figures import compare_figures, share
from store.models import Analysis, Feedback, Sentiment

Embed = Callable[[Sequence[str]], np.ndarray]
GroupKey = tuple[int, str]  # (branch id, category)
ONE = literal_column("1")  # inlined: a bare bind parameter in CASE ... THEN has no type on PostgreSQL


@dataclass(frozen=True, slots=True)
class TicketRules:
    """When complaints make a ticket, and how texts are grouped into one problem.

    `cluster_distance` suits multilingual-e5-small, whose cosines crowd together (0.8 between unrelated complaints
    of one category): at 0.15, the waiting-time complaints of nlp/data split into "the queue" and "I waited N
    minutes" and a tail of one-offs; at 0.17 they merge into one. A deployment's own encoder wants its own value.
    The same threshold decides whether a cluster is an existing ticket's problem (see `linkage`).
    """

    window: timedelta = timedelta(days=28)
    min_complaints: int = 5  # volume: this many complaints in the window open a ticket
    negative_share: float = 0.4  # share: complaints / all feedback naming the category ...
    min_share_feedback: int = 10  # ... judged only with this much feedback in the category
    min_cluster_size: int = 3  # the smallest problem: fewer complaints never open a ticket by any trigger
    max_csat_complaint: int = 2  # a CSAT this low makes a feedback a complaint whatever its sentiment
    confidence: float = 0.95  # two-sided, for "rose beyond noise" and for verification
    cluster_distance: float = 0.15  # average cosine distance at which clusters (and cluster to ticket) stop merging
    max_texts: int = 500  # most recent complaints embedded per branch × category
    max_ticket_texts: int = 50  # most recent evidence embedded for a ticket's mean (matching without shared ids)
    quotes: int = 5  # representative quotes per ticket (3 at least where the ticket has 3 texts)
    trend_weeks: int = 8

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ValueError("the window must be longer than zero")
        if not 0 < self.negative_share <= 1:
            raise ValueError("negative_share must lie in (0, 1]")
        if not 0 < self.cluster_distance < 2:
            raise ValueError("cluster_distance must lie in (0, 2)")
        if min(self.min_complaints, self.min_cluster_size, self.max_texts, self.quotes, self.trend_weeks) < 1:
            raise ValueError("counts in the ticket rules must be at least 1")


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """One branch × category: complaints and all feedback naming the category, this window and the one before."""

    complaints: int = 0
    feedback: int = 0
    previous_complaints: int = 0
    previous_feedback: int = 0


@dataclass(frozen=True, slots=True)
class RateChange:
    """Two equal-length windows' counts compared with the exact conditional (binomial) test of Poisson rates."""

    current: int
    previous: int
    p_value: float
    is_beyond_noise: bool

    @property
    def direction(self) -> str:
        return "up" if self.current > self.previous else "down" if self.current < self.previous else "flat"


@dataclass(frozen=True, slots=True)
class Assessment:
    """Whether a group crossed a threshold, which ones, and the tests behind the decision (for the trend JSON)."""

    triggers: tuple[str, ...]
    rate: RateChange
    share_now: float | None
    share_before: float | None
    share_beyond_noise: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "triggers": list(self.triggers),
            "rate_test": {"kind": "poisson_exact", "p_value": round(self.rate.p_value, 6),
                          "beyond_noise": self.rate.is_beyond_noise, "direction": self.rate.direction},
            "share_test": {"kind": "two_proportion_z", "current_pct": self.share_now,
                           "previous_pct": self.share_before, "beyond_noise": self.share_beyond_noise},
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Complaint:
    """A complaint with a (masked) comment, as the clustering and the quotes need it."""

    feedback_id: int
    comment: str
    submitted_at: datetime


@dataclass(slots=True)
class Cluster:
    """Complaints about one problem, their unit embeddings, their mean, and the mean's unit direction."""

    members: list[Complaint]
    vectors: np.ndarray
    mean: np.ndarray = field(init=False)
    centroid: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.vectors, dtype=np.float64).mean(axis=0)
        self.centroid = unit_mean(self.vectors)

    @property
    def ids(self) -> list[int]:
        return [m.feedback_id for m in self.members]


# -- SQL ---------------------------------------------------------------------------------------------------------


def category_of_element(dialect: str) -> tuple[Any, ColumnElement[str]]:
    """The table-valued unnesting of `analyses.categories` and the category name of each element.

    Elements are [category, score] pairs (older rows: bare names), as in reporting.aggregates.category_counts.
    """
    if dialect == "postgresql":
        element = func.jsonb_array_elements(Analysis.categories).table_valued("value", name="element")
        is_pair = func.jsonb_typeof(element.c.value) == "array"
        category = case(
            (is_pair, element.c.value.op("->>")(literal_column("0"))),
            else_=element.c.value.op("#>>")(literal_column("'{}'")),
        )
        return element, category
    element = func.json_each(Analysis.categories).table_valued("value", "type", name="element")
    return element, case((element.c.type == "array", func.json_extract(element.c.value, "$[0]")), else_=element.c.value)


def is_complaint(rules: TicketRules) -> ColumnElement[bool]:
    return or_(Analysis.sentiment == Sentiment.NEGATIVE, Feedback.csat <= rules.max_csat_complaint)


def window_counts_query(
    dialect: str,
    rules: TicketRules,
    *,
    end: datetime,
    branch_id: int | None = None,
    category: str | None = None,
) -> Select[Any]:
    """Feedback and complaints per branch × category in [end - window, end) (bucket 1) and the window before (0)."""
    element, name = category_of_element(dialect)
    middle, start = end - rules.window, end - 2 * rules.window
    conditions = [Feedback.submitted_at >= start, Feedback.submitted_at < end, is_latest_analysis(dialect)]
    if branch_id is not None:
        conditions.append(Feedback.branch_id == branch_id)
    if category is not None:
        conditions.append(name == category)
    inner = (
        select(
            Feedback.branch_id,
            name.label("category"),
            case((Feedback.submitted_at >= middle, ONE), else_=literal_column("0")).label("bucket"),
            case((is_complaint(rules), ONE)).label("complaint"),
        )
        .select_from(Feedback)
        .join(Analysis, Analysis.feedback_id == Feedback.id)
        .join(element, true())
        .where(*conditions)
        .subquery()
    )
    keys = [inner.c.branch_id, inner.c.category, inner.c.bucket]
    return select(*keys, func.count().label("feedback"), func.count(inner.c.complaint).label("complaints")).group_by(
        *keys
    )


async def window_counts(
    session: AsyncSession, dialect: str, rules: TicketRules, *, end: datetime, **only: Any
) -> dict[GroupKey, GroupCounts]:
    """Run window_counts_query; every branch × category with any feedback in either window."""
    fields: dict[GroupKey, dict[str, int]] = {}
    for row in await session.execute(window_counts_query(dialect, rules, end=end, **only)):
        prefix = "" if int(row.bucket) == 1 else "previous_"
        group = fields.setdefault((int(row.branch_id), str(row.category)), {})
        group[f"{prefix}complaints"], group[f"{prefix}feedback"] = int(row.complaints), int(row.feedback)
    return {key: GroupCounts(**values) for key, values in fields.items()}


async def weekly_complaints(
    session: AsyncSession, dialect: str, rules: TicketRules, groups: Iterable[GroupKey], *, end: datetime
) -> dict[GroupKey, list[int]]:
    """Complaints per 7-day bucket ending at `end`, oldest first, for the given groups only."""
    groups = set(groups)
    if not groups:
        return {}
    element, name = category_of_element(dialect)
    weeks = rules.trend_weeks
    bounds = [end - timedelta(days=7 * (weeks - i - 1)) for i in range(weeks)]
    bucket = case(*[(Feedback.submitted_at < bound, literal_column(str(i))) for i, bound in enumerate(bounds)])
    inner = (
        select(Feedback.branch_id, name.label("category"), bucket.label("bucket"))
        .select_from(Feedback)
        .join(Analysis, Analysis.feedback_id == Feedback.id)
        .join(element, true())
        .where(
            Feedback.submitted_at >= end - timedelta(days=7 * weeks),
            Feedback.submitted_at < end,
            Feedback.branch_id.in_(sorted({b for b, _ in groups})),
            name.in_(sorted({c for _, c in groups})),
            is_complaint(rules),
            is_latest_analysis(dialect),
        )
        .subquery()
    )
    keys = [inner.c.branch_id, inner.c.category, inner.c.bucket]
    counts = {group: [0] * weeks for group in groups}
    for row in await session.execute(select(*keys, func.count().label("n")).group_by(*keys)):
        key = (int(row.branch_id), str(row.category))
        if key in counts:
            counts[key][int(row.bucket)] = int(row.n)
    return counts


async def recent_complaints(
    session: AsyncSession, dialect: str, rules: TicketRules, group: GroupKey, *, end: datetime
) -> list[Complaint]:
    """The group's complaints with a comment in [end - window, end), most recent first, at most `max_texts`."""
    element, name = category_of_element(dialect)
    query = (
        select(Feedback.id, Feedback.comment, Feedback.submitted_at)
        .select_from(Feedback)
        .join(Analysis, Analysis.feedback_id == Feedback.id)
        .join(element, true())
        .where(
            Feedback.branch_id == group[0],
            Feedback.submitted_at >= end - rules.window,
            Feedback.submitted_at < end,
            Feedback.comment.is_not(None),
            Feedback.comment != "",
            name == group[1],
            is_complaint(rules),
            is_latest_analysis(dialect),
        )
        .order_by(Feedback.submitted_at.desc(), Feedback.id.desc())
        .limit(rules.max_texts)
    )
    return [Complaint(row.id, row.comment, row.submitted_at) for row in await session.execute(query)]


# -- tests of change ---------------------------------------------------------------------------------------------


def rate_change(current: int, previous: int, *, confidence: float) -> RateChange:
    """Test two counts of equal exposure: given their sum n, `current` ~ Binomial(n, 1/2) when the rate is unchanged.

    Exact rather than a normal approximation, because ticket counts are small (5 against 1 is common).
    """
    n = current + previous
    if n == 0:
        return RateChange(current, previous, 1.0, is_beyond_noise=False)
    low = min(current, previous)
    tail = sum(math.comb(n, k) for k in range(low + 1)) / 2**n
    p_value = min(1.0, 2 * tail)
    return RateChange(current, previous, p_value, is_beyond_noise=p_value < 1 - confidence)


def assess(counts: GroupCounts, rules: TicketRules) -> Assessment:
    """Decide which thresholds a branch × category crossed in the window: volume, share, or a rise beyond noise."""
    rate = rate_change(counts.complaints, counts.previous_complaints, confidence=rules.confidence)
    now = share(counts.complaints, counts.feedback, min_responses=rules.min_share_feedback, confidence=rules.confidence)
    before = share(
        counts.previous_complaints,
        counts.previous_feedback,
        min_responses=rules.min_share_feedback,
        confidence=rules.confidence,
    )
    share_change = compare_figures(now, before, confidence=rules.confidence)
    share_rose = share_change.is_beyond_noise and share_change.direction == "up"
    triggers: list[str] = []
    if counts.complaints >= rules.min_cluster_size:
        if counts.complaints >= rules.min_complaints:
            triggers.append("volume")
        if now.value is not None and now.value >= 100 * rules.negative_share:
            triggers.append("share")
        if (rate.is_beyond_noise and rate.direction == "up") or share_rose:
            triggers.append("rise")
    return Assessment(tuple(triggers), rate, _rounded(now.value), _rounded(before.value), share_rose)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# -- clustering --------------------------------------------------------------------------------------------------


def unit_mean(vectors: np.ndarray) -> np.ndarray:
    """The mean direction of unit rows, itself of unit length (zero stays zero)."""
    mean = np.asarray(vectors, dtype=np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


def cluster_complaints(complaints: Sequence[Complaint], vectors: np.ndarray, rules: TicketRules) -> list[Cluster]:
    """Split one group's complaints into problems: average-linkage clusters on cosine distance, largest first.

    Average linkage with a distance threshold needs no number of clusters and does not chain two problems
    through one ambiguous text the way single linkage would; 500 texts make a 500 × 500 distance matrix.
    """
    # Imported here: scikit-learn takes a second to import, and only the grouping pass clusters.
    from sklearn.cluster import AgglomerativeClustering

    if len(complaints) != len(vectors):
        raise ValueError(f"embed returned {len(vectors)} rows for {len(complaints)} texts")
    if len(complaints) == 0:
        return []
    if len(complaints) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        model = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=rules.cluster_distance
        )
        labels = model.fit_predict(np.asarray(vectors, dtype=np.float64))
    clusters = [
        Cluster([complaints[i] for i in np.flatnonzero(labels == label)], vectors[labels == label])
        for label in np.unique(labels)
    ]
    # Largest first, then by oldest member: a stable order makes every decision repeatable.
    return sorted(clusters, key=lambda c: (-len(c.members), min(c.ids)))


def representatives(cluster: Cluster, *, count: int, exclude: Collection[int] = ()) -> list[int]:
    """The ids of up to `count` members closest to the centroid, skipping repeated texts where others are left."""
    closeness = np.asarray(cluster.vectors, dtype=np.float64) @ cluster.centroid
    # Rounded, then by id: float noise must not reorder equally close texts between two runs.
    order = sorted(
        range(len(cluster.members)), key=lambda i: (-round(float(closeness[i]), 6), cluster.members[i].feedback_id)
    )
    chosen: list[int] = []
    seen: set[str] = set()
    for i in order:
        member = cluster.members[i]
        text = " ".join(member.comment.casefold().split())
        if member.feedback_id in exclude or text in seen:
            continue
        seen.add(text)
        chosen.append(member.feedback_id)
        if len(chosen) == count:
            break
    return chosen


def linkage(mean: np.ndarray, other_mean: np.ndarray) -> float:
    """The average cosine distance between two sets of unit rows, from their means (mean of dots = dot of means).

    It is what average linkage compares with `cluster_distance`, so a cluster belongs to a ticket exactly when
    clustering would have merged it with the ticket's evidence.
    """
    return 1.0 - float(mean @ other_mean)


def merge(clusters: Sequence[Cluster]) -> Cluster:
    """One cluster holding every member of several (several clusters matched one ticket)."""
    if len(clusters) == 1:
        return clusters[0]
    return Cluster([m for c in clusters for m in c.members], np.vstack([c.vectors for c in clusters]))
