"""The weekly digest rendered: an HTML e-mail with inline charts and a text alternative, a PDF, a Telegram caption.

Customer comments are data, never markup: Jinja2 autoescapes the HTML, the Telegram text goes through
html.escape, and the PDF only ever writes plain text.
"""

from __future__ import annotations

import html
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from reporting.charts import categories_chart, find_cjk_font, trend_chart
from reporting.delivery import Attachment, InlineImage, Notice
from reporting.digest import DigestData
from reporting.digest_labels import ARROWS, Row, headline_rows, labels, mover_line, subject, week_line
from store.models import DeliveryChannel

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
TELEGRAM_LIMIT = 1024  # a photo caption's limit; a message alone could take 4,096
FOLLOW_UP_FIELDS = ("cases_new", "cases_overdue", "cases_closed", "tickets_new", "tickets_open", "tickets_closed")
CHART_IDS = ("trend", "categories")
AUTO: Any = object()  # find_cjk_font() decides
# Characters the PDF's built-in font lacks, spelt in ones it has (only used without a CJK font).
PLAIN = str.maketrans({"–": "-", "—": "-", "…": "...", "‘": "'", "’": "'", "“": '"', "”": '"', "▲": "+", "▼": "-"})

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
# Plain text must not be HTML-escaped; a second environment keeps that choice out of the templates.
_text_environment = _environment.overlay(autoescape=False)


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    """One scope's digest in one language, ready for every channel."""

    language: str
    subject: str
    html: str  # refers to the charts as cid:trend and cid:categories
    text: str
    telegram_html: str
    pdf: bytes
    images: tuple[InlineImage, ...]

    @property
    def pdf_filename(self) -> str:
        return "digest.pdf"

    def notice(self, channel: DeliveryChannel | str) -> Notice:
        """The notice for a channel: e-mail gets HTML, charts and the PDF; Telegram one chart captioned, and the PDF."""
        pdf = Attachment(self.pdf_filename, self.pdf, "application/pdf")
        if channel == DeliveryChannel.TELEGRAM:
            return Notice(self.subject, self.text, telegram_html=self.telegram_html, images=self.images[:1],
                          attachments=(pdf,))  # fmt: skip
        return Notice(self.subject, self.text, html=self.html, images=self.images, attachments=(pdf,))


def render_digest(digest: DigestData, language: str, *, font: Path | None = AUTO) -> RenderedDigest:
    """Render every form of the digest (CPU-bound: charts and PDF take a fraction of a second; run off the loop)."""
    font = find_cjk_font() if font is AUTO else font
    charts = render_charts(digest, language, font=font)
    images = tuple(InlineImage(cid, data) for cid, data in charts.items() if data is not None)
    return RenderedDigest(
        language=language,
        subject=subject(digest, language),
        html=render_html(digest, language, {cid: f"cid:{cid}" for cid, data in charts.items() if data}),
        text=render_text(digest, language),
        telegram_html=render_telegram(digest, language),
        pdf=render_pdf(digest, language, charts, font=font),
        images=images,
    )


def render_charts(digest: DigestData, language: str, *, font: Path | None) -> dict[str, bytes | None]:
    """The trend and categories charts as PNG bytes; None for a chart with nothing to draw."""
    names = {c: digest.category_name(c, language) for r in digest.branches for c in r.counts}
    return {
        "trend": trend_chart(digest.trend, language, font=font),
        "categories": categories_chart(digest.branches, names, language, font=font),
    }


def render_html(digest: DigestData, language: str, image_sources: Mapping[str, str]) -> str:
    """The HTML e-mail; `image_sources` maps chart ids to cid: references (e-mail) or file names (on disk)."""
    words = labels(language)
    charts = [{"title": words[f"{cid}_chart"], "src": image_sources.get(cid)} for cid in CHART_IDS]
    return _environment.get_template("digest.html").render(_context(digest, language) | {"charts": charts})


def render_text(digest: DigestData, language: str) -> str:
    """The plain-text alternative of the e-mail (also the Notice's text)."""
    return _text_environment.get_template("digest.txt").render(_context(digest, language))


def render_telegram(digest: DigestData, language: str) -> str:
    """A short summary in Telegram's HTML that fits a photo caption (1,024 characters); everything escaped."""
    words = labels(language)
    e = html.escape
    sep = words["sep"]
    blocks = [f"<b>{e(words['title'])}{sep}{e(digest.scope_name(language))}</b>\n{e(week_line(digest, language))}"]
    rows = headline_rows(digest, language)
    if digest.is_empty:
        blocks.append(e(words["no_data"]))
        rows = rows[:1]
    blocks.append("\n".join(_telegram_row(row, sep) for row in rows))
    counts = digest.follow_up
    short = ("new", "overdue", "closed", "new", "open", "closed")
    counted = [f"{words[w]} {getattr(counts, f)}" for w, f in zip(short, FOLLOW_UP_FIELDS, strict=True)]
    cases, tickets = ", ".join(counted[:3]), ", ".join(counted[3:])
    blocks.append(f"{e(words['cases'])}{sep}{e(cases)}\n{e(words['tickets'])}{sep}{e(tickets)}")
    moved = [f"• {e(mover_line(m, digest, language))}" for m in digest.movers]
    if moved:
        blocks.append(f"<b>{e(words['movers'])}</b>\n" + "\n".join(moved))
    quote = next((q for m in digest.movers for q in m.quotes), None)
    if quote:
        blocks.append(f"<i>“{e(quote[:160])}”</i>")
    blocks.append(e(words["telegram_more"]))
    return _fit(blocks, TELEGRAM_LIMIT)


def _telegram_row(row: Row, sep: str) -> str:
    e = html.escape
    line = f"{e(row.label)}{sep}<b>{e(row.value)}</b>"
    if row.is_called_out:
        line += f" {ARROWS[row.direction]} {e(row.change)}"
    return line


def _fit(blocks: list[str], limit: int) -> str:
    """Join the blocks, dropping whole blocks from the end (keeping the first two) until the text fits."""
    while len(blocks) > 2 and len("\n\n".join(blocks)) > limit:
        blocks = blocks[:-1]
    text = "\n\n".join(blocks)
    return text if len(text) <= limit else html.escape(html.unescape(_strip_tags(text))[: limit - 10]) + "…"


def _strip_tags(text: str) -> str:
    for tag in ("<b>", "</b>", "<i>", "</i>"):
        text = text.replace(tag, "")
    return text


def _context(digest: DigestData, language: str) -> dict[str, Any]:
    words = labels(language)
    return {
        "lang": "zh-CN" if words is labels("zh") else "en",
        "digest": digest,
        "words": words,
        "arrows": ARROWS,
        "subject": subject(digest, language),
        "scope": digest.scope_name(language),
        "week": week_line(digest, language),
        "rows": headline_rows(digest, language),
        "movers": [{"line": mover_line(m, digest, language), "quotes": m.quotes} for m in digest.movers],
        "follow_up": [(words[f], getattr(digest.follow_up, f)) for f in FOLLOW_UP_FIELDS],
        "footnote": words["footnote"].format(n=digest.min_responses),
    }


def render_pdf(
    digest: DigestData, language: str, charts: Mapping[str, bytes | None], *, font: Path | None = AUTO
) -> bytes:
    """The digest as a PDF with the same content and the charts.

    Without a CJK font the built-in Helvetica is used and characters it lacks become "?" (logged, never fatal).
    """
    font = find_cjk_font() if font is AUTO else font
    document = _Document(font)
    words = labels(language)
    context = _context(digest, language)
    document.heading(f"{words['title']}{words['sep']}{context['scope']}", size=16)
    document.paragraph(context["week"], colour=(90, 90, 90))
    if digest.is_empty:
        document.paragraph(words["no_data"], bold=True)
    document.heading(words["headlines"])
    document.headline_table(words, context["rows"])
    document.heading(words["movers"])
    for move in context["movers"]:
        document.paragraph(move["line"], bold=True)
        for quote in move["quotes"]:
            document.paragraph(f'"{quote}"', indent=8, colour=(70, 70, 70))
    if not context["movers"]:
        document.paragraph(words["no_movers"])
    document.heading(words["follow_up"])
    for label, count in context["follow_up"]:
        document.paragraph(f"{label}{words['sep']}{count}")
    for cid in CHART_IDS:
        document.heading(words[f"{cid}_chart"])
        data = charts.get(cid)
        if data:
            document.image(data)
        else:
            document.paragraph(words["no_chart"])
    document.paragraph(context["footnote"], size=8, colour=(110, 110, 110))
    if document.replaced:
        log.warning(
            "pdf: no CJK font found (install fonts-wqy-microhei); %d characters shown as '?'", document.replaced
        )
    return bytes(document.pdf.output())


class _Document:
    """An A4 page flow over fpdf2: headings, wrapped paragraphs, the headline table and chart images."""

    def __init__(self, font: Path | None) -> None:
        self.pdf = FPDF(format="A4")
        self.pdf.set_auto_page_break(auto=True, margin=15)
        self.pdf.set_creator("Closeloop")
        self.replaced = 0
        if font is not None:
            self.pdf.add_font("cjk", fname=str(font))
            self.pdf.add_font("cjk", style="B", fname=str(font))  # no bold face in the file: same glyphs
            self.family = "cjk"
        else:
            self.family = "helvetica"
        self.pdf.add_page()

    def text(self, value: str) -> str:
        """Text the font can show: unchanged with a CJK font, else Latin-1 with "?" for what it lacks."""
        if self.family == "cjk":
            return value
        plain = value.translate(PLAIN)
        safe = plain.encode("latin-1", "replace").decode("latin-1")
        self.replaced += sum(1 for a, b in zip(plain, safe, strict=True) if a != b)
        return safe

    def heading(self, value: str, *, size: int = 12) -> None:
        self.pdf.ln(3)
        self.pdf.set_font(self.family, "B", size)
        self.pdf.multi_cell(0, size * 0.55, self.text(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.ln(1)

    def paragraph(
        self,
        value: str,
        *,
        size: int = 10,
        bold: bool = False,
        indent: float = 0,
        colour: tuple[int, int, int] = (0, 0, 0),
    ) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)
        self.pdf.set_text_color(*colour)
        self.pdf.set_x(self.pdf.l_margin + indent)
        self.pdf.multi_cell(0, size * 0.5, self.text(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.set_text_color(0, 0, 0)

    def headline_table(self, words: Mapping[str, str], rows: list[Row]) -> None:
        self.pdf.set_font(self.family, "", 8)
        with self.pdf.table(col_widths=(30, 14, 20, 16, 30), text_align="LEFT", line_height=4.5) as table:
            head = table.row()
            for key in ("metric", "this_week", "interval", "last_week", "change"):
                head.cell(self.text(words[key]))
            for item in rows:
                line = table.row()
                for value in (item.label, item.value, item.interval, item.previous, item.change):
                    line.cell(self.text(value))

    def image(self, png: bytes) -> None:
        width = self.pdf.epw
        if self.pdf.will_page_break(width * 4.5 / 8):
            self.pdf.add_page()
        self.pdf.image(io.BytesIO(png), w=width)
