"""The Bot API stand-in speaks well enough for the real python-telegram-bot 22.8: polling, webhooks, errors."""

import asyncio
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from support.botapi import BotApiStandIn
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Conflict, Forbidden, RetryAfter
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

TOKEN = "123:ABC"
USER = 42
SECRET = "s3cret-token"


def build_application(api: BotApiStandIn, builder: ApplicationBuilder | None = None) -> Application:
    builder = builder or ApplicationBuilder()
    application = builder.token(TOKEN).base_url(api.base_url).base_file_url(api.base_file_url).build()
    application.add_handler(CommandHandler("start", reply_start))
    application.add_handler(CommandHandler("rate", ask_rating))
    application.add_handler(CallbackQueryHandler(thank_for_rating))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    return application


async def reply_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(f"welcome, payload={context.args}")


async def ask_rating(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    buttons = [[InlineKeyboardButton(str(n), callback_data=f"rate:{n}") for n in range(1, 6)]]
    await update.effective_message.reply_text("How was it?", reply_markup=InlineKeyboardMarkup(buttons))


async def thank_for_rating(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    await query.answer()
    await query.edit_message_reply_markup(None)
    await query.message.reply_text(f"thanks for {query.data}")


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(update.effective_message.text)


@pytest.fixture
async def polling_bot(api: BotApiStandIn) -> AsyncIterator[Application]:
    application = build_application(api)
    async with application:
        await application.start()
        await application.updater.start_polling(poll_interval=0)
        yield application
        await application.updater.stop()
        await application.stop()


async def test_polling_bot_echoes_text(api, polling_bot):
    await api.user_sends_text(USER, "the queue was long")
    [reply] = await api.wait_for_messages(USER, 1)
    assert (reply.method, reply.text, reply.message_id) == ("sendMessage", "the queue was long", 2)
    assert api.last_message(USER) == reply


async def test_start_command_carries_its_payload(api, polling_bot):
    update = await api.user_sends_text(USER, "/start branch-7", language_code="zh-hans")
    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    [reply] = await api.wait_for_messages(USER, 1)
    assert reply.text == "welcome, payload=['branch-7']"


async def test_button_press_round_trip(api, polling_bot):
    await api.user_sends_text(USER, "/rate")
    [question] = await api.wait_for_messages(USER, 1)
    assert [b["callback_data"] for b in question.buttons] == ["rate:1", "rate:2", "rate:3", "rate:4", "rate:5"]

    update = await api.user_presses_button(USER, question, "rate:4")
    assert update["callback_query"]["message"]["reply_markup"] == question.reply_markup

    messages = await api.wait_for_messages(USER, 2)
    assert messages[-1].text == "thanks for rate:4"
    [answer] = await api.wait_for_calls("answerCallbackQuery")
    assert answer.params["callback_query_id"] == update["callback_query"]["id"]
    assert [edit.method for edit in api.edits] == ["editMessageReplyMarkup"]
    assert "reply_markup" not in api.message(USER, question.message_id)


async def test_other_user_actions_reach_the_bot_as_real_updates(api):
    application = build_application(api)
    seen: list[Update] = []

    async def collect(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(update)

    application.add_handler(MessageHandler(~filters.TEXT, collect), group=1)
    application.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE, collect), group=2)
    async with application:
        original = await api.user_sends_text(USER, "fine")
        await api.user_shares_contact(USER, "+8613800138000")
        await api.user_sends_sticker(USER)
        await api.user_sends_photo(USER, caption="the counter")
        await api.user_sends_voice(USER)
        await api.user_sends_location(USER, 31.23, 121.47)
        await api.user_edits_message(USER, original["message"]["message_id"], "not fine")
        for raw in (await application.bot.get_updates())[1:]:
            await application.process_update(raw)
    message = [update.effective_message for update in seen]
    assert message[0].contact.phone_number == "+8613800138000"
    assert message[1].sticker.emoji == "👍"
    assert (message[2].photo[-1].width, message[2].caption) == (1280, "the counter")
    assert message[3].voice.duration.total_seconds() == 3
    assert message[4].location.latitude == pytest.approx(31.23)
    assert (seen[5].edited_message.text, seen[5].edited_message.message_id) == ("not fine", 1)


async def test_get_me_and_commands(api):
    async with build_application(api) as application:
        assert (application.bot.id, application.bot.username) == (123, "closeloop_test_bot")
        await application.bot.set_my_commands([("start", "Begin"), ("rate", "Rate us")])
        assert [c.command for c in await application.bot.get_my_commands()] == ["start", "rate"]
        await application.bot.send_chat_action(USER, "typing")
        assert [call.method for call in api.calls] == ["getMe", "setMyCommands", "getMyCommands", "sendChatAction"]


async def test_uploads_are_recorded_by_name_and_size(api):
    async with build_application(api) as application:
        await application.bot.send_document(USER, io.BytesIO(b"a,b\n1,2\n"), filename="digest.csv", caption="weekly")
        await application.bot.send_photo(USER, io.BytesIO(b"\x89PNG" + bytes(96)), filename="chart.png")
    document, photo = api.sent
    assert (document.method, document.file_name, document.file_size, document.text) == (
        "sendDocument",
        "digest.csv",
        8,
        "weekly",
    )
    assert (photo.method, photo.file_name, photo.file_size) == ("sendPhoto", "chart.png", 100)


async def test_blocked_user_gives_forbidden(api):
    api.block(USER)
    async with build_application(api) as application:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await application.bot.send_message(USER, "hello?")
    assert api.sent == []
    assert api.calls[-1].status == 403


async def test_rate_limit_raises_retry_after_once(api):
    api.rate_limit_next(1, retry_after=3)
    async with build_application(api) as application:
        with pytest.raises(RetryAfter) as caught:
            await application.bot.send_message(USER, "first")
        assert caught.value.retry_after.total_seconds() == 3
        await application.bot.send_message(USER, "second")
    assert [m.text for m in api.sent] == ["second"]


async def test_rate_limiter_retries_after_429(api):
    api.rate_limit_next(1, retry_after=1)
    builder = ApplicationBuilder().rate_limiter(AIORateLimiter(max_retries=1))
    async with build_application(api, builder) as application:
        await application.bot.send_message(USER, "patient")
    assert [call.status for call in api.calls if call.method == "sendMessage"] == [429, 200]


async def test_get_updates_conflicts_while_webhook_is_set(api):
    async with build_application(api) as application:
        await application.bot.set_webhook("http://127.0.0.1:9/telegram", secret_token=SECRET)
        with pytest.raises(Conflict):
            await application.bot.get_updates()
        info = await application.bot.get_webhook_info()
        assert info.url == "http://127.0.0.1:9/telegram"
        await application.bot.delete_webhook()
        assert await application.bot.get_updates() == ()


async def test_unknown_method_and_bad_token_answer_404(api):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api.base_url}{TOKEN}/sendTelepathy") as response:
            assert (response.status, await response.json()) == (
                404,
                {"ok": False, "error_code": 404, "description": "Not Found: method not found"},
            )
        async with session.post(f"{api.base_url}not-a-token/getMe") as response:
            assert response.status == 404


async def test_editing_to_the_same_content_is_refused_like_telegram(api):
    async with build_application(api) as application:
        message = await application.bot.send_message(USER, "same")
        with pytest.raises(BadRequest, match="Message is not modified"):
            await application.bot.edit_message_text("same", chat_id=USER, message_id=message.message_id)
        edited = await application.bot.edit_message_text("new", chat_id=USER, message_id=message.message_id)
    assert edited.text == "new"
    assert api.edits[-1].text == "new"


async def test_stop_does_not_hang_on_a_pending_long_poll():
    async with BotApiStandIn() as standin, aiohttp.ClientSession() as session:
        poll = asyncio.create_task(session.post(f"{standin.base_url}{TOKEN}/getUpdates", data={"timeout": "30"}))
        await asyncio.sleep(0.1)  # let the request reach the server
        async with asyncio.timeout(2):
            await standin.stop()
            response = await poll
        assert (await response.json())["result"] == []


# Webhook mode: our own aiohttp app receives the POST and feeds PTB's update queue (the "custom webhook bot").

TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_app(application: Application) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        if request.headers.get(TELEGRAM_SECRET_HEADER) != SECRET:
            return web.Response(status=403)
        await application.update_queue.put(Update.de_json(await request.json(), application.bot))
        return web.Response()

    app = web.Application()
    app.router.add_post("/telegram", receive)
    return app


@pytest.fixture
async def webhook_bot(api, aiohttp_server) -> AsyncIterator[Application]:
    application = build_application(api, ApplicationBuilder().updater(None))
    server = await aiohttp_server(webhook_app(application))
    async with application:
        await application.start()
        await application.bot.set_webhook(str(server.make_url("/telegram")), secret_token=SECRET)
        yield application
        await application.stop()


async def test_webhook_delivers_updates_with_the_secret(api, webhook_bot):
    update = await api.user_sends_text(USER, "via webhook")
    [reply] = await api.wait_for_messages(USER, 1)
    assert reply.text == "via webhook"
    [delivery] = api.webhook_deliveries
    assert (delivery.update_id, delivery.status, delivery.secret) == (update["update_id"], 200, SECRET)


async def test_webhook_with_wrong_secret_is_refused_and_recorded(api, webhook_bot):
    api.auto_deliver = False
    update = await api.user_sends_text(USER, "spoofed")
    assert await api.post_to_webhook(update, secret="wrong") == 403
    assert await api.post_to_webhook(update, secret=None) == 403
    assert [(d.status, d.secret) for d in api.webhook_deliveries] == [(403, "wrong"), (403, None)]
    assert await api.deliver_pending() == [200]
    assert await api.deliver_again(update) == 200
    messages = await api.wait_for_messages(USER, 2)
    assert [m.text for m in messages] == ["spoofed", "spoofed"]  # no dedup in this toy bot: redelivery is visible


async def test_wait_for_messages_reports_what_arrived_on_timeout(api):
    with pytest.raises(AssertionError, match=r"expected 1 message\(s\) to chat 42 within 0.05s; got \[\]"):
        await api.wait_for_messages(USER, 1, timeout=0.05)
