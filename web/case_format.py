"""How cases read on console pages: local times, deadlines relative to now, and customer text made safe to show."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from nlp.masking import mask_text

SNIPPET_LIMIT = 140  # characters of a comment in a queue row


@dataclass(frozen=True, slots=True)
class Due:
    """A deadline as a row shows it: "in 3 h" or "overdue by 2 d", and the local date and time."""

    relative: str
    local: str
    is_overdue: bool


def local_time(moment: datetime, timezone: str) -> str:
    """A UTC moment as the operator's local wall-clock time, to the minute."""
    return moment.astimezone(_zone(timezone)).strftime("%Y-%m-%d %H:%M")


def due_of(due: datetime | None, now: datetime, *, is_open: bool, timezone: str, t: Mapping[str, str]) -> Due | None:
    """The deadline of a case; only an open case can be overdue or due in some time (a closed one was answered,
    late or not: it shows when it was due)."""
    if due is None:
        return None
    if not is_open:
        return Due(t["case_was_due"], local_time(due, timezone), is_overdue=False)
    seconds = (due - now).total_seconds()
    span = _span(abs(seconds), t)
    relative = t["case_overdue_by"].format(span=span) if seconds < 0 else t["case_due_in"].format(span=span)
    return Due(relative, local_time(due, timezone), is_overdue=seconds < 0)


def masked(text: str | None) -> str:
    """Customer text with personal data masked; stored comments are masked already, this holds the line anyway.

    Escaping is the templates' job (autoescape): nothing returned here is ever marked safe.
    """
    return mask_text(text) if text else ""


def snippet(comment: str | None) -> str:
    """The start of a masked comment for a queue row (masked whole first, so a number is never cut in two)."""
    text = " ".join(masked(comment).split())
    return text if len(text) <= SNIPPET_LIMIT else text[: SNIPPET_LIMIT - 1].rstrip() + "…"


def name_in(names: Mapping[str, Mapping[str, str]], key: str, language: str) -> str:
    """An operator-named thing (a flag, a category) in ``language``; its id when the operator's files lack it."""
    variants = names.get(key)
    return variants.get(language, variants.get("en", key)) if variants else key


def _span(seconds: float, t: Mapping[str, str]) -> str:
    minutes = int(seconds // 60)  # whole minutes under an hour; nearest hour or day above (2 h 59 min reads 3 h)
    if minutes < 60:
        return t["case_minutes"].format(n=minutes)
    if minutes < 47 * 60 + 30:
        return t["case_hours"].format(n=round(minutes / 60))
    return t["case_days"].format(n=round(minutes / (24 * 60)))


@functools.cache
def _zone(timezone: str) -> ZoneInfo:
    return ZoneInfo(timezone)
