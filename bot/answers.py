"""Read what a customer typed or pressed: clean free text, parse numbers, yes/no and phone numbers."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_TEXT_CHARS = 2000
# Cc/Cf/Co/Cs: control, format (zero-width, bidi overrides), private use, surrogates. Newlines and tabs stay.
DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})
KEPT_CONTROLS = frozenset("\n\t")
# Emoji sequences use ZERO WIDTH JOINER and VARIATION SELECTORs, which are format characters worth keeping.
KEPT_FORMAT = frozenset("\u200d\ufe0f")

YES = frozenset({"yes", "y", "yeah", "yep", "ok", "okay", "sure", "是", "是的", "好", "好的", "可以", "同意", "嗯"})
NO = frozenset({"no", "n", "nope", "否", "不", "不是", "不要", "不用", "不同意", "不用了"})
PHONE = re.compile(r"^\+?[\d\s\-().]{7,24}$")


@dataclass(frozen=True, slots=True)
class CleanText:
    text: str
    truncated: bool


def clean_text(raw: str, *, limit: int = MAX_TEXT_CHARS) -> CleanText:
    """Normalise to NFC, drop control characters, collapse runs of blank lines, and cut at `limit` characters."""
    normalised = unicodedata.normalize("NFC", raw)
    kept = "".join(
        ch
        for ch in normalised
        if ch in KEPT_CONTROLS or ch in KEPT_FORMAT or unicodedata.category(ch) not in DROPPED_CATEGORIES
    )
    kept = re.sub(r"\n{3,}", "\n\n", kept).strip()
    if len(kept) <= limit:
        return CleanText(kept, truncated=False)
    return CleanText(kept[:limit].rstrip(), truncated=True)


def parse_yes_no(value: str) -> bool | None:
    word = value.strip().strip(".!。！").lower()
    if word in YES:
        return True
    if word in NO:
        return False
    return None


def parse_number(value: str) -> int | None:
    stripped = value.strip().strip(".。")
    # Full-width digits (１２３) come from Chinese keyboards; int() already understands them.
    return int(stripped) if stripped.isdigit() and len(stripped) <= 3 else None


def parse_phone(value: str) -> str | None:
    """Return the number in a compact form (+ and digits), or None when it isn't one."""
    if not PHONE.match(value.strip()):
        return None
    digits = re.sub(r"\D", "", value)
    if not 7 <= len(digits) <= 15:
        return None
    return ("+" if value.strip().startswith("+") else "") + digits
