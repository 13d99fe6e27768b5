"""When the weekly digest goes out: a local weekday and time of the configured zone, as UTC instants.

    next_run(now, "monday", time(8), "Europe/London")      # the instant the next digest is due
    due_week(now, "monday", time(8), "Europe/London")      # the week whose digest is due now, if any

The clock on the branch wall decides, so daylight-saving changes move the UTC instant. A run time that the clocks
skip (02:30 on a spring-forward day) fires when the gap ends, the first valid instant after it, as cron does; a run
time that happens twice (01:30 on a fall-back day) fires once, at its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from reporting.periods import Period, week_label, week_period, zone

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# A digest due more than this long ago is not sent late any more: the next one is about to go out.
GRACE = timedelta(days=6)


def next_run(after: datetime, weekday: str, at: time, timezone: str) -> datetime:
    """Return the first run (local `weekday` at `at`) strictly after `after`, as an aware UTC instant."""
    tz = zone(timezone)
    start = after.astimezone(tz).date() - timedelta(days=1)  # a day early: a fall-back at midnight repeats a date
    runs = (run_at(day, at, tz) for day in _weekdays_from(start, weekday))
    return next(run for run in runs if run > after)


def last_run(now: datetime, weekday: str, at: time, timezone: str) -> datetime:
    """Return the latest run at or before `now`, as an aware UTC instant."""
    tz = zone(timezone)
    start = now.astimezone(tz).date() - timedelta(days=9)
    runs = [run_at(day, at, tz) for day in _weekdays_from(start, weekday, count=3)]
    return max(run for run in runs if run <= now)


def due_week(now: datetime, weekday: str, at: time, timezone: str, *, grace: timedelta = GRACE) -> Period | None:
    """Return the ISO week whose digest is due at `now`: the local week before the latest run.

    None when that run is more than `grace` ago, so a process started after a long outage sends last week's
    digest late at most once and never back-fills older weeks.
    """
    run = last_run(now, weekday, at, timezone)
    if now - run > grace:
        return None
    return week_of_run(run, timezone)


def week_of_run(run: datetime, timezone: str) -> Period:
    """Return the week a run covers: the ISO week that ended before the run's local day."""
    tz = zone(timezone)
    return week_period(week_label(run.astimezone(tz).date() - timedelta(days=7)), tz)


def run_at(day: date, at: time, tz: ZoneInfo) -> datetime:
    """Return the UTC instant the local clock shows `at` on `day`: the first of two, or the end of a skipped gap."""
    wall = datetime.combine(day, at, tzinfo=tz)  # fold=0: the first occurrence of a repeated time
    instant = wall.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return instant
    return _gap_end(wall, tz)


def _gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """Return the first instant after the spring-forward gap that swallowed the local time `wall`.

    Read with the offset after the change (fold=1) the time falls before the change, read with the offset before
    it (fold=0) after it; the change lies between, found to the second by bisection.
    """
    early, late = wall.replace(fold=1).astimezone(UTC), wall.replace(fold=0).astimezone(UTC)
    early, late = min(early, late), max(early, late)
    offset_after = late.astimezone(tz).utcoffset()
    while late - early > timedelta(seconds=1):
        middle = early + (late - early) / 2
        if middle.astimezone(tz).utcoffset() == offset_after:
            late = middle
        else:
            early = middle
    return late.replace(microsecond=0)  # changes fall on whole seconds


def _weekdays_from(start: date, weekday: str, count: int = 3) -> list[date]:
    """Return `count` consecutive dates that fall on `weekday`, the first on or after `start`.

    Raises:
        ValueError: `weekday` is not an English day name.
    """
    try:
        target = WEEKDAYS.index(weekday.lower())
    except ValueError:
        raise ValueError(f"unknown weekday {weekday!r}; expected one of {', '.join(WEEKDAYS)}") from None
    first = start + timedelta(days=(target - start.weekday()) % 7)
    return [first + timedelta(weeks=n) for n in range(count)]
