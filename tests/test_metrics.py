"""Metrics over both databases: SQL aggregation by scope and period, the latest analysis, cases and SLAs.

One hand-built week of feedback (2026-W47, Europe/Berlin) with every figure worked out by hand below.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.metrics import compare, metrics_by, metrics_for, metrics_frame, rank, scope_metrics
from reporting.periods import week_period
from reporting.scope import ReportingError, Scope
from store import Database
from store.models import Analysis, Branch, Case, Conversation, Counter, Feedback, SurveyStart

TZ = "Europe/Berlin"
WEEK = week_period("2026-W47", TZ)  # Monday 16 Nov 2026 00:00 CET = 15 Nov 23:00 UTC, to 22 Nov 23:00 UTC
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HOUR = 3600.0


def nov(day: int, hour: int, minute: int = 0) -> datetime:
    """An instant in November 2026, in UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


STAFF, WAIT, FEES = ["staff", 0.9], ["waiting_time", 0.7], ["fees", 0.9]

# (branch, counter, submitted_at, csat, nps, ces, [(model_version, sentiment, categories), ...])
VISITS = [
    ("B1", "C1", nov(15, 23, 30), 5, 10, 6, [("v1", "positive", [STAFF])]),  # 00:30 local on the Monday
    ("B1", "C1", nov(16, 9), 5, 9, 6, [("v1", "positive", [STAFF, WAIT])]),
    ("B1", "C1", nov(16, 10), 4, 7, 5, [("v1", "neutral", [])]),
    ("B1", "C1", nov(17, 9), 2, 3, 3, [("v1", "positive", [WAIT]), ("v2", "negative", [WAIT])]),
    ("B1", "C2", nov(17, 8), 1, 0, 1, [("v1", "negative", [FEES])]),
    ("B1", "C2", nov(18, 8), 3, 8, 4, [("v1", "neutral", [WAIT])]),
    ("B1", "C2", nov(18, 9), 5, 10, 7, [("v1", "positive", ["staff"])]),  # older rows hold bare names
    ("B2", None, nov(19, 9), 4, 9, 7, []),  # not analysed yet
    ("B2", None, nov(19, 10), 4, 9, 7, [("v1", "positive", [])]),
    ("B3", None, nov(20, 9), 5, 10, 7, [("v1", "positive", [STAFF])]),
    ("B3", None, nov(20, 10), 5, 10, 7, [("v1", "positive", [STAFF])]),
    ("B3", None, nov(21, 9), 5, 10, 7, [("v1", "positive", [STAFF]), ("v2", "mixed", [STAFF, FEES])]),
    ("B4", None, nov(22, 9), 1, None, None, [("v1", "negative", [FEES]), ("v2", "negative", [FEES, WAIT])]),
    # Outside the week: 23:30 local on the Sunday before, and 00:30 local on the Monday after.
    ("B1", "C1", nov(15, 22, 30), 1, 0, 1, [("v1", "negative", [FEES])]),
    ("B1", "C1", nov(22, 23, 30), 1, 0, 1, [("v1", "negative", [FEES])]),
]

# (index into VISITS, created_at, sla_due_at, first_response_at, resolved_at)
CASES = [
    (3, nov(17, 10), nov(18, 10), nov(17, 12), nov(19, 10)),  # answered in 2 h; resolved late, in 48 h
    (4, nov(17, 9), nov(18, 9), nov(17, 13), nov(17, 21)),  # answered in 4 h; resolved in time, in 12 h
    (12, nov(18, 8), nov(19, 8), nov(19, 9), None),  # answered late (25 h), still open past due at NOW
    (5, nov(20, 8), nov(30, 8), None, None),  # open, not yet due at NOW: undecided
    (13, nov(15, 22, 40), None, None, None),  # before the week
]

# (branch, counter code, channel, UTC day, count): a UTC day belongs to the week that holds its noon.
STARTS = [
    ("B1", "C1", "web", date(2026, 11, 16), 10),
    ("B1", "", "telegram", date(2026, 11, 18), 5),
    ("B3", "", "web", date(2026, 11, 20), 4),
    ("B2", "", "web", date(2026, 11, 22), 1),
    ("B1", "", "web", date(2026, 11, 15), 100),
    ("B1", "", "web", date(2026, 11, 23), 100),
]


async def seed(db: Database) -> None:
    """Insert the organisation, the visits above with their analyses, three abandoned conversations and cases."""
    async with db.sessions() as session, session.begin():
        branches, counters = await add_org(session)
        feedback = [await add_visit(session, n, visit, branches, counters) for n, visit in enumerate(VISITS)]
        for status in ("cancelled", "active", "expired"):
            session.add(Conversation(channel="telegram", branch_id=branches["B1"], source="deeplink", step="s",
                                     state={}, status=status, started_at=nov(18, 12)))  # fmt: skip
        for index, created, due, answered, resolved in CASES:
            session.add(Case(feedback_id=feedback[index].id, branch_id=feedback[index].branch_id, created_at=created,
                             sla_due_at=due, first_response_at=answered, resolved_at=resolved))  # fmt: skip
        for branch, code, channel, day, n in STARTS:
            session.add(SurveyStart(branch_id=branches[branch], counter_code=code, channel=channel, day=day, count=n))


async def add_org(session: AsyncSession) -> tuple[dict[str, int], dict[str, int]]:
    """Branches B1 and B2 in region east, B3 in west, B4 in none; counters C1 and C2 in B1."""
    branches = [Branch(code=code, name_en=code, name_zh=code, region=region)
                for code, region in [("B1", "east"), ("B2", "east"), ("B3", "west"), ("B4", None)]]  # fmt: skip
    session.add_all(branches)
    await session.flush()
    counters = [Counter(branch_id=branches[0].id, code=code, name_en=code, name_zh=code) for code in ("C1", "C2")]
    session.add_all(counters)
    await session.flush()
    return {b.code: b.id for b in branches}, {c.code: c.id for c in counters}


async def add_visit(session: AsyncSession, n: int, visit: tuple, branches: dict, counters: dict) -> Feedback:
    """A completed conversation, its feedback and its analyses (inserted in order: the last is the latest)."""
    branch, counter, at, csat, nps, ces, analyses = visit
    counter_id = counters.get(counter)
    # The first visit came in through C2's code but the customer rated C1: ratings follow the visit.
    conversation = Conversation(channel="web", branch_id=branches[branch], source="qr", step="done", state={},
                                counter_id=counters["C2"] if n == 0 else counter_id, status="completed",
                                started_at=at - timedelta(minutes=5), completed_at=at)  # fmt: skip
    session.add(conversation)
    await session.flush()
    feedback = Feedback(conversation_id=conversation.id, branch_id=branches[branch], counter_id=counter_id,
                        language="en", csat=csat, nps=nps, ces=ces, comment=f"visit {n}", submitted_at=at)  # fmt: skip
    session.add(feedback)
    await session.flush()
    for version, sentiment, categories in analyses:
        session.add(Analysis(feedback_id=feedback.id, model_version=version, language="en", sentiment=sentiment,
                             categories=categories))  # fmt: skip
        await session.flush()
    return feedback


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed(db)
    return db


async def test_bank_week_figures_match_hand_counts(seeded):
    report = await scope_metrics(seeded, Scope.bank(), WEEK, min_responses=10, now=NOW)

    assert report.responses == 13
    assert report.score_counts["csat"] == {1: 2, 2: 1, 3: 1, 4: 3, 5: 6}
    assert report.csat.value == pytest.approx(100 * 9 / 13)
    assert report.nps.n == 12  # one visitor skipped the question
    assert report.nps.value == pytest.approx(100 * (8 - 2) / 12)
    assert report.ces.value == pytest.approx(67 / 12)
    assert (report.link_opens, report.conversations_started, report.conversations_completed) == (20, 16, 13)
    assert report.completion_rate.value == pytest.approx(65.0)


async def test_sentiment_and_categories_use_only_the_latest_analysis(seeded):
    report = await scope_metrics(seeded, Scope.bank(), WEEK, min_responses=3, now=NOW)

    assert report.analysed == 12
    shares = {name: figure.value for name, figure in report.sentiment.items()}
    assert shares == pytest.approx({"positive": 50.0, "neutral": 100 * 2 / 12, "negative": 25.0, "mixed": 100 / 12})
    assert {c: f.value for c, f in report.categories.items()} == pytest.approx(
        {"staff": 50.0, "waiting_time": 100 * 4 / 12, "fees": 25.0}
    )
    assert report.category_sentiment["waiting_time"]["negative"].value == pytest.approx(50.0)
    assert report.category_sentiment["fees"]["negative"].value == pytest.approx(100 * 2 / 3)
    assert report.category_sentiment["staff"]["positive"].value == pytest.approx(100 * 5 / 6)


async def test_case_times_and_sla_compliance(seeded):
    cases = (await scope_metrics(seeded, Scope.bank(), WEEK, min_responses=2, now=NOW)).cases

    assert cases.opened == 4
    assert cases.first_response_median.value == pytest.approx(4 * HOUR)
    assert cases.first_response_p90.value == pytest.approx(4 * HOUR + 0.8 * 21 * HOUR)  # numpy's linear P90 of 2, 4, 25
    assert cases.resolution_median.value == pytest.approx(30 * HOUR)
    assert cases.resolution_p90.value == pytest.approx(12 * HOUR + 0.9 * 36 * HOUR)
    # Answered in time: 2 of the 3 decided (the fourth is not due yet). Resolved in time: 1 of 3.
    assert (cases.first_response_sla.value, cases.first_response_sla.n) == (pytest.approx(100 * 2 / 3), 3)
    assert (cases.resolution_sla.value, cases.resolution_sla.n) == (pytest.approx(100 / 3), 3)


async def test_figures_below_the_minimum_read_not_enough_responses(seeded):
    report = await scope_metrics(seeded, Scope.of_branch("B2"), WEEK, min_responses=10, now=NOW)

    assert report.responses == 2
    assert report.csat.value is None
    assert report.csat.render("en") == "not enough responses"
    assert report.nps.render("zh") == "样本不足"
    assert report.score_counts["csat"] == {}, "a small group's distribution would show its answers"


async def test_branches_are_ranked_without_the_small_ones(seeded):
    reports = await metrics_by(seeded, "branch", WEEK, min_responses=3, now=NOW)

    assert [(r.scope.branch, r.responses) for r in reports] == [("B1", 7), ("B2", 2), ("B3", 3), ("B4", 1)]
    ranked = rank(reports, "csat")
    assert [(scope.branch, round(figure.value, 2)) for scope, figure in ranked] == [("B3", 100.0), ("B1", 57.14)]
    b1 = reports[0]
    assert (b1.link_opens, b1.conversations_started, b1.conversations_completed) == (15, 10, 7)


async def test_regions_sum_their_branches_and_skip_branches_without_one(seeded):
    reports = await metrics_by(seeded, "region", WEEK, min_responses=3, now=NOW)

    assert [(r.scope, r.responses) for r in reports] == [(Scope.of_region("east"), 9), (Scope.of_region("west"), 3)]
    assert reports[0].csat.value == pytest.approx(100 * 6 / 9)


async def test_ratings_are_credited_to_the_counter_of_the_visit(seeded):
    reports = await metrics_by(seeded, "counter", WEEK, within=Scope.of_branch("B1"), min_responses=3, now=NOW)

    assert [(r.scope.label, r.responses) for r in reports] == [("B1/C1", 4), ("B1/C2", 3)]
    assert reports[0].csat.value == pytest.approx(75.0)
    assert reports[0].link_opens == 10


async def test_one_query_round_buckets_consecutive_weeks_by_local_midnight(seeded):
    previous, current = await metrics_by(seeded, "all", [WEEK.previous(), WEEK], min_responses=1, now=NOW)

    assert (previous.period.label, previous.responses, previous.link_opens) == ("2026-W46", 1, 100)
    assert (current.period.label, current.responses) == ("2026-W47", 13)
    assert compare(current, previous)["csat"].delta == pytest.approx(100 * 9 / 13)


async def test_periods_out_of_order_are_bucketed_as_given(seeded):
    current, previous = await metrics_by(seeded, "all", [WEEK, WEEK.previous()], min_responses=1, now=NOW)

    assert [(r.period.label, r.responses) for r in (current, previous)] == [("2026-W47", 13), ("2026-W46", 1)]


async def test_one_round_for_several_dimensions_matches_separate_rounds(seeded):
    together = await metrics_for(seeded, ["all", "region", "branch", "counter"], WEEK, min_responses=3, now=NOW)

    for dimension, reports in together.items():
        alone = await metrics_by(seeded, dimension, WEEK, min_responses=3, now=NOW)
        assert reports == alone, dimension
    assert [r.responses for r in together["all"]] == [13]


async def test_a_counter_scope_filters_every_source(seeded):
    report = await scope_metrics(seeded, Scope.of_counter("B1", "C2"), WEEK, min_responses=1, now=NOW)

    assert (report.responses, report.link_opens, report.cases.opened) == (3, 0, 2)
    assert report.conversations_started == 4  # three of its own, and the C1 visit that came in through C2's code


async def test_an_empty_period_gives_a_report_of_hidden_figures(seeded):
    report = await scope_metrics(seeded, Scope.bank(), week_period("2027-W10", TZ), now=NOW)

    assert report.responses == 0
    assert all(not figure.enough for figure in report.figures().values())


async def test_unknown_scopes_are_refused_with_the_known_ones(seeded):
    with pytest.raises(ReportingError, match=r"unknown branch 'B9' \(known: B1, B2, B3, B4\)"):
        await scope_metrics(seeded, Scope.of_branch("B9"), WEEK)
    with pytest.raises(ReportingError, match="unknown region 'north'"):
        await metrics_by(seeded, "branch", WEEK, within=Scope.of_region("north"))


async def test_metrics_frame_lists_every_figure_with_its_size(seeded):
    reports = await metrics_by(seeded, "branch", WEEK, min_responses=3, now=NOW)
    frame = metrics_frame(reports, language="zh").set_index(["branch", "metric"])

    assert frame.loc[("B1", "csat"), "value"] == pytest.approx(100 * 4 / 7)
    assert frame.loc[("B2", "csat"), "shown"] == "样本不足"
    assert frame.loc[("B2", "responses"), "value"] == 2
