"""Charts as inline SVG: columns, horizontal bars and lines, each mark a link to the feedback it counts.

Drawn on the server so the console needs no script (its CSP allows none inline and we ship none), and styled
only by classes from console.css and SVG presentation attributes: the CSP's `style-src 'self'` would drop any
style="" attribute. ElementTree writes the markup, so every label and link is escaped on output.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

WIDTH = 480
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 16, 36  # room for the value axis and the period labels
BAR_ROW = 30  # height of one horizontal bar's row
BAR_LABEL = 150  # room for a category's name left of its bar
FONT = "13"
PERIOD_LABELS = 6  # axis labels that fit under a chart; the tooltips name every mark


@dataclass(frozen=True, slots=True)
class Mark:
    """One bar or point: its axis label, its value (None: hidden, too few responses), what a reader sees and
    the link to the rows behind it."""

    label: str
    value: float | None
    caption: str
    href: str | None = None
    tick: str | None = None  # a shorter label for the axis ("W47" for 2026-W47); the label by default


def column_chart(marks: Sequence[Mark], *, title: str) -> Markup:
    """Vertical bars from zero, one per period (volume per week)."""
    svg = _svg(title, WIDTH, HEIGHT)
    top = max([m.value for m in marks if m.value is not None] + [1.0])
    _value_axis(svg, 0.0, top, ticks=(0.0, top))
    step = (WIDTH - LEFT - RIGHT) / max(len(marks), 1)
    for i, mark in enumerate(marks):
        x = LEFT + i * step
        if mark.value is not None:
            y = _y(mark.value, 0.0, top)
            rect = {"x": _n(x + step * 0.15), "y": _n(y), "width": _n(step * 0.7), "height": _n(HEIGHT - BOTTOM - y)}
            _shape(svg, mark, "rect", rect | {"class": "chart-bar"})
        _period_label(svg, marks, i, x + step / 2)
    return _markup(svg)


def bar_chart(marks: Sequence[Mark], *, title: str, top: float = 100.0) -> Markup:
    """Horizontal bars from zero, one per named group (category shares); the caption follows each bar."""
    height = TOP + BAR_ROW * max(len(marks), 1)
    svg = _svg(title, WIDTH, height)
    room = WIDTH - BAR_LABEL - RIGHT - 90  # and room for the caption after the longest bar
    for i, mark in enumerate(marks):
        y = TOP + i * BAR_ROW
        _text(svg, mark.label, x=BAR_LABEL - 6, y=y + BAR_ROW / 2 + 4, anchor="end")
        length = 0.0 if mark.value is None else max(mark.value, 0.0) / top * room
        rect = {"x": str(BAR_LABEL), "y": _n(y + 5), "width": _n(length), "height": str(BAR_ROW - 10)}
        _shape(svg, mark, "rect", rect | {"class": "chart-bar"})
        _text(svg, mark.caption, x=BAR_LABEL + length + 6, y=y + BAR_ROW / 2 + 4)
    return _markup(svg)


def line_chart(marks: Sequence[Mark], *, title: str, low: float, high: float) -> Markup:
    """A line over periods on a fixed scale (CSAT 0..100, NPS -100..100), broken where a value is hidden."""
    svg = _svg(title, WIDTH, HEIGHT)
    _value_axis(svg, low, high, ticks=(low, (low + high) / 2, high))
    step = (WIDTH - LEFT - RIGHT) / max(len(marks), 1)
    points: list[tuple[float, float] | None] = [
        None if m.value is None else (LEFT + (i + 0.5) * step, _y(m.value, low, high)) for i, m in enumerate(marks)
    ]
    for run in _runs(points):
        if len(run) > 1:
            line = " ".join(f"{_n(x)},{_n(y)}" for x, y in run)
            ET.SubElement(svg, "polyline", {"points": line, "class": "chart-line", "fill": "none"})
    for i, (mark, point) in enumerate(zip(marks, points, strict=True)):
        if point is not None:
            _shape(svg, mark, "circle", {"cx": _n(point[0]), "cy": _n(point[1]), "r": "5", "class": "chart-point"})
        _period_label(svg, marks, i, LEFT + (i + 0.5) * step)
    return _markup(svg)


def _svg(title: str, width: float, height: float) -> ET.Element:
    svg = ET.Element(
        "svg",
        {
            "viewBox": f"0 0 {_n(width)} {_n(height)}",
            "class": "chart",
            "role": "img",
            "aria-label": title,
            "font-size": FONT,
        },
    )
    ET.SubElement(svg, "title").text = title
    return svg


def _shape(svg: ET.Element, mark: Mark, tag: str, attributes: dict[str, str]) -> None:
    """A bar or point inside a link to its rows when it has one, with the caption as its tooltip."""
    parent = ET.SubElement(svg, "a", {"href": mark.href}) if mark.href else svg
    shape = ET.SubElement(parent, tag, attributes)
    ET.SubElement(shape, "title").text = f"{mark.label}: {mark.caption}"


def _value_axis(svg: ET.Element, low: float, high: float, *, ticks: Sequence[float]) -> None:
    for tick in ticks:
        y = _y(tick, low, high)
        ET.SubElement(
            svg, "line", {"x1": str(LEFT), "x2": str(WIDTH - RIGHT), "y1": _n(y), "y2": _n(y), "class": "chart-grid"}
        )
        _text(svg, f"{tick:.0f}", x=LEFT - 6, y=y + 4, anchor="end")


def _period_label(svg: ET.Element, marks: Sequence[Mark], i: int, x: float) -> None:
    """The axis label under mark i: all of them up to PERIOD_LABELS marks, beyond that every k-th."""
    if i % -(-len(marks) // PERIOD_LABELS) == 0:
        _text(svg, marks[i].tick or marks[i].label, x=x, y=HEIGHT - BOTTOM + 16, anchor="middle")


def _text(svg: ET.Element, text: str, *, x: float, y: float, anchor: str = "start") -> None:
    ET.SubElement(svg, "text", {"x": _n(x), "y": _n(y), "text-anchor": anchor, "class": "chart-text"}).text = text


def _y(value: float, low: float, high: float) -> float:
    span = (high - low) or 1.0
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (min(max(value, low), high) - low) / span)


def _runs(points: Sequence[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    """Consecutive shown points: a hidden week breaks the line rather than being bridged."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _markup(svg: ET.Element) -> Markup:
    # ElementTree has escaped &, <, > and quotes in every attribute and text (names from the operator's files,
    # links), so the markup is safe as it stands; Markup tells Jinja not to escape it a second time.
    return Markup(ET.tostring(svg, encoding="unicode", short_empty_elements=True))  # noqa: S704
