"""Reporting periods: ISO weeks in a local time zone across daylight-saving changes, months, days, parsing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from itertools import pairwise

import pytest

from reporting.periods import (
    month_period,
    parse_week,
    period_containing,
    periods_between,
    range_period,
    week_bounds,
    week_period,
)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


@pytest.mark.parametrize(
    ("week", "tz", "start", "end", "hours"),
    [
        # Berlin springs forward on Sunday 29 March 2026 and falls back on Sunday 25 October.
        ("2026-W13", "Europe/Berlin", utc(2026, 3, 22, 23), utc(2026, 3, 29, 22), 167),
        ("2026-W43", "Europe/Berlin", utc(2026, 10, 18, 22), utc(2026, 10, 25, 23), 169),
        ("2026-W47", "Europe/Berlin", utc(2026, 11, 15, 23), utc(2026, 11, 22, 23), 168),
        # New York springs forward on 8 March 2026 and falls back on 1 November.
        ("2026-W10", "America/New_York", utc(2026, 3, 2, 5), utc(2026, 3, 9, 4), 167),
        ("2026-W44", "America/New_York", utc(2026, 10, 26, 4), utc(2026, 11, 2, 5), 169),
    ],
)
def test_week_bounds_are_local_mondays_in_utc_across_dst(week, tz, start, end, hours):
    assert week_bounds(week, tz) == (start, end)
    assert week_period(week, tz).hours == hours


def test_week_bounds_in_a_zone_without_dst_are_168_hours_at_a_fixed_offset():
    start, end = week_bounds("2026-W47", "Asia/Shanghai")

    assert start == utc(2026, 11, 15, 16)
    assert (end - start).total_seconds() == 168 * 3600


@pytest.mark.parametrize("text", ["2026-47", "2026W47", "26-W47", "2026-W7", "week 47", ""])
def test_malformed_weeks_name_the_expected_form(text):
    with pytest.raises(ValueError, match=r"expected YYYY-Www \(an ISO week, e\.g\. 2026-W47\)"):
        parse_week(text)


def test_a_week_the_year_lacks_is_refused_with_the_years_range():
    assert parse_week("2026-W53") == date(2026, 12, 28)  # 2026 has 53 ISO weeks
    with pytest.raises(ValueError, match="2025 has no ISO week 53 \\(it has weeks 01 to 52\\)"):
        parse_week("2025-W53")
    with pytest.raises(ValueError, match="has no ISO week 0"):
        parse_week("2026-W00")


def test_unknown_time_zone_is_refused():
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        week_bounds("2026-W47", "Mars/Olympus")


def test_previous_week_crosses_the_iso_year():
    assert week_period("2027-W01", "UTC").previous().label == "2026-W53"
    assert week_period("2026-W01", "UTC").first_day == date(2025, 12, 29)


def test_month_holding_a_dst_change_is_an_hour_short():
    march = month_period("2026-03", "Europe/Berlin")

    assert (march.start, march.end) == (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22))
    assert march.hours == 31 * 24 - 1
    assert month_period("2026-01", "UTC").previous().label == "2025-12"
    with pytest.raises(ValueError, match="expected YYYY-MM"):
        month_period("2026-13", "UTC")


def test_period_containing_uses_the_local_date():
    # 23:30 UTC on Sunday 15 November is already Monday in Shanghai: week 47 there, week 46 in UTC.
    instant = utc(2026, 11, 15, 23, 30)

    assert period_containing(instant, "week", "Asia/Shanghai").label == "2026-W47"
    assert period_containing(instant, "week", "UTC").label == "2026-W46"
    assert period_containing(instant, "day", "Asia/Shanghai").label == "2026-11-16"


def test_periods_between_cover_the_range_without_gaps():
    weeks = periods_between(date(2026, 12, 30), date(2027, 1, 12), "week", "Europe/Berlin")

    assert [w.label for w in weeks] == ["2026-W53", "2027-W01", "2027-W02"]
    assert all(a.end == b.start for a, b in pairwise(weeks))


def test_a_range_is_inclusive_and_its_previous_is_as_long():
    days = range_period(date(2026, 11, 1), date(2026, 11, 10), "UTC")

    assert days.label == "2026-11-01..2026-11-10"
    assert (days.previous().first_day, days.previous().last_day) == (date(2026, 10, 22), date(2026, 10, 31))
    with pytest.raises(ValueError, match="ends"):
        range_period(date(2026, 11, 2), date(2026, 11, 1), "UTC")
