"""The rating trend (reporting.metrics.score_trend): the full reports' CSAT, NPS and CES from the ratings alone."""

from __future__ import annotations

import pytest
from digest_data import TZ, WEEK, seed_digest_data

from reporting.digest import trend_periods
from reporting.metrics import metrics_by, score_trend
from reporting.periods import week_period
from reporting.scope import ReportingError, Scope
from store import Database


async def test_the_rating_trend_equals_the_full_reports_week_by_week(db: Database):
    await seed_digest_data(db)
    periods = trend_periods(week_period(WEEK, TZ))
    for scope in (Scope.bank(), Scope.of_region("North"), Scope.of_branch("MAIN"), Scope.of_branch("QUIET")):
        trend = await score_trend(db, periods, within=scope, min_responses=10)
        reports = await metrics_by(db, "all", periods, within=scope, min_responses=10)
        assert [(t["csat"], t["nps"], t["ces"]) for t in trend] == [(r.csat, r.nps, r.ces) for r in reports]
    main = await score_trend(db, periods, within=Scope.of_branch("MAIN"), min_responses=10)
    assert [t["csat"].value for t in main[-2:]] == [pytest.approx(40.0), pytest.approx(90.0)]  # 12 and 27 of 30
    assert [t["csat"].n for t in main[:-2]] == [0] * 6


async def test_an_unknown_scope_has_no_trend(db: Database):
    await seed_digest_data(db)
    with pytest.raises(ReportingError, match="unknown branch 'NOPE'"):
        await score_trend(db, trend_periods(week_period(WEEK, TZ)), within=Scope.of_branch("NOPE"))
