"""Telegram end to end: the real python-telegram-bot over real HTTP against a local Bot API stand-in.

The whole product runs as in production (create_app, the engine, the database); only Telegram's servers are
replaced, by tests/support/botapi.py. Both polling and webhook modes, both languages, both databases.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select
from support.botapi import BotApiStandIn, SentMessage

from config.app import WEBHOOK_PATH, create_app, load_catalog
from config.settings import load_settings
from store import Database
from store.models import Answer, Conversation, ConversationStatus, Feedback

TOKEN = "123456:TEST-token"
SECRET = "webhook-secret_1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Product:
    api: BotApiStandIn
    database_url: str
    base_url: str

    async def count(self, model, *where) -> int:
        database = Database(self.database_url)
        try:
            async with database.sessions() as session:
                return await session.scalar(select(func.count()).select_from(model).where(*where))
        finally:
            await database.dispose()

    async def feedback(self) -> Feedback:
        database = Database(self.database_url)
        try:
            async with database.sessions() as session:
                return (await session.scalars(select(Feedback))).one()
        finally:
            await database.dispose()


async def run_product(api: BotApiStandIn, database_url: str, tmp_path, *, webhook: bool) -> AsyncIterator[Product]:
    port = free_port()
    environ = {
        "CLOSELOOP_DATABASE_URL": database_url,
        "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
        "CLOSELOOP_HTTP_PORT": str(port),
        "CLOSELOOP_TELEGRAM_TOKEN": TOKEN,
        "CLOSELOOP_TELEGRAM_API_URL": api.base_url,
        "CLOSELOOP_NLP_WORKER": "false",
    }
    if webhook:
        environ["CLOSELOOP_TELEGRAM_WEBHOOK_URL"] = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        environ["CLOSELOOP_TELEGRAM_WEBHOOK_SECRET"] = SECRET
    settings = load_settings(environ)
    runner = web.AppRunner(create_app(settings, load_catalog(settings)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Product(api, database_url, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


@pytest.fixture(params=["polling", "webhook"])
async def product(request, api, database_url, tmp_path) -> AsyncIterator[Product]:
    async for running in run_product(api, database_url, tmp_path, webhook=request.param == "webhook"):
        yield running


@pytest.fixture
async def webhook_product(api, database_url, tmp_path) -> AsyncIterator[Product]:
    async for running in run_product(api, database_url, tmp_path, webhook=True):
        yield running


class Customer:
    """A Telegram user talking to the bot through the stand-in, reading what the bot sends back."""

    def __init__(self, api: BotApiStandIn, user_id: int, language: str = "en") -> None:
        self.api, self.user_id, self.language = api, user_id, language
        self.seen = 0
        self.last: list[SentMessage] = []

    async def _await_replies(self, count: int) -> list[str]:
        messages = await self.api.wait_for_messages(self.user_id, self.seen + count)
        self.last = messages[self.seen : self.seen + count]
        self.seen += count
        return [m.text for m in self.last]

    async def says(self, text: str, *, replies: int = 1) -> list[str]:
        await self.api.user_sends_text(self.user_id, text, language_code=self.language)
        return await self._await_replies(replies)

    async def presses(self, label: str, *, replies: int = 1) -> list[str]:
        for message in reversed(self.last):
            for button in message.buttons:
                if button["text"] == label:
                    await self.api.user_presses_button(self.user_id, message, button["callback_data"])
                    return await self._await_replies(replies)
        raise AssertionError(f"no button {label!r} in {[m.text for m in self.last]}")


async def test_a_whole_survey_in_english(product):
    alice = Customer(product.api, 501)
    [consent] = await alice.says("/start MAIN-C1")
    assert consent.startswith("Hi! We'd love to hear about your visit")
    assert [b["text"] for b in alice.last[0].buttons] == ["Yes", "No", "中文"]
    await alice.presses("Yes")
    await alice.presses("4")
    [thanks] = await alice.says("The advisor explained the fees clearly and the queue was short")
    assert thanks.startswith("Thank you! Your feedback goes to the branch team")
    feedback = await product.feedback()
    assert (feedback.csat, feedback.language) == (4, "en")
    assert await product.api.wait_for_calls("answerCallbackQuery", 2)


async def test_a_whole_survey_in_chinese_with_a_callback(product):
    wang = Customer(product.api, 502, language="zh-hans")
    [consent] = await wang.says("/start EAST")
    assert "可以开始吗" in consent
    await wang.presses("是")
    await wang.presses("1")
    [followup] = await wang.says("很差")
    assert followup == "谢谢。主要是关于以下哪个方面？"
    [may_we_write] = await wang.presses("员工态度")
    assert may_we_write == "如果我们对此有答复或问题，工作人员可以在这个对话中给您发消息吗？"
    [callback] = await wang.presses("否")
    assert callback == "需要我们的工作人员给您回电吗？"
    [offer] = await wang.presses("是")
    assert offer == "请分享您的手机号码（点击按钮）或直接输入。"
    keyboard = wang.last[0].reply_markup["keyboard"]
    assert keyboard[0][0]["request_contact"] is True
    await product.api.user_shares_contact(502, "+8613800138000")
    [done] = await wang._await_replies(1)
    assert done == "谢谢您！工作人员通常会在一个工作日内给您回电。"
    assert wang.last[0].reply_markup == {"remove_keyboard": True}
    feedback = await product.feedback()
    assert feedback.language == "zh"
    assert (feedback.customer_category, feedback.contact_phone) == ("staff_attitude", "+8613800138000")
    assert feedback.reply_chat is None, "no to writing here: no chat is kept"


async def test_media_edits_and_huge_messages_are_answered_politely(product):
    dan = Customer(product.api, 503)
    await dan.says("/start MAIN")
    await dan.presses("Yes")
    await dan.presses("2")
    for send in (product.api.user_sends_sticker, product.api.user_sends_photo, product.api.user_sends_voice):
        await send(503)
        hint, question = await dan._await_replies(2)
        assert hint == "I can only read text here — please type your answer."
        assert question == "Sorry it wasn't better. What went wrong?"
    await product.api.user_sends_location(503, 31.23, 121.47)
    assert (await dan._await_replies(2))[0].startswith("I can only read text here")
    message = (await product.api.user_sends_text(503, "first words"))["message"]
    await dan._await_replies(1)
    await product.api.user_edits_message(503, message["message_id"], "edited words")
    [notice] = await dan._await_replies(1)
    assert notice.startswith("I saw you edited a message")
    assert await product.count(Answer, Answer.step == "what_went_wrong") == 1


async def test_long_text_is_truncated_with_a_notice(product):
    fay = Customer(product.api, 504)
    await fay.says("/start MAIN")
    await fay.presses("Yes")
    await fay.presses("3")
    notice, *_ = await fay.says("the queue " * 10_000, replies=2)
    assert notice == "Your message was long, so I kept the first 2000 characters."


async def test_forged_button_data_is_refused_and_the_state_kept(product):
    eve = Customer(product.api, 505)
    await eve.says("/start MAIN")
    await eve.presses("Yes")
    await product.api.user_presses_button(505, eve.last[0], "a|1|csat|99")
    notice, question = await eve._await_replies(2)
    assert notice == "Sorry, I couldn't read that button."
    assert question.startswith("Overall, how satisfied")


async def test_group_chats_get_one_line_and_nothing_else(product):
    await product.api.user_sends_text(506, "/start MAIN", chat_type="group")
    [reply] = await product.api.wait_for_messages(-506, 1)
    assert reply.text == "I only take feedback in a private chat. Please message me directly."
    await product.api.user_sends_text(506, "hello everyone", chat_type="group")
    assert await product.count(Conversation) == 0


async def test_privacy_commands(product):
    may = Customer(product.api, 507)
    await may.says("/start MAIN")
    await may.presses("Yes")
    [mine] = await may.says("/mydata")
    assert mine.startswith("What we hold about you")
    [confirm] = await may.says("/forget")
    assert confirm.startswith("Erase everything we hold about you")
    [done] = await may.presses("Yes")
    assert done == "Done: your data has been erased."
    [nothing] = await may.says("/mydata")
    assert nothing == "We hold no data about you."


async def test_blocked_user_ends_the_conversation_quietly(product):
    ben = Customer(product.api, 508)
    await ben.says("/start MAIN")
    await ben.presses("Yes")
    product.api.block(508)
    await product.api.user_sends_text(508, "4")
    await product.api.wait_for_calls("sendMessage", count=len(product.api.sent) + 1)
    for _ in range(50):
        if await product.count(Conversation, Conversation.status == ConversationStatus.CANCELLED) == 1:
            break
        await asyncio.sleep(0.05)
    assert await product.count(Conversation, Conversation.status == ConversationStatus.CANCELLED) == 1


async def test_a_redelivered_webhook_update_is_handled_once(webhook_product):
    api = webhook_product.api
    kim = Customer(api, 509)
    await kim.says("/start MAIN")
    await kim.presses("Yes")
    update = await api.user_sends_text(509, "5")
    await kim._await_replies(1)
    assert await api.deliver_again(update) == 200
    assert await api.deliver_again(update) == 200
    assert await webhook_product.count(Answer, Answer.step == "csat") == 1
    await kim.says("/help")
    assert len(api.sent) == kim.seen, "the redeliveries sent nothing"


async def test_webhook_without_the_right_secret_is_forbidden(webhook_product):
    api = webhook_product.api
    api.auto_deliver = False
    update = await api.user_sends_text(510, "/start MAIN")
    assert await api.post_to_webhook(update, secret=None) == 403
    assert await api.post_to_webhook(update, secret="wrong") == 403
    assert api.sent == []
    assert await api.post_to_webhook(update, secret=SECRET) == 200


async def test_webhook_rejects_a_body_that_is_not_an_update(webhook_product):
    async with aiohttp.ClientSession() as session:
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
        async with session.post(webhook_product.base_url + WEBHOOK_PATH, data=b"\xff\xfe", headers=headers) as r:
            assert r.status == 400


async def test_a_429_from_telegram_is_waited_out_and_the_reply_still_sent(webhook_product):
    api = webhook_product.api
    api.rate_limit_next(1, retry_after=1)
    sam = Customer(api, 511)
    [consent] = await sam.says("/start MAIN")
    assert consent.startswith("Hi! We'd love")
    assert [c.status for c in api.calls if c.method == "sendMessage"] == [429, 200]
