"""Figures: one metric's value with its sample size and confidence interval, the formulas, and "beyond noise" tests.

Pure functions of counts, no database: the SQL side (reporting.aggregates) counts, this module computes.
A figure behind fewer than `min_responses` answers carries no value at all, only its size, so a small sample can
never be shown, compared or used to rank staff or branches, by construction rather than by each caller's care.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal, TypeVar

import numpy as np

FigureKind = Literal["share", "nps", "mean", "duration"]
K = TypeVar("K")

NOT_ENOUGH = {"en": "not enough responses", "zh": "样本不足"}
HOURS = {"en": "h", "zh": "小时"}
MINUTES = {"en": "min", "zh": "分钟"}
CONFIDENCE = 0.95

CSAT_SCALE = range(1, 6)
NPS_SCALE = range(0, 11)
CES_SCALE = range(1, 8)
CSAT_TOP_BOX = (4, 5)
NPS_PROMOTERS = (9, 10)
NPS_DETRACTORS = range(0, 7)


@dataclass(frozen=True, slots=True)
class Figure:
    """A metric's value (None below the minimum sample), its sample size, interval and standard error.

    Units by kind: share in percent (0-100), nps in points (-100..100), mean on the question's scale,
    duration in seconds. `std_error` is in the same unit and feeds the comparison with another period.
    """

    kind: FigureKind
    value: float | None
    n: int
    interval: tuple[float, float] | None = None
    std_error: float | None = None
    enough: bool = True

    def __post_init__(self) -> None:
        if not self.enough and (self.value is not None or self.interval is not None):
            raise ValueError("a figure without enough responses must carry no value")
        if self.enough and self.value is None:
            raise ValueError("a figure with enough responses needs a value")

    def render(self, language: str = "en") -> str:
        """The figure as shown to people: the number, or "not enough responses" in the reader's language."""
        lang = "zh" if language.lower().startswith("zh") else "en"
        if self.value is None:
            return NOT_ENOUGH[lang]
        if self.kind == "share":
            return f"{self.value:.0f}%"
        if self.kind == "nps":
            return str(round(self.value) + 0)  # + 0 turns -0 into 0
        if self.kind == "mean":
            return f"{self.value:.1f}"
        if self.value >= 3600:
            return f"{self.value / 3600:.1f} {HOURS[lang]}"
        return f"{self.value / 60:.0f} {MINUTES[lang]}"

    def __str__(self) -> str:
        return self.render("en")


def hidden(kind: FigureKind, n: int) -> Figure:
    """A figure whose sample is too small to show."""
    return Figure(kind, None, n, enough=False)


def share(successes: int, n: int, *, min_responses: int, confidence: float = CONFIDENCE) -> Figure:
    """Return successes/n in percent with its Wilson score interval.

    Wilson rather than p ± z·se: the plain interval collapses to a point at 0% and 100%, exactly where a small
    branch with all-happy answers sits.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes ({successes}) must lie between 0 and n ({n})")
    if n < max(min_responses, 1):
        return hidden("share", n)
    p, z = successes / n, _z(confidence)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return Figure("share", 100 * p, n, (100 * low, 100 * high), 100 * math.sqrt(p * (1 - p) / n))


def csat(scores: Mapping[int, int], *, min_responses: int, confidence: float = CONFIDENCE) -> Figure:
    """Return CSAT: the share of 4 and 5 among 1-5 answers (top-2 box), in percent."""
    n = _total(scores, CSAT_SCALE, "CSAT")
    top = sum(scores.get(score, 0) for score in CSAT_TOP_BOX)
    return share(top, n, min_responses=min_responses, confidence=confidence)


def nps(scores: Mapping[int, int], *, min_responses: int, confidence: float = CONFIDENCE) -> Figure:
    """Return NPS: % promoters (9-10) minus % detractors (0-6), in points, with a trinomial-variance interval.

    The score is the mean of +1 (promoter), 0 (passive) and -1 (detractor), so its variance is
    (p_pro + p_det - (p_pro - p_det)^2) / n; the interval is clipped to -100..100.
    """
    n = _total(scores, NPS_SCALE, "NPS")
    if n < max(min_responses, 1):
        return hidden("nps", n)
    p_pro = sum(scores.get(s, 0) for s in NPS_PROMOTERS) / n
    p_det = sum(scores.get(s, 0) for s in NPS_DETRACTORS) / n
    value = p_pro - p_det
    se = math.sqrt(max(0.0, p_pro + p_det - value * value) / n)
    half = _z(confidence) * se
    interval = (max(-100.0, 100 * (value - half)), min(100.0, 100 * (value + half)))
    return Figure("nps", 100 * value, n, interval, 100 * se)


def ces(scores: Mapping[int, int], *, min_responses: int, confidence: float = CONFIDENCE) -> Figure:
    """Return CES: the mean 1-7 answer, with a Student-t interval."""
    n = _total(scores, CES_SCALE, "CES")
    values = np.array([float(s) for s in CES_SCALE])
    weights = np.array([float(scores.get(s, 0)) for s in CES_SCALE])
    return mean_figure(values, weights, min_responses=min_responses, confidence=confidence, n=n)


def mean_figure(
    values: np.ndarray, weights: np.ndarray, *, min_responses: int, n: int, confidence: float = CONFIDENCE
) -> Figure:
    """Return the weighted mean of `values` (weights are counts) with mean ± t·s/√n."""
    if n < max(min_responses, 2):
        return hidden("mean", n)
    mean = float(np.average(values, weights=weights))
    variance = float(np.sum(weights * (values - mean) ** 2) / (n - 1))
    se = math.sqrt(variance / n)
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * se
    return Figure("mean", mean, n, (mean - half, mean + half), se)


def duration(seconds: Sequence[float], quantile: float, *, min_responses: int) -> Figure:
    """Return a quantile (0.5: median, 0.9: P90) of durations in seconds; no interval, no comparison."""
    clean = [s for s in seconds if s is not None and not math.isnan(s)]
    if len(clean) < max(min_responses, 1):
        return hidden("duration", len(clean))
    return Figure("duration", float(np.quantile(np.array(clean, dtype=float), quantile)), len(clean))


@dataclass(frozen=True, slots=True)
class Change:
    """A figure against the previous period's: the difference and whether it is beyond sampling noise.

    `delta` is current minus previous in the figure's unit (percentage points for shares); None when either side
    lacks enough responses or the kind has no test (durations). `statistic` is z (shares, NPS) or Welch's t (means).
    """

    current: Figure
    previous: Figure
    delta: float | None
    statistic: float | None
    critical: float | None
    is_beyond_noise: bool

    @property
    def direction(self) -> Literal["up", "down", "flat"] | None:
        if self.delta is None:
            return None
        return "up" if self.delta > 0 else "down" if self.delta < 0 else "flat"


def compare_figures(current: Figure, previous: Figure, *, confidence: float = CONFIDENCE) -> Change:
    """Test whether the change from `previous` to `current` is beyond noise at the given two-sided confidence.

    Shares: the two-proportion z-test with a pooled proportion. NPS: the difference over the combined standard
    error of both scores. Means: Welch's t with Satterthwaite's degrees of freedom. Durations: no test.
    """
    if current.kind != previous.kind:
        raise ValueError(f"cannot compare a {current.kind} figure with a {previous.kind} figure")
    if current.value is None or previous.value is None or current.kind == "duration":
        return Change(current, previous, None, None, None, is_beyond_noise=False)
    delta = current.value - previous.value
    se, critical = _difference_error(current, previous, confidence)
    if se == 0:
        # No variation inside either sample (e.g. all promoters both times): any difference is real.
        return Change(current, previous, delta, None, critical, is_beyond_noise=delta != 0)
    statistic = delta / se
    return Change(current, previous, delta, statistic, critical, is_beyond_noise=abs(statistic) > critical)


def rank(items: Iterable[tuple[K, Figure]], *, descending: bool = True) -> list[tuple[K, Figure]]:
    """Order (key, figure) pairs best first, dropping every figure without enough responses."""
    shown = [(key, figure) for key, figure in items if figure.enough and figure.value is not None]
    return sorted(shown, key=lambda pair: pair[1].value or 0.0, reverse=descending)


def t_quantile(p: float, df: float) -> float:
    """Return Student's t quantile by the Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5).

    scipy is not a dependency. With four terms it is within 0.004 of the table from 3 degrees of freedom and
    within 0.001 from 5; the figures here have at least `min_responses` (10 by default) behind them.
    """
    z = NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def _difference_error(current: Figure, previous: Figure, confidence: float) -> tuple[float, float]:
    """The standard error of current - previous and the critical value it is judged against."""
    two_sided = 1 - (1 - confidence) / 2
    if current.kind == "share":
        pooled = (current.value * current.n + previous.value * previous.n) / (100 * (current.n + previous.n))
        se = 100 * math.sqrt(pooled * (1 - pooled) * (1 / current.n + 1 / previous.n))
        return se, _z(confidence)
    var_c, var_p = (current.std_error or 0.0) ** 2, (previous.std_error or 0.0) ** 2
    se = math.sqrt(var_c + var_p)
    if current.kind == "nps" or se == 0:
        return se, _z(confidence)
    df = (var_c + var_p) ** 2 / (var_c**2 / (current.n - 1) + var_p**2 / (previous.n - 1))
    return se, t_quantile(two_sided, df)


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def _total(scores: Mapping[int, int], scale: range, name: str) -> int:
    stray = sorted(s for s, count in scores.items() if count and s not in scale)
    if stray:
        raise ValueError(f"{name} scores must lie in {scale.start}..{scale.stop - 1}, got {stray}")
    if any(count < 0 for count in scores.values()):
        raise ValueError(f"{name} counts must not be negative")
    return sum(scores.values())
