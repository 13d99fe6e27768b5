"""The digest's charts as PNG bytes (matplotlib's Agg canvas, no pyplot, no display), and the CJK font they need.

Each chart function returns None when there is nothing to draw, so a quiet week never produces an empty chart.
Chinese labels need a CJK font; without one the charts fall back to English labels (logged), never to boxes.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as Canvas

from reporting.digest import BranchCategories, TrendPoint

log = logging.getLogger(__name__)

# Checked in order after fontconfig's own answer; Debian's fonts-wqy-microhei and fonts-noto-cjk install these.
CJK_FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
CHART_LABELS = {
    "en": {"csat": "CSAT (%)", "nps": "NPS", "trend": "Last {n} weeks", "categories": "Comments per category",
           "other": "Other", "comments": "comments"},
    "zh": {"csat": "满意度 CSAT（%）", "nps": "净推荐值 NPS", "trend": "最近 {n} 周", "categories": "各类别意见数",
           "other": "其他", "comments": "条意见"},
}  # fmt: skip
MOST_CATEGORIES = 6
MOST_BRANCHES = 15  # the busiest; more bars than this cannot be read
COLOURS = ("#2f6db5", "#e07b39", "#3a9a5b", "#c44e52", "#8172b2", "#937860", "#999999")
_LOCK = threading.Lock()  # rc_context changes matplotlib's global settings: one chart at a time


@lru_cache(maxsize=1)
def find_cjk_font() -> Path | None:
    """Return a font file with Chinese glyphs (fontconfig's choice, else a known path), or None."""
    for candidate in (*_fontconfig_choice(), *map(Path, CJK_FONT_PATHS)):
        if candidate.is_file():
            return candidate
    return None


def _fontconfig_choice() -> list[Path]:
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return []
    try:
        found = subprocess.run(  # noqa: S603 - a fixed program and arguments, no shell
            [fc_match, "-f", "%{file}", ":lang=zh-cn"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    # fontconfig answers with its best Latin font when it has no Chinese one: only trust known CJK families.
    return [Path(found)] if any(word in found.lower() for word in ("wqy", "cjk", "hei", "song", "ming")) else []


def chart_language(language: str, font: Path | None) -> str:
    """The language the charts can be labelled in: Chinese only with a CJK font."""
    if language == "zh" and font is None:
        log.warning("charts: no CJK font found (install fonts-wqy-microhei); labelling the charts in English")
        return "en"
    return language


def trend_chart(points: Sequence[TrendPoint], language: str, *, font: Path | None = None) -> bytes | None:
    """CSAT and NPS by week with their intervals, weeks without enough responses left as gaps; None if all are."""
    if not any(p.csat.enough or p.nps.enough for p in points):
        return None
    labels = CHART_LABELS[chart_language(language, font)]
    weeks = [p.week.split("-")[-1] for p in points]
    with _style(font) as figure:
        top, bottom = figure.subplots(2, 1, sharex=True)
        for axes, name, colour in ((top, "csat", COLOURS[0]), (bottom, "nps", COLOURS[1])):
            shown = [getattr(p, name) for p in points]
            values = [f.value if f.value is not None else float("nan") for f in shown]
            lows = [f.interval[0] if f.interval else float("nan") for f in shown]
            highs = [f.interval[1] if f.interval else float("nan") for f in shown]
            axes.fill_between(range(len(points)), lows, highs, color=colour, alpha=0.15, linewidth=0)
            axes.plot(range(len(points)), values, marker="o", color=colour)
            axes.set_ylabel(labels[name])
            axes.grid(axis="y", alpha=0.3)
        top.set_ylim(0, 104)
        bottom.set_ylim(-108, 108)
        bottom.set_xticks(range(len(points)), weeks)
        top.set_title(labels["trend"].format(n=len(points)))
        return _png(figure)


def categories_chart(
    rows: Sequence[BranchCategories], names: Mapping[str, str], language: str, *, font: Path | None = None
) -> bytes | None:
    """Stacked bars: per branch, its comments in each of the most mentioned categories; None without any."""
    if not any(sum(r.counts.values()) for r in rows):
        return None
    lang = chart_language(language, font)
    labels = CHART_LABELS[lang]
    rows = sorted(rows, key=lambda r: -sum(r.counts.values()))[:MOST_BRANCHES]
    rows = sorted(rows, key=lambda r: r.branch)
    totals: dict[str, int] = {}
    for row in rows:
        for category, count in row.counts.items():
            totals[category] = totals.get(category, 0) + count
    ranked = sorted(totals, key=lambda c: (-totals[c], c))
    shown, rest = ranked[:MOST_CATEGORIES], set(ranked[MOST_CATEGORIES:])
    series = [(_short(names.get(c, c) if lang == language else c), [r.counts.get(c, 0) for r in rows]) for c in shown]
    if rest:
        series.append((labels["other"], [sum(n for c, n in r.counts.items() if c in rest) for r in rows]))
    with _style(font) as figure:
        axes = figure.subplots()
        bottoms = [0] * len(rows)
        for (label, counts), colour in zip(series, COLOURS, strict=False):
            axes.bar(range(len(rows)), counts, bottom=bottoms, label=label, color=colour)
            bottoms = [b + n for b, n in zip(bottoms, counts, strict=True)]
        axes.set_xticks(range(len(rows)), [_short(r.branch, 12) for r in rows], rotation=30 if len(rows) > 6 else 0)
        axes.set_ylabel(labels["comments"])
        axes.set_title(labels["categories"])
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small")
        axes.grid(axis="y", alpha=0.3)
        return _png(figure)


@contextmanager
def _style(font: Path | None) -> Iterator[Canvas]:
    """A figure drawn under the right fonts; matplotlib's rc settings are global, hence the lock."""
    families = ["DejaVu Sans"]
    with _LOCK:
        if font is not None:
            families.insert(0, _register(font))
        with matplotlib.rc_context({"font.family": families, "axes.unicode_minus": False}), warnings.catch_warnings():
            # A staff-typed branch or category name may hold a glyph no font has: draw a box, do not fail.
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
            figure = Canvas(figsize=(8, 4.5), dpi=100, layout="constrained")
            FigureCanvasAgg(figure)
            yield figure


def _short(label: str, limit: int = 24) -> str:
    """A label short enough that the legend leaves room for the bars."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


@lru_cache(maxsize=8)
def _register(font: Path) -> str:
    """Add the font file to matplotlib's list once; return its family name."""
    font_manager.fontManager.addfont(str(font))
    return font_manager.FontProperties(fname=str(font)).get_name()


def _png(figure: Canvas) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
