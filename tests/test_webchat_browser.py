"""The web chat in a real browser: Debian's Chromium driven by Playwright, scripts on and off, both languages.

The real app is served on 127.0.0.1; nothing leaves the machine. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, async_playwright, expect

from config.app import create_app, load_catalog
from config.settings import load_settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# As root Chromium needs --no-sandbox; the rest keep it from reaching for Google's hosts on a closed network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "<script>alert(1)</script>"


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is absent: install Debian's chromium package to run the browser tests"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run them; .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def base_url(database_url, tmp_path) -> AsyncIterator[str]:
    settings = load_settings(
        {
            "CLOSELOOP_DATABASE_URL": database_url,
            "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
            "CLOSELOOP_NLP_WORKER": "false",  # these tests need no model
        }
    )
    async with TestServer(create_app(settings, load_catalog(settings)), host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


class Watch:
    """What must not happen on the page: a JS dialog (an XSS would fire one), a script error, a CSP violation."""

    def __init__(self, page: Page) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._on_dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._on_console)

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        asyncio.ensure_future(dialog.dismiss())  # noqa: RUF006 -- Playwright keeps the page blocked until dismissed

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def assert_quiet(self) -> None:
        assert self.dialogs == [], f"a JS dialog fired: {self.dialogs}"
        assert self.errors == []


async def press(page: Page, label: str) -> None:
    await page.locator("#prompt").get_by_role("button", name=label, exact=True).click()


async def answer_followup_if_asked(page: Page, question: str, after: str, other: str) -> None:
    chat = page.locator("#chat")
    await expect(chat).to_contain_text(re.compile(f"{re.escape(question)}|{re.escape(after)}"))
    if await page.locator("#prompt").get_by_role("button", name=other, exact=True).count():
        await press(page, other)


async def screenshot(page: Page, request: pytest.FixtureRequest, suffix: str = "") -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    await page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)


async def survey_in_english(page: Page) -> None:
    """Consent, a 5, a comment with markup in it, the follow-up if asked; ends on the thank-you."""
    chat = page.locator("#chat")
    await expect(chat).to_contain_text("OK to continue?")
    await press(page, "Yes")
    await expect(chat).to_contain_text("how satisfied are you")
    await press(page, "5")
    await page.locator("#prompt textarea").fill(f"{XSS} the teller was friendly")
    await press(page, "Send")
    await answer_followup_if_asked(page, "Which of these", "Thank you!", "Something else")
    await expect(chat).to_contain_text("Thank you! Your feedback goes to the branch team")
    await expect(chat).to_contain_text(f"{XSS} the teller was friendly")


async def test_whole_survey_with_scripts_on_redraws_the_chat_without_reloading(browser, base_url, request):
    context = await browser.new_context(locale="en-GB", viewport={"width": 390, "height": 844})
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(f"{base_url}/c/MAIN/C1")
    await page.evaluate("window.stillTheSamePage = true")
    await survey_in_english(page)
    assert await page.evaluate("window.stillTheSamePage") is True, "the answers went by fetch, not by reloading"
    assert await page.locator("#prompt form").count() == 0
    await screenshot(page, request)
    watch.assert_quiet()
    await context.close()


async def test_whole_survey_with_scripts_off_works_as_plain_forms(browser, base_url, request):
    context = await browser.new_context(java_script_enabled=False, locale="en-US")
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(f"{base_url}/c/MAIN")
    await survey_in_english(page)
    await screenshot(page, request)
    await page.reload()  # the browser resends the last form: handled once, no error
    await expect(page.locator("#chat")).not_to_contain_text("earlier question")
    await screenshot(page, request, "-after-reload")
    watch.assert_quiet()
    await context.close()


async def test_whole_survey_in_chinese_with_a_callback(browser, base_url, request):
    context = await browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(f"{base_url}/c/EAST/ATM")
    chat = page.locator("#chat")
    assert await page.get_attribute("html", "lang") == "zh-CN"
    await expect(chat).to_contain_text("可以开始吗")
    await press(page, "是")
    await press(page, "1")
    await page.locator("#prompt textarea").fill(XSS)
    await press(page, "发送")
    await answer_followup_if_asked(page, "主要是关于以下哪个方面", "需要我们的工作人员给您回电吗", "其他")
    await expect(chat).to_contain_text("需要我们的工作人员给您回电吗")
    await press(page, "是")
    await page.locator("#prompt input[type=tel]").fill("138 0013 8000")
    await press(page, "发送")
    await expect(chat).to_contain_text("谢谢您！工作人员通常会在一个工作日内给您回电。")
    await expect(chat).to_contain_text(XSS)
    assert await page.get_attribute("html", "lang") == "zh-CN"
    await screenshot(page, request)
    watch.assert_quiet()
    await context.close()


async def test_language_switch_in_the_footer_redraws_the_page_in_chinese(browser, base_url, request):
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(f"{base_url}/c/MAIN/C2")
    await page.locator("footer").get_by_role("button", name="中文", exact=True).click()
    await expect(page.locator("#chat")).to_contain_text("可以开始吗")
    await expect(page.locator("footer")).to_contain_text("结束问卷")
    assert await page.get_attribute("html", "lang") == "zh-CN"
    await screenshot(page, request)
    watch.assert_quiet()
    await context.close()
