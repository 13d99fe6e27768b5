"""Metric formulas against hand-computed cases: CSAT, NPS, CES, shares, durations, "beyond noise" and ranking."""

from __future__ import annotations

import math

import pytest

from reporting import figures
from reporting.figures import Figure, compare_figures, rank, t_quantile
from reporting.metrics import compare
from reporting.periods import week_period
from reporting.report import Counts, build_report
from reporting.scope import Scope

WEEK = week_period("2026-W47", "UTC")
Z = 1.959963984540054


def test_csat_is_the_top_two_box_with_a_wilson_interval():
    figure = figures.csat({1: 1, 2: 1, 3: 2, 4: 3, 5: 3}, min_responses=10)

    assert (figure.value, figure.n) == (pytest.approx(60.0), 10)
    # Wilson 95% for 6 of 10, as printed in Newcombe (1998): 0.3127 to 0.8318.
    assert figure.interval == pytest.approx((31.27, 83.18), abs=0.01)
    assert figure.render() == "60%"


def test_nps_subtracts_detractors_from_promoters_with_the_trinomial_interval():
    figure = figures.nps({10: 5, 8: 3, 3: 2}, min_responses=10)

    assert figure.value == pytest.approx(30.0)
    se = math.sqrt((0.5 + 0.2 - 0.3**2) / 10)  # 0.2470
    assert figure.std_error == pytest.approx(100 * se)
    assert figure.interval == pytest.approx((30 - 100 * Z * se, 30 + 100 * Z * se))
    assert figure.render() == "30"


def test_nps_of_all_promoters_is_100_with_no_spread():
    figure = figures.nps({9: 4, 10: 8}, min_responses=10)

    assert (figure.value, figure.interval, figure.std_error) == (100.0, (100.0, 100.0), 0.0)


def test_nps_interval_is_clipped_to_plus_minus_100():
    figure = figures.nps({10: 11, 0: 1}, min_responses=10)

    assert figure.value == pytest.approx(100 * 10 / 12)
    assert figure.interval[1] == 100.0
    assert figure.interval[0] == pytest.approx(100 * (10 / 12 - Z * math.sqrt((1 - (10 / 12) ** 2) / 12)))


def test_ces_is_the_mean_with_a_student_t_interval():
    figure = figures.ces({2: 5, 4: 5}, min_responses=10)

    assert figure.value == pytest.approx(3.0)
    se = math.sqrt((10 / 9) / 10)  # sample variance 10/9 over n = 10
    assert figure.std_error == pytest.approx(se)
    assert figure.interval == pytest.approx((3 - 2.2622 * se, 3 + 2.2622 * se), abs=1e-3)
    assert figure.render() == "3.0"


@pytest.mark.parametrize("formula", [figures.csat, figures.nps, figures.ces])
def test_no_responses_read_not_enough_responses_in_both_languages(formula):
    figure = formula({}, min_responses=10)

    assert (figure.value, figure.n, figure.enough, figure.interval) == (None, 0, False, None)
    assert figure.render("en") == "not enough responses"
    assert figure.render("zh") == "样本不足"


def test_a_figure_just_under_the_minimum_is_hidden_and_just_at_it_is_shown():
    assert figures.csat({5: 9}, min_responses=10).value is None
    assert figures.csat({5: 10}, min_responses=10).value == 100.0


def test_a_hidden_figure_cannot_carry_a_value():
    with pytest.raises(ValueError, match="no value"):
        Figure("share", 50.0, 3, enough=False)


def test_scores_off_the_scale_are_refused():
    with pytest.raises(ValueError, match=r"CSAT scores must lie in 1\.\.5, got \[0, 6\]"):
        figures.csat({0: 1, 6: 2, 5: 10}, min_responses=1)


def test_duration_quantiles_handle_ties_and_skip_open_cases():
    seconds = [60.0, 60.0, 60.0, 120.0, math.nan]

    assert figures.duration(seconds, 0.5, min_responses=4).value == 60.0
    assert figures.duration(seconds, 0.9, min_responses=4).value == pytest.approx(60 + 0.7 * 60)
    assert figures.duration(seconds, 0.5, min_responses=5).enough is False
    assert figures.duration([5400.0], 0.5, min_responses=1).render("zh") == "1.5 小时"


@pytest.mark.parametrize(("df", "table"), [(3, 3.182), (5, 2.571), (9, 2.262), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_t_table(df, table):
    assert t_quantile(0.975, df) == pytest.approx(table, abs=0.004)


def test_a_csat_drop_from_80_to_60_percent_of_100_is_beyond_noise():
    change = compare_figures(figures.share(60, 100, min_responses=10), figures.share(80, 100, min_responses=10))

    # Pooled p = 0.7: z = -0.2 / sqrt(0.7 * 0.3 * (1/100 + 1/100)) = -3.086.
    assert change.delta == pytest.approx(-20.0)
    assert change.statistic == pytest.approx(-3.086, abs=1e-3)
    assert (change.is_beyond_noise, change.direction) == (True, "down")


def test_the_same_drop_on_20_answers_each_is_noise():
    change = compare_figures(figures.share(14, 20, min_responses=10), figures.share(12, 20, min_responses=10))

    assert change.statistic == pytest.approx(0.1 / math.sqrt(0.65 * 0.35 * 0.1))
    assert change.is_beyond_noise is False


def test_nps_change_uses_the_combined_variance_of_both_scores():
    current = figures.nps({10: 60, 8: 20, 3: 20}, min_responses=10)  # NPS 40
    previous = figures.nps({10: 40, 8: 20, 3: 40}, min_responses=10)  # NPS 0
    change = compare_figures(current, previous)

    se = math.sqrt((0.8 - 0.16) / 100 + (0.8 - 0.0) / 100)  # NPS 40 against 0
    assert change.delta == pytest.approx(40.0)
    assert change.statistic == pytest.approx(0.4 / se)
    assert change.is_beyond_noise is True


def test_ces_change_is_welchs_t_with_satterthwaite_degrees_of_freedom():
    current, previous = figures.ces({6: 6, 7: 6}, min_responses=10), figures.ces({1: 5, 7: 5}, min_responses=10)
    change = compare_figures(current, previous)

    se_c, se_p = math.sqrt(3 / 11 / 12), 1.0  # sample variances 3/11 (n = 12) and 10 (n = 10)
    df = (se_c**2 + se_p**2) ** 2 / (se_c**4 / 11 + se_p**4 / 9)
    assert change.statistic == pytest.approx((6.5 - 4.0) / math.sqrt(se_c**2 + se_p**2))
    assert change.critical == pytest.approx(t_quantile(0.975, df))
    assert change.is_beyond_noise is True


def test_a_ces_change_a_z_test_would_call_is_noise_on_ten_answers():
    change = compare_figures(figures.ces({6: 12}, min_responses=10), figures.ces({1: 5, 7: 5}, min_responses=10))

    # t = 2.0 with 9 degrees of freedom: beyond the normal 1.96, within Student's 2.262.
    assert change.statistic == pytest.approx(2.0)
    assert change.critical == pytest.approx(2.262, abs=0.001)
    assert change.is_beyond_noise is False


def test_all_promoters_twice_is_no_change_but_all_promoters_against_all_detractors_is():
    promoters, detractors = figures.nps({10: 10}, min_responses=10), figures.nps({0: 10}, min_responses=10)

    assert compare_figures(promoters, promoters).is_beyond_noise is False
    assert compare_figures(promoters, detractors).is_beyond_noise is True


def test_a_change_against_a_hidden_figure_is_never_beyond_noise():
    change = compare_figures(figures.share(90, 100, min_responses=10), figures.share(1, 5, min_responses=10))

    assert (change.delta, change.direction, change.is_beyond_noise) == (None, None, False)


def test_ranking_drops_small_samples_and_keeps_ties_in_order():
    items = [
        ("A", figures.share(8, 10, min_responses=10)),
        ("B", figures.share(9, 9, min_responses=10)),  # 100% of nine: never ranked
        ("C", figures.share(16, 20, min_responses=10)),  # ties with A
        ("D", figures.share(19, 20, min_responses=10)),
    ]

    assert [key for key, _ in rank(items)] == ["D", "A", "C"]
    assert [key for key, _ in rank(items, descending=False)] == ["A", "C", "D"]


def test_report_from_counts_uses_opens_as_the_completion_denominator():
    counts = Counts(
        responses=12,
        scores={"csat": {5: 12}},
        link_opens=40,
        conversations_started=30,
        conversations_completed=12,
        sentiment={"negative": 3, "positive": 9},
        categories={"fees": {"negative": 3}},
    )
    report = build_report(Scope.bank(), WEEK, counts, min_responses=10)

    assert report.completion_rate.value == pytest.approx(30.0)
    assert report.csat.value == 100.0
    assert report.figure("category.fees").value == pytest.approx(25.0)
    assert report.figure("category.staff").value == 0.0, "an unmentioned category is 0% of the analysed comments"
    assert report.figure("category.fees.negative").enough is False  # 3 comments
    with pytest.raises(KeyError, match="no metric 'csta'"):
        report.figure("csta")


def test_compare_reports_flags_a_category_that_appeared():
    before = build_report(Scope.bank(), WEEK.previous(), Counts(sentiment={"positive": 100}), min_responses=10)
    counts = Counts(sentiment={"negative": 20, "positive": 80}, categories={"fees": {"negative": 20}})
    now = build_report(Scope.bank(), WEEK, counts, min_responses=10)
    changes = compare(now, before)

    assert changes["category.fees"].delta == pytest.approx(20.0)
    assert changes["category.fees"].is_beyond_noise is True
    assert changes["sentiment.negative"].is_beyond_noise is True
    assert changes["csat"].is_beyond_noise is False  # no ratings either week
