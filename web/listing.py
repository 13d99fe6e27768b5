"""Query strings of the console's filtered lists (feedback, audit log): days, short texts, pages and links.

A malformed value is the client's mistake and answers 400; the page never guesses what was meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from urllib.parse import urlencode

from aiohttp import web

TEXT_LIMIT = 64  # longer than any code, name or action; anything past it is not a real filter
MAX_PAGE = 2000  # deep offsets cost a scan each: narrow the filters instead


def parse_day(value: str | None) -> date | None:
    """A local day written YYYY-MM-DD, or None when not given."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise web.HTTPBadRequest() from None


def parse_days(first: str | None, last: str | None) -> tuple[date | None, date | None]:
    """A range of local days, both ends included and either open; refuses one that ends before it starts."""
    first_day, last_day = parse_day(first), parse_day(last)
    if first_day and last_day and last_day < first_day:
        raise web.HTTPBadRequest()
    return first_day, last_day


def parse_text(value: str | None) -> str | None:
    """A short text filter, trimmed; None when empty."""
    if value is not None and len(value) > TEXT_LIMIT:
        raise web.HTTPBadRequest()
    return (value or "").strip() or None


def parse_choice(value: str | None, allowed: tuple[str, ...]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise web.HTTPBadRequest()
    return value


def parse_page(value: str | None) -> int:
    """A 1-based page number."""
    if not value:
        return 1
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise web.HTTPBadRequest()
    return int(value)


def link(path: str, query: Mapping[str, str]) -> str:
    """The path with the query string, or the bare path for an empty one."""
    return f"{path}?{urlencode(query)}" if query else path
