"""A ticket's weekly complaints as bars for an inline SVG: geometry here, drawing in templates/ticket.html.

Our own few lines rather than a matplotlib PNG: the ticket page stays fast and the chart stays crisp at any size.
The template draws it with SVG presentation attributes and console.css classes, as the CSP allows no style
attribute and no script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

CHART_WIDTH, CHART_HEIGHT, CHART_TOP, CHART_BASE = 320, 140, 14, 114  # px in the SVG's own coordinates


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str  # the week's first day, shown under the bar
    title: str  # what a pointer or a screen reader gets: the week and its count


@dataclass(frozen=True, slots=True)
class Chart:
    """Weekly complaints as SVG bars; the template draws it inline (no script, no style attribute: CSP)."""

    bars: tuple[Bar, ...]
    top: int
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    baseline: int = CHART_BASE
    top_y: int = CHART_TOP


def weekly_chart(weeks: Sequence[Mapping[str, Any]], t: Mapping[str, str], zone: ZoneInfo) -> Chart | None:
    """Bars of complaints per week, scaled to the busiest week; None without weekly figures."""
    counts = [(str(week.get("start", "")), int(week.get("complaints") or 0)) for week in weeks]
    if not counts:
        return None
    top = max(1, *(n for _, n in counts))
    slot = CHART_WIDTH / len(counts)
    bars = []
    for i, (start_text, n) in enumerate(counts):
        height = (CHART_BASE - CHART_TOP) * n / top
        week = _week_label(start_text, zone)
        bars.append(Bar(x=round(i * slot + slot * 0.15, 1), y=round(CHART_BASE - height, 1),
                        width=round(slot * 0.7, 1), height=round(height, 1), count=n, label=week,
                        title=t["ticket_chart_bar"].format(week=week, count=n)))  # fmt: skip
    return Chart(tuple(bars), top)


def _week_label(start_text: str, zone: ZoneInfo) -> str:
    try:
        return datetime.fromisoformat(start_text).astimezone(zone).strftime("%m-%d")
    except ValueError:
        return ""
