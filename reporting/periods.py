"""Reporting periods: ISO weeks, days, months and date ranges of the configured time zone, as UTC instants.

A period is local (a branch's Monday starts at its own midnight) but the database stores UTC, so every period
carries both: its local label and the half-open UTC interval [start, end). Bounds come from zoneinfo, so a week
that holds a daylight-saving change is 167 or 169 hours long, as the clock on the branch wall says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Grain = Literal["day", "week", "month", "range"]
GRAINS: tuple[Grain, ...] = ("day", "week", "month")

WEEK_FORM = "YYYY-Www (an ISO week, e.g. 2026-W47)"
MONTH_FORM = "YYYY-MM (e.g. 2026-11)"
_WEEK = re.compile(r"(\d{4})-W(\d{2})")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, slots=True)
class Period:
    """A local calendar period as the half-open UTC interval [start, end)."""

    grain: Grain
    label: str  # "2026-W47", "2026-11-24", "2026-11" or "2026-11-01..2026-11-30"
    start: datetime
    end: datetime
    timezone: str

    @property
    def first_day(self) -> date:
        """The first local day of the period."""
        return self.start.astimezone(ZoneInfo(self.timezone)).date()

    @property
    def last_day(self) -> date:
        """The last local day of the period (inclusive)."""
        return self.end.astimezone(ZoneInfo(self.timezone)).date() - timedelta(days=1)

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def previous(self) -> Period:
        """The period of the same grain just before this one (for a range: as many days, ending the day before)."""
        zone = ZoneInfo(self.timezone)
        if self.grain == "day":
            return day_period(self.first_day - timedelta(days=1), zone)
        if self.grain == "week":
            return week_period(week_label(self.first_day - timedelta(days=7)), zone)
        if self.grain == "month":
            return month_period(_month_label(self.first_day - timedelta(days=1)), zone)
        days = (self.last_day - self.first_day).days + 1
        return range_period(self.first_day - timedelta(days=days), self.first_day - timedelta(days=1), zone)


def zone(tz: ZoneInfo | str) -> ZoneInfo:
    """Return the time zone, accepting an IANA name.

    Raises:
        ValueError: the name is not an IANA time zone.
    """
    if isinstance(tz, ZoneInfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}: expected an IANA name such as Europe/Berlin") from None


def local_midnight(day: date, tz: ZoneInfo | str) -> datetime:
    """Return the UTC instant at which `day` begins in the time zone.

    fold=0 picks the first of two midnights when clocks fall back over midnight, and for a midnight skipped by a
    spring-forward gap it gives the instant the gap ends: both are the first moment of that local day.
    """
    return datetime.combine(day, time(0), tzinfo=zone(tz)).astimezone(UTC)


def parse_week(text: str) -> date:
    """Return the Monday of an ISO week written as 2026-W47.

    Raises:
        ValueError: the text is not of the form YYYY-Www, or that year has no such week.
    """
    match = _WEEK.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an ISO week: {text!r}; expected {WEEK_FORM}")
    year, week = int(match[1]), int(match[2])
    try:
        return date.fromisocalendar(year, week, 1)
    except ValueError:
        weeks = date(year, 12, 28).isocalendar().week  # 28 December is always in the year's last ISO week
        raise ValueError(f"{year} has no ISO week {week} (it has weeks 01 to {weeks}); expected {WEEK_FORM}") from None


def week_label(day: date) -> str:
    """Return the ISO week that holds `day`, as 2026-W47 (the ISO year may differ from the calendar year)."""
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def week_bounds(week: str, tz: ZoneInfo | str) -> tuple[datetime, datetime]:
    """Return the UTC instants of local Monday 00:00 of the ISO week and of the Monday after it."""
    monday = parse_week(week)
    return local_midnight(monday, tz), local_midnight(monday + timedelta(days=7), tz)


def week_period(week: str, tz: ZoneInfo | str) -> Period:
    start, end = week_bounds(week, tz)
    return Period("week", week_label(parse_week(week)), start, end, zone(tz).key)


def day_period(day: date, tz: ZoneInfo | str) -> Period:
    start, end = local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)
    return Period("day", day.isoformat(), start, end, _key(tz))


def month_period(month: str, tz: ZoneInfo | str) -> Period:
    """Return the local calendar month written as 2026-11.

    Raises:
        ValueError: the text is not of the form YYYY-MM with a month from 01 to 12.
    """
    match = _MONTH.fullmatch(month.strip()) if isinstance(month, str) else None
    if match is None or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"not a month: {month!r}; expected {MONTH_FORM}")
    first = date(int(match[1]), int(match[2]), 1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return Period("month", _month_label(first), local_midnight(first, tz), local_midnight(following, tz), _key(tz))


def range_period(first_day: date, last_day: date, tz: ZoneInfo | str) -> Period:
    """Return the local days from `first_day` to `last_day`, both included.

    Raises:
        ValueError: the range ends before it starts.
    """
    if last_day < first_day:
        raise ValueError(f"the range ends ({last_day}) before it starts ({first_day})")
    start, end = local_midnight(first_day, tz), local_midnight(last_day + timedelta(days=1), tz)
    return Period("range", f"{first_day.isoformat()}..{last_day.isoformat()}", start, end, _key(tz))


def period_containing(instant: datetime, grain: Grain, tz: ZoneInfo | str) -> Period:
    """Return the day, week or month of the time zone that holds the instant (e.g. now, for "this week")."""
    day = instant.astimezone(zone(tz)).date()
    if grain == "day":
        return day_period(day, tz)
    if grain == "week":
        return week_period(week_label(day), tz)
    if grain == "month":
        return month_period(_month_label(day), tz)
    raise ValueError(f"unknown grain {grain!r}; expected one of {', '.join(GRAINS)}")


def periods_between(first_day: date, last_day: date, grain: Grain, tz: ZoneInfo | str) -> list[Period]:
    """Return the consecutive days, weeks or months that cover the local dates from first_day to last_day."""
    if last_day < first_day:
        raise ValueError(f"the range ends ({last_day}) before it starts ({first_day})")
    periods = [period_containing(local_midnight(first_day, tz), grain, tz)]
    while periods[-1].last_day < last_day:
        following = periods[-1].last_day + timedelta(days=1)
        periods.append(period_containing(local_midnight(following, tz), grain, tz))
    return periods


def _month_label(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _key(tz: ZoneInfo | str) -> str:
    return zone(tz).key
