"""The weekly digest's content and renderings (HTML e-mail, plain text, PDF, Telegram) over both databases."""

from __future__ import annotations

import io
import logging
import os

import pypdf
import pytest
from digest_data import EVIL, TZ, WEEK, seed_digest_data

from reporting.charts import find_cjk_font, trend_chart
from reporting.digest import DigestData, build_digest, trend_periods
from reporting.periods import week_period
from reporting.render import TELEGRAM_LIMIT, render_digest
from reporting.scope import ReportingError, Scope
from store import Database

NAMES = {"waiting_time": {"en": "Waiting time", "zh": "等候时间"}, "staff": {"en": "Staff", "zh": "员工服务"}}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ESCAPED = "&lt;script&gt;alert("


async def digest_for(db: Database, scope: Scope, week: str = WEEK, **names) -> DigestData:
    return await build_digest(db, scope, week_period(week, TZ), min_responses=10, category_names=names or NAMES)


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed_digest_data(db)
    return db


async def test_a_branch_week_has_its_figures_changes_movers_and_follow_up(seeded):
    digest = await digest_for(seeded, Scope.of_branch("MAIN"))

    assert (digest.responses, digest.previous_responses) == (30, 30)
    assert digest.scope_name("zh") == "总行营业部（MAIN）"
    csat = next(h for h in digest.headlines if h.name == "csat")
    assert csat.figure.value == pytest.approx(90.0)
    assert csat.change.previous.value == pytest.approx(40.0)
    assert csat.change.is_beyond_noise
    low, high = csat.interval
    assert low < 50 < high
    completion = next(h for h in digest.headlines if h.name == "completion_rate")
    assert not completion.change.is_beyond_noise
    first = digest.movers[0]
    assert first.category == "waiting_time"
    assert first.change.is_beyond_noise
    assert first.quotes == (EVIL, "Waited an hour, call me on [PHONE]")  # the latest, masked again
    assert next(m for m in digest.movers if m.category == "staff").change.is_beyond_noise is False
    follow_up = digest.follow_up
    assert (follow_up.cases_new, follow_up.cases_overdue, follow_up.cases_closed) == (2, 2, 1)
    assert (follow_up.tickets_new, follow_up.tickets_open, follow_up.tickets_closed) == (1, 1, 0)
    assert [p.week for p in digest.trend][-2:] == ["2026-W46", "2026-W47"]
    assert len(digest.trend) == 8
    assert [b.branch for b in digest.branches] == ["MAIN"]


async def test_a_region_covers_its_branches_and_the_bank_everything(seeded):
    region = await digest_for(seeded, Scope.of_region("North"))
    bank = await digest_for(seeded, Scope.bank())

    assert region.responses == bank.responses == 42
    assert [b.branch for b in region.branches] == ["EAST", "MAIN"]
    assert region.scope_name("en") == "Region North"


async def test_unknown_branches_and_regions_are_refused(seeded):
    with pytest.raises(ReportingError, match="unknown branch 'NOPE'"):
        await digest_for(seeded, Scope.of_branch("NOPE"))
    with pytest.raises(ReportingError, match="unknown region 'Atlantis'"):
        await digest_for(seeded, Scope.of_region("Atlantis"))


async def test_the_html_email_shows_the_figures_with_inline_charts_and_inert_quotes(seeded):
    rendered = render_digest(await digest_for(seeded, Scope.of_branch("MAIN")), "en")

    assert "Weekly digest: Main Street (MAIN)" in rendered.html
    assert ">90%<" in rendered.html
    assert "+50 pts" in rendered.html
    assert ESCAPED in rendered.html
    assert "<script>" not in rendered.html
    assert "<b>bold</b>" not in rendered.html
    assert "[PHONE]" in rendered.html
    assert "13812345678" not in rendered.html
    assert [image.cid for image in rendered.images] == ["trend", "categories"]
    assert all(image.data.startswith(PNG_MAGIC) for image in rendered.images)
    assert 'src="cid:trend"' in rendered.html
    assert 'src="cid:categories"' in rendered.html
    assert "Satisfaction (CSAT): 90% (74% to 97%); Last week 40%; ▲ +50 pts" in rendered.text
    assert rendered.subject == "Weekly digest: Main Street (MAIN), 2026-W47"


async def test_the_chinese_digest_is_labelled_in_chinese(seeded):
    rendered = render_digest(await digest_for(seeded, Scope.of_branch("MAIN")), "zh")

    assert "每周摘要：总行营业部（MAIN）" in rendered.html
    assert "等候时间" in rendered.html
    assert "满意度（CSAT）" in rendered.text
    assert "+50 个百分点" in rendered.telegram_html
    assert rendered.subject == "每周摘要：总行营业部（MAIN），2026-W47"


async def test_the_pdf_parses_and_holds_the_headline_numbers(seeded):
    digest = await digest_for(seeded, Scope.of_branch("MAIN"))
    english = pdf_text(render_digest(digest, "en").pdf)

    assert "Weekly digest: Main Street (MAIN)" in english
    assert "90%" in english
    assert "40%" in english
    assert "+50 pts" in english
    assert '<script>alert("pwned")</script>' in english  # shown as the plain text it is; a PDF runs no markup


async def test_the_chinese_pdf_holds_chinese_text_with_a_cjk_font(seeded):
    if find_cjk_font() is None:
        reason = "no CJK font installed (Debian: fonts-wqy-microhei)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run installs it")
        pytest.skip(reason)
    digest = await digest_for(seeded, Scope.of_branch("MAIN"))
    assert "每周摘要：总行营业部（MAIN）" in pdf_text(render_digest(digest, "zh").pdf)


async def test_without_a_cjk_font_the_chinese_pdf_still_renders_and_warns(seeded, caplog):
    digest = await digest_for(seeded, Scope.of_branch("MAIN"))
    with caplog.at_level(logging.WARNING, logger="reporting"):
        rendered = render_digest(digest, "zh", font=None)

    text = pdf_text(rendered.pdf)
    assert "90%" in text
    assert "MAIN" in text
    assert "no CJK font" in caplog.text
    assert all(image.data.startswith(PNG_MAGIC) for image in rendered.images)  # charts fall back to English


async def test_the_telegram_text_fits_a_caption_and_escapes_customer_text(seeded):
    rendered = render_digest(await digest_for(seeded, Scope.of_branch("MAIN")), "en")

    assert len(rendered.telegram_html) <= TELEGRAM_LIMIT
    assert rendered.telegram_html.startswith("<b>Weekly digest: Main Street (MAIN)</b>")
    assert "CSAT): <b>90%</b> ▲ +50 pts" in rendered.telegram_html
    assert ESCAPED in rendered.telegram_html
    assert "<script>" not in rendered.telegram_html
    notice = rendered.notice("telegram")
    assert [image.cid for image in notice.images] == ["trend"]


async def test_long_names_still_fit_a_telegram_caption(seeded):
    long_names = {c: {"en": "<i>" + c * 40, "zh": c * 40} for c in ("waiting_time", "staff")}
    rendered = render_digest(await digest_for(seeded, Scope.bank(), **long_names), "en")

    assert len(rendered.telegram_html) <= TELEGRAM_LIMIT
    assert "<i>waiting" not in rendered.telegram_html


async def test_an_empty_week_renders_a_digest_that_says_so(seeded):
    digest = await digest_for(seeded, Scope.of_branch("QUIET"))
    assert digest.is_empty

    for language, words in (("en", "No feedback was received this week."), ("zh", "本周没有收到客户反馈。")):
        rendered = render_digest(digest, language)
        assert words in rendered.html
        assert words in rendered.text
        assert words in rendered.telegram_html
        assert rendered.images == ()
        assert "cid:" not in rendered.html
        assert "not enough responses" in pdf_text(rendered.pdf) or language == "zh"


async def test_a_week_before_any_feedback_renders_on_an_empty_database(db):
    async with db.writing(), db.sessions() as session, session.begin():
        from store.models import Branch

        session.add(Branch(code="MAIN", name_en="Main", name_zh="主", region=None))
    digest = await digest_for(db, Scope.bank(), week="2020-W01")

    rendered = render_digest(digest, "en", font=None)
    assert digest.is_empty
    assert rendered.images == ()
    assert "No feedback" in pdf_text(rendered.pdf)


def test_the_trend_covers_eight_weeks_across_a_year_boundary():
    weeks = [p.label for p in trend_periods(week_period("2027-W02", TZ))]
    assert weeks == ["2026-W48", "2026-W49", "2026-W50", "2026-W51", "2026-W52", "2026-W53", "2027-W01", "2027-W02"]


def test_a_trend_with_no_shown_figure_draws_no_chart():
    from reporting.digest import TrendPoint
    from reporting.figures import hidden

    assert trend_chart([TrendPoint("2026-W47", hidden("share", 3), hidden("nps", 3))], "en") is None
