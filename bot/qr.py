"""Printable QR sheets: a branch's (or counter's) Telegram deep link and web-chat URL on one PNG and one SVG page."""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import segno
from PIL import Image, ImageDraw, ImageFont

from bot.buttons import PAYLOAD

# A6 portrait (105 x 148 mm) at 300 dpi; the SVG's viewBox uses the same units, so one layout serves both.
PAGE_WIDTH, PAGE_HEIGHT = 1240, 1748
PAGE_MM = (105, 148)
DPI = 300
MARGIN = 70
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN
MAX_CODE_SIZE = 720
QUIET_ZONE = 4  # modules of white around each code, as the QR standard asks
TITLE_SIZE, SUBTITLE_SIZE, CAPTION_SIZE, URL_SIZE, CTA_SIZE = 60, 44, 40, 24, 38
LINE_HEIGHT = 1.3
GAP = 28

# Fonts that can draw Chinese, tried in this order (Debian/Ubuntu package paths). Every face of a Noto CJK .ttc
# covers simplified Chinese, so its first face will do. Without any of them the PNG is drawn with Pillow's built-in
# font, which has no Chinese glyphs: the PNG then shows the English texts only and the Chinese is in the SVG alone.
CJK_FONTS = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
)
SVG_FONT_FAMILY = "'Noto Sans CJK SC', 'Source Han Sans SC', 'PingFang SC', 'Microsoft YaHei', sans-serif"


@dataclass(frozen=True, slots=True)
class Label:
    """A text in English and, where there is one, Chinese."""

    en: str
    zh: str | None = None

    def text(self, *, chinese: bool) -> str:
        return f"{self.en} · {self.zh}" if chinese and self.zh else self.en


@dataclass(frozen=True, slots=True)
class Code:
    caption: Label
    url: str


TELEGRAM_CAPTION = Label("Telegram")
WEBCHAT_CAPTION = Label("Web chat", "网页版")
CALL_TO_ACTION = Label("Tell us about your visit", "请评价本次服务")


@dataclass(frozen=True, slots=True)
class Sheet:
    """What one printed page shows: the place's name, one or two codes, and the call to action."""

    title: Label
    codes: tuple[Code, ...]
    subtitle: Label | None = None
    call_to_action: Label = CALL_TO_ACTION


def deep_link_payload(branch: str, counter: str | None = None) -> str:
    """Return the /start payload for a branch or counter: "BRANCH" or "BRANCH-COUNTER"."""
    payload = f"{branch}-{counter}" if counter else branch
    if not PAYLOAD.match(payload):
        raise ValueError(f"deep-link payload {payload!r} is not 1-64 characters of A-Z, a-z, 0-9, _ and -")
    return payload


def telegram_link(username: str, payload: str) -> str:
    return f"https://t.me/{username.lstrip('@')}?start={payload}"


def webchat_url(public_url: str, branch: str, counter: str | None = None) -> str:
    path = f"/c/{branch}/{counter}" if counter else f"/c/{branch}"
    return public_url.rstrip("/") + path


def render_png(sheet: Sheet, *, fonts: Sequence[Path] = CJK_FONTS) -> bytes:
    """Draw the sheet as a 300 dpi PNG, with the first of `fonts` that opens (else Pillow's, English only)."""
    face = _FontFace.first_of(fonts)
    image = Image.new("RGB", (PAGE_WIDTH, PAGE_HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    for item in _layout(sheet, chinese=face.has_chinese):
        if isinstance(item, _Symbol):
            image.paste(_symbol_image(item), (item.left, item.top))
            continue
        font = face.at(item.size)
        width = draw.textlength(item.text, font=font)
        if width > CONTENT_WIDTH:  # the layout only estimates widths; shrink what this font draws wider
            font = face.at(max(8, int(item.size * CONTENT_WIDTH / width)))
        draw.text((PAGE_WIDTH // 2, item.top), item.text, fill="black", font=font, anchor="ma")
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(DPI, DPI))
    return out.getvalue()


def render_svg(sheet: Sheet) -> str:
    """Write the sheet as one SVG document: the codes as filled paths, every text as <text>."""
    width_mm, height_mm = PAGE_MM
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width_mm}mm" height="{height_mm}mm"'
        f' viewBox="0 0 {PAGE_WIDTH} {PAGE_HEIGHT}">',
        f"<title>{escape(sheet.title.text(chinese=True))}</title>",
        f'<rect width="{PAGE_WIDTH}" height="{PAGE_HEIGHT}" fill="#fff"/>',
        f'<g font-family="{SVG_FONT_FAMILY}" text-anchor="middle" fill="#000">',
    ]
    symbols = []
    for item in _layout(sheet, chinese=True):
        if isinstance(item, _Symbol):
            symbols.append(_symbol_path(item))
        else:
            baseline = item.top + round(item.size * 0.9)
            parts.append(
                f'<text x="{PAGE_WIDTH // 2}" y="{baseline}" font-size="{item.size}">{escape(item.text)}</text>'
            )
    parts += ["</g>", *symbols, "</svg>", ""]
    return "\n".join(parts)


# The layout, shared by both renderers, in page units.


@dataclass(frozen=True, slots=True)
class _Text:
    text: str
    top: int
    size: int


@dataclass(frozen=True, slots=True)
class _Symbol:
    qr: segno.QRCode
    left: int
    top: int
    scale: int  # page units per module


def _layout(sheet: Sheet, *, chinese: bool) -> list[_Text | _Symbol]:
    """Place the header from the top, the call to action at the foot, and the codes in equal slots between."""
    items: list[_Text | _Symbol] = []
    top = MARGIN
    for text, size in _header(sheet, chinese=chinese):
        items.append(_Text(text, top, size))
        top += round(size * LINE_HEIGHT)
    cta = sheet.call_to_action.text(chinese=chinese)
    cta_size = _fitting_size(cta, CTA_SIZE)
    cta_top = PAGE_HEIGHT - MARGIN - round(cta_size * LINE_HEIGHT)
    items.append(_Text(cta, cta_top, cta_size))
    slot = (cta_top - top) // max(1, len(sheet.codes))
    for code in sheet.codes:
        items.extend(_code_block(code, top=top, height=slot, chinese=chinese))
        top += slot
    return items


def _header(sheet: Sheet, *, chinese: bool) -> Iterator[tuple[str, int]]:
    yield sheet.title.en, _fitting_size(sheet.title.en, TITLE_SIZE)
    if chinese and sheet.title.zh:
        yield sheet.title.zh, _fitting_size(sheet.title.zh, TITLE_SIZE)
    if sheet.subtitle is not None:
        text = sheet.subtitle.text(chinese=chinese)
        yield text, _fitting_size(text, SUBTITLE_SIZE)


def _code_block(code: Code, *, top: int, height: int, chinese: bool) -> Iterator[_Text | _Symbol]:
    """Caption, code and URL, centred in a slot `height` high; the code as large as fits, in whole units per module."""
    caption = code.caption.text(chinese=chinese)
    caption_size, url_size = _fitting_size(caption, CAPTION_SIZE), _fitting_size(code.url, URL_SIZE)
    caption_height, url_height = round(caption_size * LINE_HEIGHT), round(url_size * LINE_HEIGHT)
    qr = segno.make(code.url, error="m", micro=False)
    modules = qr.symbol_size(border=QUIET_ZONE)[0]
    room = min(height - GAP - caption_height - url_height, CONTENT_WIDTH, MAX_CODE_SIZE)
    scale = max(1, room // modules)
    size = modules * scale
    block_top = top + (height - caption_height - size - url_height) // 2
    yield _Text(caption, block_top, caption_size)
    yield _Symbol(qr, (PAGE_WIDTH - size) // 2, block_top + caption_height, scale)
    yield _Text(code.url, block_top + caption_height + size, url_size)


def _fitting_size(text: str, size: int) -> int:
    """Shrink `size` until an estimate of the text's width fits the page (Chinese 1 em a character, others 0.6)."""
    ems = sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.6 for ch in text)
    return max(8, min(size, int(CONTENT_WIDTH / ems))) if ems else size


# Drawing the codes.


def _symbol_image(symbol: _Symbol) -> Image.Image:
    out = io.BytesIO()
    symbol.qr.save(out, kind="png", scale=symbol.scale, border=QUIET_ZONE)
    out.seek(0)
    with Image.open(out) as image:
        return image.convert("RGB")


def _symbol_path(symbol: _Symbol) -> str:
    """Return the code's dark modules as one path: a 1-unit-high rectangle per horizontal run, scaled into place."""
    runs = []
    for y, row in enumerate(symbol.qr.matrix_iter(scale=1, border=0)):
        x = 0
        while x < len(row):
            if not row[x]:
                x += 1
                continue
            start = x
            while x < len(row) and row[x]:
                x += 1
            runs.append(f"M{start},{y}h{x - start}v1h-{x - start}z")
    offset = QUIET_ZONE * symbol.scale
    return (
        f'<path transform="translate({symbol.left + offset},{symbol.top + offset}) scale({symbol.scale})"'
        f' fill="#000" shape-rendering="crispEdges" d="{"".join(runs)}"/>'
    )


@dataclass(frozen=True, slots=True)
class _FontFace:
    path: Path | None  # None: Pillow's built-in font, which has no Chinese

    @property
    def has_chinese(self) -> bool:
        return self.path is not None

    @classmethod
    def first_of(cls, paths: Sequence[Path]) -> _FontFace:
        for path in paths:
            try:
                ImageFont.truetype(path, 12)
            except OSError:
                continue
            return cls(path)
        return cls(None)

    def at(self, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return ImageFont.truetype(self.path, size) if self.path else ImageFont.load_default(size=size)
