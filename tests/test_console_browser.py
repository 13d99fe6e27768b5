"""The staff console in a real browser: Debian's Chromium driven by Playwright, on a desktop and a phone, in English
and Chinese.

One browser and one server (the real app factory on 127.0.0.1, SQLite) serve the whole module; the data is seeded
once and each test works its own case or ticket, so the order of the tests does not matter. Every page visited is
checked for the seeded script having run, for script errors and CSP reports in the console, for our stylesheet
having applied and, on the phone, for a page wider than the screen. Screenshots land in test-artifacts/console/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Locator, Page, Response, async_playwright, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from test_console_auth import CHEAP, PASSWORD, add_user, settings_for
from test_webchat_browser import ARTIFACTS, CHROMIUM, FLAGS, Watch, require_chromium

from config.app import create_app, load_catalog
from store import Database
from store.models import (
    Analysis,
    Branch,
    Case,
    CaseEvent,
    CasePriority,
    Conversation,
    Counter,
    Feedback,
    ScopeKind,
    StaffRole,
    Ticket,
    TicketEvidence,
    utcnow,
)
from web import passwords
from web.keys import DATABASE
from web.texts import texts

pytestmark = pytest.mark.asyncio(loop_scope="module")

SHOTS = ARTIFACTS / "console"
HOSTILE = "<script>window.__pwned=1</script><b>bold</b>"
HEADER_BLUE = "rgb(11, 79, 138)"  # .top's background in console.css: the stylesheet got past the CSP
VISITS = 30  # feedback for the dashboard, one every 20 hours: 8 or 9 a week, above the minimum of 5
CATEGORIES = (["waiting_time", 0.9], ["staff_attitude", 0.8], ["fees_charges", 0.7])
SENTIMENTS = ("negative", "neutral", "positive")


@dataclass(frozen=True, slots=True)
class Device:
    """A browser context: its screen and its language."""

    name: str
    width: int
    height: int
    is_mobile: bool
    locale: str

    @property
    def language(self) -> str:
        return "zh" if self.locale.startswith("zh") else "en"


DESKTOP_EN = Device("desktop", 1280, 800, is_mobile=False, locale="en-GB")
PHONE_ZH = Device("phone", 390, 844, is_mobile=True, locale="zh-CN")
DESKTOP_ZH = Device("desktop", 1280, 800, is_mobile=False, locale="zh-CN")
PHONE_EN = Device("phone", 390, 844, is_mobile=True, locale="en-US")


@dataclass(frozen=True, slots=True)
class Console:
    """The running console and what was seeded into it: a case and a ticket per scenario, by key."""

    url: str
    db: Database
    cases: dict[str, int]
    tickets: dict[str, int]


# -- the browser, the server and the data (once per module) ----------------------------------------------------


@pytest.fixture(scope="module")
def cheap_hashing() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "HASHER", CHEAP)
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(cheap_hashing, tmp_path_factory) -> AsyncIterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    settings = settings_for(f"sqlite+aiosqlite:///{tmp}/console.db", tmp, CLOSELOOP_TIMEZONE="Asia/Shanghai",
                            CLOSELOOP_REPORTING_MIN_RESPONSES="5")  # fmt: skip
    async with TestServer(create_app(settings, load_catalog(settings)), host="127.0.0.1") as server:
        db = server.app[DATABASE]
        await add_user(db, "clerk", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "MAIN"), name="Clara")
        await add_user(db, "boss", role=StaffRole.MANAGER, scope=(ScopeKind.REGION, "central"), name="Bo")
        await add_user(db, "root", role=StaffRole.ADMIN, scope=(ScopeKind.ALL, None), name="Root")
        cases, tickets = await seed(db)
        yield Console(str(server.make_url("")).rstrip("/"), db, cases, tickets)


async def seed(db: Database) -> tuple[dict[str, int], dict[str, int]]:
    """Feedback at MAIN over the last three and a half weeks; per scenario a flagged case with the hostile comment,
    and a ticket with that comment among its evidence."""
    now = utcnow()
    async with db.writing(), db.sessions() as session, session.begin():
        main = await session.scalar(select(Branch.id).where(Branch.code == "MAIN"))
        counters = list(await session.scalars(select(Counter.id).where(Counter.branch_id == main)))
        visits = []
        for n in range(VISITS):
            visit = await _visit(session, main, counters[n % len(counters)], now - timedelta(hours=20 * n + 1),
                                 csat=5 - n % 5, comment=f"visit {n}: the queue was long", n=n)  # fmt: skip
            visits.append(visit.id)
        cases, tickets = {}, {}
        for key in ("desktop", "phone", "signout"):
            feedback = await _visit(session, main, None, now - timedelta(hours=2), csat=1,
                                    comment=f"{HOSTILE} nobody called back ({key})", n=0)  # fmt: skip
            case = Case(feedback_id=feedback.id, branch_id=main, priority=CasePriority.URGENT, reason="keyword",
                        sla_due_at=now + timedelta(hours=4), created_at=now)  # fmt: skip
            session.add(case)
            await session.flush()
            session.add(CaseEvent(case_id=case.id, kind="opened", data={"priority": "urgent"}))
            cases[key] = case.id
            tickets[key] = await _ticket(session, main, key, [feedback.id, *visits[:5]], now=now)
    return cases, tickets


async def _visit(
    session: AsyncSession, branch_id: int, counter_id: int | None, when: datetime, *, csat: int, comment: str, n: int
) -> Feedback:
    conversation = Conversation(channel="web", branch_id=branch_id, counter_id=counter_id, source="qr", step="done",
                                state={}, status="completed", started_at=when, completed_at=when)  # fmt: skip
    session.add(conversation)
    await session.flush()
    feedback = Feedback(conversation_id=conversation.id, branch_id=branch_id, counter_id=counter_id, language="en",
                        csat=csat, nps=10 - n % 11, comment=comment, submitted_at=when)  # fmt: skip
    session.add(feedback)
    await session.flush()
    session.add(Analysis(feedback_id=feedback.id, model_version="v1", language="en",
                         sentiment=SENTIMENTS[n % 3], categories=[CATEGORIES[n % 3]]))  # fmt: skip
    return feedback


async def _ticket(session: AsyncSession, branch_id: int, key: str, evidence: list[int], *, now: datetime) -> int:
    weeks = [{"start": (now - timedelta(weeks=3 - i)).isoformat(), "complaints": c} for i, c in enumerate((1, 2, 2, 6))]
    trend = {"weeks": weeks, "window_days": 28, "current": {"complaints": 6}, "previous": {"complaints": 2},
             "rate_test": {"direction": "up", "beyond_noise": True}}  # fmt: skip
    ticket = Ticket(branch_id=branch_id, category="waiting_time", cluster_key=f"MAIN:waiting_time:{key}",
                    title=f"Long queues at Main ({key})", owner_department="branch_operations",
                    feedback_count=len(evidence), trend=trend, opened_at=now - timedelta(days=2))  # fmt: skip
    session.add(ticket)
    await session.flush()
    session.add_all(TicketEvidence(ticket_id=ticket.id, feedback_id=feedback_id, is_representative=i < 3)
                    for i, feedback_id in enumerate(evidence))  # fmt: skip
    return ticket.id


# -- a tab in a browser context, and what every page must be ----------------------------------------------------


class Tab:
    """One page in its own context (its own cookies), watched for what must never happen, and shot on request."""

    def __init__(self, page: Page, device: Device, console: Console, label: str) -> None:
        self.page, self.device, self.console, self.label = page, device, console, label
        self.t = texts(device.language)
        self.watch = Watch(page)
        self.failed: list[str] = []
        page.on("response", self._on_response)

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    async def goto(self, path: str) -> Response | None:
        return await self.page.goto(self.console.url + path)

    async def check(self, shot: str | None = None) -> None:
        """The page as any console page must be; saved as a screenshot named ``shot``."""
        page = self.page
        assert await page.evaluate("typeof window.__pwned") == "undefined", f"the seeded script ran on {page.url}"
        header = await page.eval_on_selector("header.top", "e => getComputedStyle(e).backgroundColor")
        assert header == HEADER_BLUE, f"console.css did not apply on {page.url}"
        assert await page.get_attribute("html", "lang") == ("zh-CN" if self.device.language == "zh" else "en")
        if self.device.is_mobile:
            # Against the layout viewport: a phone's innerWidth grows to fit a page that is too wide.
            overflow = await page.evaluate("(e => e.scrollWidth - e.clientWidth)(document.documentElement)")
            assert overflow <= 0, f"{page.url} is {overflow}px wider than the phone's screen"
        if shot is not None:
            SHOTS.mkdir(parents=True, exist_ok=True)
            name = f"{self.label}-{self.device.name}-{self.device.language}-{shot}.png"
            await page.screenshot(path=str(SHOTS / name), full_page=True)

    def assert_quiet(self) -> None:
        self.watch.assert_quiet()
        assert self.failed == []

    async def button(self, key: str) -> None:
        await self.page.get_by_role("button", name=self.t[key], exact=True).click()


@pytest_asyncio.fixture(loop_scope="module")
async def open_tab(browser, console) -> AsyncIterator[Callable[[Device, str], Awaitable[Tab]]]:
    """Open a tab for a device; every context opened is closed after the test, and every tab must stay quiet."""
    tabs: list[Tab] = []

    async def opening(device: Device, label: str) -> Tab:
        context = await browser.new_context(viewport={"width": device.width, "height": device.height},
                                            is_mobile=device.is_mobile, has_touch=device.is_mobile,
                                            locale=device.locale)  # fmt: skip
        tab = Tab(await context.new_page(), device, console, label)
        tabs.append(tab)
        return tab

    yield opening
    for tab in tabs:
        await tab.page.context.close()
    for tab in tabs:
        tab.assert_quiet()


async def sign_in(tab: Tab, username: str, *, wrong_first: bool = False) -> None:
    """Sign in through the form (after a wrong password, if asked); the console opens on the case queue."""
    page, t = tab.page, tab.t
    await tab.goto("/console/login")
    await expect(page.locator("h1")).to_have_text(t["sign_in"])
    if wrong_first:
        await page.get_by_label(t["username"], exact=True).fill(username)
        await page.get_by_label(t["password"], exact=True).fill("not the password")
        await tab.button("sign_in")
        await expect(page.get_by_role("alert")).to_have_text(t["wrong_credentials"])
        await tab.check("sign-in-refused")
    await page.get_by_label(t["username"], exact=True).fill(username)
    await page.get_by_label(t["password"], exact=True).fill(PASSWORD)
    await tab.button("sign_in")
    await expect(page).to_have_url(re.compile(r"/console/cases$"))


def queue_link(tab: Tab, case_id: int) -> Locator:
    return tab.page.get_by_role("link", name=f"#{case_id}", exact=True)


def last_number(text: str | None) -> int:
    """The count at the end of a chart mark's tooltip ("2026-W47: 24", "Waiting time: 30% (6 comments)")."""
    return int(re.findall(r"\d+", text or "")[-1])


# -- the inner loop: a case from the queue to resolved --------------------------------------------------------


@pytest.mark.parametrize("device", [DESKTOP_EN, PHONE_ZH], ids=["desktop-en", "phone-zh"])
async def test_a_case_is_worked_from_the_queue_to_resolved_with_the_pages_buttons(open_tab, console, device):
    key = device.name
    case_id = console.cases[key]
    tab = await open_tab(device, "case")
    page, t = tab.page, tab.t
    await sign_in(tab, "clerk", wrong_first=True)

    row = page.locator("tr.case-row", has=queue_link(tab, case_id))
    await expect(row).to_contain_text(t["case_priority_urgent"])
    await expect(row).to_contain_text(f"{HOSTILE} nobody called back ({key})")  # shown as text, not run
    await tab.check("queue")
    await queue_link(tab, case_id).click()
    await expect(page.locator("h1")).to_have_text(t["case_title"].format(id=case_id))
    comment = page.locator("blockquote.case-comment")
    await expect(comment).to_have_text(f"{HOSTILE} nobody called back ({key})")
    assert await comment.locator("b, script").count() == 0, "the comment's markup became elements"
    status = page.locator("dd.case-status")
    await expect(status).to_have_text(t["case_status_new"])
    await tab.check("case-new")

    await tab.button("case_acknowledge")
    await expect(page.get_by_role("status")).to_have_text(t["case_done_acknowledge"])
    await expect(status).to_have_text(t["case_status_acknowledged"])
    await tab.check()

    await page.locator("#note").fill(f"Called the customer back <i>{key}</i>")
    await tab.button("case_add_note")
    await expect(page.get_by_role("status")).to_have_text(t["case_done_note"])
    await expect(page.locator(".case-history .case-note")).to_have_text(f"Called the customer back <i>{key}</i>")
    await tab.check()

    await page.locator("#assignee").select_option(label="Bo")
    await tab.button("case_assign")
    await expect(page.get_by_role("status")).to_have_text(t["case_done_assign"])
    assignee = page.locator(".case-facts dt", has_text=t["case_col_assignee"]).locator("xpath=following-sibling::dd[1]")
    await expect(assignee).to_have_text("Bo")
    await expect(page.locator(".case-history")).to_contain_text(t["case_event_assigned"].format(name="Bo"))
    await tab.check()

    await page.locator("#code").select_option("explained")
    await page.locator("#resolve-note").fill("Explained the new queue tickets")
    await tab.button("case_resolve")
    await expect(page.get_by_role("status")).to_have_text(t["case_done_resolve"])
    await expect(status).to_have_text(f"{t['case_status_resolved']} · {t['case_resolution']}: "
                                      f"{t['case_code_explained']}")  # fmt: skip
    await expect(page.get_by_role("button", name=t["case_resolve"], exact=True)).to_have_count(0)
    await tab.check("case-resolved")

    await page.get_by_role("link", name=t["case_back"], exact=True).click()
    await expect(page.locator("h1")).to_have_text(t["cases_title"])
    await expect(queue_link(tab, case_id)).to_have_count(0)  # the open view no longer lists it
    await page.locator(".case-views").get_by_role("link", name=re.compile(t["cases_status_closed"])).click()
    await expect(page.locator("tr.case-row", has=queue_link(tab, case_id))).to_contain_text(t["case_status_resolved"])
    await tab.check("queue-closed")


# -- the outer loop: a ticket from open to verified -----------------------------------------------------------


@pytest.mark.parametrize("device", [DESKTOP_ZH, PHONE_EN], ids=["desktop-zh", "phone-en"])
async def test_a_manager_moves_a_ticket_from_open_to_verified(open_tab, console, device):
    key = device.name
    ticket_id = console.tickets[key]
    tab = await open_tab(device, "ticket")
    page, t = tab.page, tab.t
    await sign_in(tab, "boss")
    await page.locator("nav.areas").get_by_role("link", name=t["nav_tickets"], exact=True).click()
    await expect(page.locator("h1")).to_have_text(t["tickets_title"])
    card = page.locator("li.ticket-card", has=page.get_by_role("link", name=f"Long queues at Main ({key})"))
    await expect(card.locator(".ticket-status")).to_have_text(t["ticket_status_open"])
    await tab.check("board")

    await card.get_by_role("link", name=f"Long queues at Main ({key})").click()
    await expect(page).to_have_url(re.compile(f"/console/tickets/{ticket_id}$"))
    status = page.locator(".ticket-summary .ticket-status")
    await expect(status).to_have_text(t["ticket_status_open"])
    quotes = page.locator(".ticket-quotes blockquote", has_text=HOSTILE)
    await expect(quotes).to_have_count(1)
    assert await quotes.locator("b, script").count() == 0, "the quote's markup became elements"
    bars = page.locator("svg.ticket-chart rect.bar")
    await expect(bars).to_have_count(4)
    assert (await bars.last.bounding_box())["height"] > 0
    await tab.check("ticket-open")

    await tab.button("ticket_start")
    await expect(page.get_by_role("status")).to_have_text(t["ticket_done_start"])
    await expect(status).to_have_text(t["ticket_status_in_progress"])

    await page.locator("#comment-body").fill(f"Second teller from Monday <b>{key}</b>")
    await tab.button("ticket_comment_send")
    await expect(page.get_by_role("status")).to_have_text(t["ticket_done_comment"])
    await expect(page.locator(".ticket-history .ticket-note")).to_have_text(f"Second teller from Monday <b>{key}</b>")
    await expect(status).to_have_text(t["ticket_status_in_progress"])
    await tab.check()

    await page.locator("#resolve-note").fill("Second teller in place")
    await tab.button("ticket_resolve")
    await expect(page.get_by_role("status")).to_have_text(t["ticket_done_resolve"])
    await expect(status).to_have_text(t["ticket_status_resolved"])

    await tab.button("ticket_verify")
    await expect(page.get_by_role("status")).to_have_text(t["ticket_done_verify"])
    await expect(status).to_have_text(t["ticket_status_verified"])
    await expect(page.get_by_role("button", name=t["ticket_verify"], exact=True)).to_have_count(0)
    history = page.locator(".ticket-history")
    for event in ("started", "comment", "resolved", "verified"):
        await expect(history).to_contain_text(t[f"ticket_event_{event}"])
    await tab.check("ticket-verified")


# -- the dashboard --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", [DESKTOP_EN, PHONE_ZH], ids=["desktop-en", "phone-zh"])
async def test_dashboard_charts_render_and_a_bar_opens_the_feedback_it_counts(open_tab, device):
    tab = await open_tab(device, "dashboard")
    page, t = tab.page, tab.t
    await sign_in(tab, "boss")
    await page.locator("nav.areas").get_by_role("link", name=t["nav_dashboard"], exact=True).click()
    await expect(page.locator("h1")).to_contain_text(t["dash_title"])
    charts = page.locator("svg.chart")
    await expect(charts).to_have_count(5)  # CSAT, NPS, volume, categories, sentiment: all above the minimum
    for i in range(5):
        box = await charts.nth(i).bounding_box() or {"width": 0, "height": 0}
        assert box["width"] > 100, f"chart {i} has no width"
        assert box["height"] > 50, f"chart {i} has no height"
    await tab.check("dashboard")

    for caption, mark in (("dash_csat_trend", "circle.chart-point"), ("dash_nps_trend", "polyline.chart-line"),
                          ("dash_volume_chart", "rect.chart-bar"), ("dash_categories", "rect.chart-bar")):  # fmt: skip
        boxes = [await shape.bounding_box() for shape in await chart(tab, caption).locator(mark).all()]
        assert any(box and box["width"] > 0 and box["height"] > 0 for box in boxes), f"{caption}: {boxes}"

    for caption in ("dash_volume_chart", "dash_categories"):
        await drill_down(tab, caption)


def chart(tab: Tab, caption: str) -> Locator:
    return tab.page.locator("figure.dash-chart", has=tab.page.get_by_text(tab.t[caption], exact=True)).locator("svg")


async def drill_down(tab: Tab, caption: str) -> None:
    """Click the chart's biggest bar: the feedback list opens with exactly the count its tooltip gave."""
    page = tab.page
    bars = chart(tab, caption).locator("a rect.chart-bar")
    counts = [last_number(await bars.nth(i).locator("title").text_content()) for i in range(await bars.count())]
    assert max(counts, default=0) > 0, caption
    biggest = counts.index(max(counts))
    await bars.nth(biggest).click()
    await expect(page).to_have_url(re.compile(r"/console/feedback\?"))
    await expect(page.locator("#feedback-count")).to_have_attribute("data-count", str(max(counts)))
    await expect(page.locator("#feedback-count")).to_have_text(tab.t["fb_count"].format(count=max(counts)))
    await tab.check(f"feedback-{caption.removeprefix('dash_')}")
    await page.go_back()
    await expect(page.locator("svg.chart")).to_have_count(5)


# -- the audit log -------------------------------------------------------------------------------------------


async def test_an_admin_finds_a_note_just_added_in_the_audit_log_on_a_phone(open_tab, console):
    case_id = console.cases["signout"]
    tab = await open_tab(PHONE_EN, "audit")
    page, t = tab.page, tab.t
    await sign_in(tab, "root")
    await tab.goto(f"/console/cases/{case_id}")
    await page.locator("#note").fill("Checked by the admin")
    await tab.button("case_add_note")
    await expect(page.get_by_role("status")).to_have_text(t["case_done_note"])

    await page.locator("nav.areas").get_by_role("link", name=t["nav_audit"], exact=True).click()
    await expect(page.locator("h1")).to_have_text(t["audit_title"])
    await page.get_by_label(t["audit_action"]).fill("case.note")
    await tab.button("audit_filter")
    entry = page.locator(".audit-table > tbody > tr").first
    await expect(entry).to_contain_text("case.note")
    await expect(entry).to_contain_text(f"case #{case_id}")
    await expect(entry).to_contain_text("root")  # the username: who signed in
    await tab.check("audit")


# -- signing out and switching the language -------------------------------------------------------------------


async def test_after_signing_out_the_back_button_shows_no_case_data(open_tab, console):
    case_id = console.cases["signout"]
    tab = await open_tab(DESKTOP_EN, "signout")
    page, t = tab.page, tab.t
    await sign_in(tab, "clerk")
    response = await tab.goto(f"/console/cases/{case_id}")
    assert response is not None
    assert response.headers["cache-control"] == "no-store"
    await expect(page.locator("blockquote.case-comment")).to_contain_text("nobody called back (signout)")
    await tab.button("sign_out")
    await expect(page.get_by_role("status")).to_have_text(t["signed_out"])
    await tab.check("signed-out")

    await page.go_back()
    await expect(page.locator("h1")).to_have_text(t["sign_in"])
    assert "nobody called back" not in await page.content(), "the signed-out browser still shows the case"
    await page.reload()
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))
    assert "nobody called back" not in await page.content()


async def test_the_language_link_redraws_the_console_in_chinese_and_back(open_tab):
    tab = await open_tab(DESKTOP_EN, "language")
    page = tab.page
    await sign_in(tab, "clerk")
    await expect(page.locator("h1")).to_have_text("Cases")
    await page.locator("header").get_by_role("link", name="中文", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/console/cases$"))
    await expect(page.locator("h1")).to_have_text(texts("zh")["cases_title"])
    await expect(page.locator("nav.areas")).to_contain_text(texts("zh")["nav_dashboard"])
    assert await page.get_attribute("html", "lang") == "zh-CN"
    await page.locator("header").get_by_role("link", name="English", exact=True).click()
    await expect(page.locator("h1")).to_have_text("Cases")
    await tab.check("queue-after-switch")
