"""Telegram through python-telegram-bot: updates become engine events, replies become messages.

Polling and webhook modes share one path. In webhook mode an update is stored (one INSERT) before Telegram
gets its 200, then handled by a worker lane chosen by the customer, so one customer's updates keep their order
while different customers' run side by side. A database failure answers 503 so Telegram delivers it again; an
update stored but not handled (the process stopped) is found by a sweep and handled then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, TypeHandler

from bot.channels import invites
from bot.engine import ConversationUnavailableError, Engine
from bot.events import Incoming, Kind, Reply
from bot.texts import TEXTS, pick_language, text
from store import Database

log = logging.getLogger(__name__)

CHANNEL = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
COMMANDS = ("start", "help", "language", "cancel", "mydata", "forget")
COMMAND_HELP = {
    "en": (
        "Give feedback",
        "What I do",
        "English / 中文",
        "Stop the survey",
        "What you hold about me",
        "Erase my data",
    ),
    "zh": ("提交意见", "使用说明", "English / 中文", "结束问卷", "查看我的信息", "删除我的信息"),
}


@dataclass(frozen=True, slots=True)
class TelegramOptions:
    token: str
    api_url: str = "https://api.telegram.org/bot"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    max_messages_per_second: float = 30.0  # Telegram's own limit for one bot; 0 turns the limiter off
    concurrent_updates: int = 64
    lanes: int = 8  # webhook workers; few on SQLite (one writer), more on PostgreSQL
    sweep_seconds: float = 5.0  # how often to look for stored updates nobody handled


class TelegramStartError(Exception):
    """Telegram could not be reached or refused the token; the message says which."""


class TelegramChannel:
    def __init__(self, engine: Engine, options: TelegramOptions, *, database: Database | None = None) -> None:
        """Serve customers through `engine`; with a `database`, also bind managers' chats by invite code."""
        self._engine = engine
        self._invites = invites.Invites(database, CHANNEL) if database is not None else None
        self.options = options
        self.application = _build_application(options)
        self.application.add_handler(TypeHandler(Update, self._on_polled_update))
        self.application.add_error_handler(_log_error)
        self._lanes: list[asyncio.Queue[tuple[str, dict[str, Any]]]] = []
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def is_webhook(self) -> bool:
        return self.options.webhook_url is not None

    async def start(self) -> None:
        """Connect (getMe), then either register the webhook or start long polling."""
        application = self.application
        try:
            await application.initialize()
        except TelegramError as exc:
            raise TelegramStartError(
                f"cannot connect to the Telegram Bot API at {self.options.api_url}: {exc}"
            ) from exc
        if self.is_webhook:
            await application.bot.set_webhook(
                self.options.webhook_url, secret_token=self.options.webhook_secret, allowed_updates=ALLOWED_UPDATES
            )
        else:
            await application.bot.delete_webhook()
            await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES, poll_interval=0)
        await application.start()
        if self.is_webhook:
            self._lanes = [asyncio.Queue() for _ in range(self.options.lanes)]
            self._tasks = [
                asyncio.create_task(self._work(lane), name=f"telegram-lane-{i}") for i, lane in enumerate(self._lanes)
            ]
            self._tasks.append(asyncio.create_task(self._sweep(), name="telegram-sweep"))
        await self._publish_commands()
        log.info("telegram: @%s in %s mode", application.bot.username, "webhook" if self.is_webhook else "polling")

    async def stop(self) -> None:
        """Stop fetching, finish what is in flight (replies included), and close the connections."""
        application = self.application
        if self._lanes:
            # Let the lanes finish what they hold; anything left is stored and picked up at the next start.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.gather(*(lane.join() for lane in self._lanes))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        await application.shutdown()

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """Receive one update: 200 once it is stored, 403 without the right secret, 503 when storing failed."""
        secret = self.options.webhook_secret or ""
        if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), secret.encode()):
            raise web.HTTPForbidden(text="wrong or missing secret token")
        try:
            payload = await request.json()
            event_id = str(int(payload["update_id"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise web.HTTPBadRequest(text="not a Telegram update") from exc
        try:
            is_new = await self._engine.accept(CHANNEL, event_id, payload)
        except ConversationUnavailableError:
            log.warning("telegram: update %s not stored; asking Telegram to deliver it again", event_id)
            raise web.HTTPServiceUnavailable(text="storage unavailable, retry later") from None
        if is_new:
            self._enqueue(event_id, payload)
        return web.Response(text="ok")

    def _enqueue(self, event_id: str, payload: dict[str, Any]) -> None:
        if event_id in self._queued:
            return
        self._queued.add(event_id)
        self._lanes[hash(_sender_of(payload)) % len(self._lanes)].put_nowait((event_id, payload))

    async def _work(self, lane: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        while True:
            event_id, payload = await lane.get()
            try:
                await self._handle_stored(event_id, payload)
            except ConversationUnavailableError:
                log.warning("telegram: update %s not handled yet (database unavailable); the sweep retries", event_id)
            except Exception:
                # A lane must outlive any one update; the update is logged and set aside, never retried forever.
                log.exception("telegram: update %s could not be handled", event_id)
                with contextlib.suppress(ConversationUnavailableError):
                    await self._engine.discard(CHANNEL, event_id)
            finally:
                self._queued.discard(event_id)
                lane.task_done()

    async def _handle_stored(self, event_id: str, payload: dict[str, Any]) -> None:
        update = Update.de_json(payload, self.application.bot)
        outgoing = await self._dispatch(update)
        if outgoing is None:
            await self._engine.discard(CHANNEL, event_id)
        elif outgoing[1]:
            await self._send_all(*outgoing)

    async def _sweep(self) -> None:
        """Pick up stored updates that nobody handled: this process's before a crash, or another's."""
        while True:
            try:
                older_than = timedelta(seconds=2 * self.options.sweep_seconds)
                for event_id, payload in await self._engine.unhandled(CHANNEL, older_than=older_than):
                    self._enqueue(event_id, payload)
            except ConversationUnavailableError:
                log.warning("telegram: sweep skipped, database unavailable")
            await asyncio.sleep(self.options.sweep_seconds)

    async def _on_polled_update(self, update: object, _: ContextTypes.DEFAULT_TYPE) -> None:
        assert isinstance(update, Update)
        try:
            outgoing = await self._dispatch(update)
        except ConversationUnavailableError:
            # Long polling has already moved past this update: tell the customer rather than go silent.
            user = update.effective_user
            if update.effective_chat is not None:
                language = pick_language(user.language_code if user else None)
                outgoing = (update.effective_chat.id, [Reply(text("failure", language))])
            else:
                return
        if outgoing:
            await self._send_all(*outgoing)

    async def _dispatch(self, update: Update) -> tuple[int, list[Reply]] | None:
        """Turn the update into an engine event; return the chat and the replies to send there."""
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None or user.is_bot:
            return None
        if update.callback_query is not None:
            await _acknowledge_press(update)
        is_group = chat.type != ChatType.PRIVATE
        code = invites.invite_code_of(_command_of(update.message)) if update.message is not None else None
        if code is not None and self._invites is not None:
            # A manager's invite is answered here, in a group too (a staff group takes case alerts): it is not
            # feedback, and the engine knows no managers.
            language = pick_language(user.language_code)
            return chat.id, await self._invites.redeem(
                code, event_id=str(update.update_id), chat=chat.id, language=language, is_group=is_group
            )
        if is_group:
            # In a group the bot says so when addressed, and does nothing else.
            await self._engine.discard(CHANNEL, str(update.update_id))
            if update.message is not None and _command_of(update.message) is not None:
                return chat.id, [Reply(text("group_only_private", pick_language(user.language_code)))]
            return chat.id, []
        event = _to_event(update)
        if event is None:
            return None
        if event.kind is Kind.CONTACT and update.message.contact.user_id not in (None, user.id):
            await self._engine.discard(CHANNEL, str(update.update_id))
            return chat.id, [Reply(text("foreign_contact", pick_language(user.language_code)))]
        return chat.id, await self._engine.handle(event)

    async def _send_all(self, chat_id: int, replies: Sequence[Reply]) -> None:
        bot = self.application.bot
        for reply in replies:
            try:
                await bot.send_message(chat_id, reply.text, reply_markup=_markup(reply))
            except Forbidden:
                # The customer blocked the bot: end their conversation quietly, say nothing more.
                log.info("telegram: chat blocked the bot; ending its conversation")
                await self._engine.handle(Incoming(CHANNEL, str(chat_id), Kind.COMMAND, command="cancel"))
                return
            except TelegramError:
                log.exception("telegram: sending a reply failed")
                return

    async def _publish_commands(self) -> None:
        bot = self.application.bot
        try:
            for language, descriptions in COMMAND_HELP.items():
                commands = [BotCommand(c, d) for c, d in zip(COMMANDS, descriptions, strict=True)]
                await bot.set_my_commands(commands, language_code=None if language == "en" else language)
        except TelegramError:
            log.warning("telegram: could not publish the command list", exc_info=True)


def _build_application(options: TelegramOptions) -> Application:
    api_url = options.api_url.rstrip("/")
    builder = (
        ApplicationBuilder()
        .token(options.token)
        .base_url(api_url)
        .base_file_url(api_url.removesuffix("/bot") + "/file/bot")
        .concurrent_updates(options.concurrent_updates)
    )
    if options.max_messages_per_second > 0:
        builder = builder.rate_limiter(AIORateLimiter(overall_max_rate=options.max_messages_per_second, max_retries=3))
    if options.webhook_url is not None:
        builder = builder.updater(None)
    return builder.build()


def _sender_of(payload: dict[str, Any]) -> int:
    """The user id an update comes from, read from the raw JSON (cheap, before parsing the whole update)."""
    for kind in ("message", "edited_message", "callback_query"):
        part = payload.get(kind)
        sender = part.get("from") if isinstance(part, dict) else None
        if isinstance(sender, dict) and isinstance(sender.get("id"), int):
            return sender["id"]
    return 0


def _to_event(update: Update) -> Incoming | None:
    user = update.effective_user
    common = {
        "channel": CHANNEL,
        "user": str(user.id),
        "language": user.language_code,
        "event_id": str(update.update_id),
    }
    if update.callback_query is not None:
        return Incoming(kind=Kind.CHOICE, choice=update.callback_query.data or "", **common)
    if update.edited_message is not None:
        return Incoming(kind=Kind.EDITED, **common)
    message = update.message
    if message is None:
        return None
    command = _command_of(message)
    if command is not None:
        name, argument = command
        return Incoming(kind=Kind.COMMAND, command=name, text=argument, **common)
    if message.contact is not None:
        return Incoming(kind=Kind.CONTACT, text=message.contact.phone_number, **common)
    if message.text is not None:
        return Incoming(kind=Kind.TEXT, text=message.text, **common)
    return Incoming(kind=Kind.UNSUPPORTED, **common)


def _command_of(message: Message) -> tuple[str, str] | None:
    """('start', 'MAIN-C1') for '/start@closeloop_bot MAIN-C1'; None when the message is not a command."""
    entities = message.entities or ()
    if not message.text or not any(e.type == "bot_command" and e.offset == 0 for e in entities):
        return None
    head, _, argument = message.text.partition(" ")
    return head[1:].split("@", 1)[0].lower(), argument.strip()


def _markup(reply: Reply) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None:
    if reply.ask_contact:
        # Telegram can't mix a share-contact button with inline buttons: offer "no thanks" as a typed reply.
        decline = reply.buttons[0][0].label if reply.buttons else TEXTS["no_thanks"]["en"]
        keyboard = [[KeyboardButton(reply.ask_contact, request_contact=True)], [KeyboardButton(decline)]]
        return ReplyKeyboardMarkup(keyboard, one_time_keyboard=True, resize_keyboard=True)
    if reply.buttons:
        rows = [[InlineKeyboardButton(b.label, callback_data=b.data) for b in row] for row in reply.buttons]
        return InlineKeyboardMarkup(rows)
    if reply.clear_keyboard:
        return ReplyKeyboardRemove()
    return None


async def _acknowledge_press(update: Update) -> None:
    """Stop the button's spinner. The keyboard stays: a second press is answered as a stale button."""
    with contextlib.suppress(BadRequest, Forbidden):  # too old to answer: harmless, the press still counts
        await update.callback_query.answer()


async def _log_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    # The outer edge of PTB's dispatch: anything unexpected is logged with its traceback, never re-raised.
    log.error("telegram: unhandled error", exc_info=context.error)


TELEGRAM = web.AppKey("telegram", TelegramChannel)


async def webhook_handler(request: web.Request) -> web.Response:
    """The aiohttp route for Telegram's webhook; the channel is in the app once it has started."""
    channel = request.app.get(TELEGRAM)
    if channel is None or not channel.is_webhook:
        raise web.HTTPNotFound(text="webhook mode is not enabled")
    return await channel.handle_webhook(request)
