"""Telegram out: HTML text, photos and documents to staff chats through python-telegram-bot's ``Bot``.

Messages use Telegram's HTML parse mode, so whoever builds the text must pass everything customer-derived
(comments, names, branch names typed by staff) through ``html.escape``; ``escape`` below is that function.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable
from datetime import timedelta

from telegram import Bot, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from reporting.delivery.errors import DeliveryError, RecipientGoneError

DEFAULT_API_URL = "https://api.telegram.org/bot"


def escape(text: str) -> str:
    """Make ``text`` safe inside Telegram HTML: <, > and & become entities, quotes too (for attributes)."""
    return html.escape(text, quote=True)


class TelegramSender:
    """Send to chats by id with one bot token. Use as ``async with TelegramSender(token, api_url=...)``.

    Entering checks the token (getMe); a refused token or an unreachable API raises DeliveryError.
    """

    def __init__(self, token: str, *, api_url: str = DEFAULT_API_URL) -> None:
        # The same URL rules as the customer channel (bot/channels/telegram.py): no trailing slash, files
        # under /file/bot beside /bot, so a self-hosted Bot API server works for both.
        api_url = api_url.rstrip("/")
        self._token = token
        self._bot = Bot(
            token,
            base_url=api_url,
            base_file_url=api_url.removesuffix("/bot") + "/file/bot",
            # PTB's default pool holds one connection; a digest round sends to several chats at once.
            request=HTTPXRequest(connection_pool_size=8),
        )

    async def __aenter__(self) -> TelegramSender:
        try:
            await self._bot.initialize()
        except TelegramError as exc:
            # initialize() opened the HTTP connections before getMe failed; __aexit__ will not run to close them.
            await self._bot.shutdown()
            raise self._error(exc) from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._bot.shutdown()

    async def send_text(self, chat_id: int | str, text_html: str) -> int:
        """Send an HTML message; return its message id.

        Raises:
            RecipientGoneError: the chat blocked the bot or no longer exists for it.
            DeliveryError: retryable for flood limits and network trouble, not for a malformed message.
        """
        return await self._send(self._bot.send_message(chat_id, text_html, parse_mode=ParseMode.HTML))

    async def send_photo(
        self, chat_id: int | str, photo: bytes, *, caption_html: str | None = None, filename: str = "chart.png"
    ) -> int:
        """Send an image (a chart) with an optional HTML caption (1,024 characters at most); return the message id."""
        sending = self._bot.send_photo(
            chat_id, photo, caption=caption_html, parse_mode=ParseMode.HTML, filename=filename
        )
        return await self._send(sending)

    async def send_document(
        self, chat_id: int | str, document: bytes, *, filename: str, caption_html: str | None = None
    ) -> int:
        """Send a file (the digest as PDF); return the message id."""
        sending = self._bot.send_document(
            chat_id, document, caption=caption_html, parse_mode=ParseMode.HTML, filename=filename
        )
        return await self._send(sending)

    async def _send(self, sending: Awaitable[Message]) -> int:
        try:
            message = await sending
        except TelegramError as exc:
            raise self._error(exc) from None  # from None: PTB's own messages can quote the token
        return message.message_id

    def _error(self, exc: TelegramError) -> DeliveryError:
        text = f"Telegram: {type(exc).__name__}: {exc.message}".replace(self._token, "***")
        return _classify(exc, text)


def _classify(exc: TelegramError, text: str) -> DeliveryError:
    """Decide what the caller does next. BadRequest is a NetworkError in PTB, so it is tested first."""
    if isinstance(exc, Forbidden):
        return RecipientGoneError(text)
    if isinstance(exc, RetryAfter):
        return DeliveryError(text, retryable=True, retry_after=_seconds(exc.retry_after))
    if isinstance(exc, BadRequest | InvalidToken | ChatMigrated):
        # A malformed message, a wrong token or a moved chat: sending the same thing again cannot help.
        return DeliveryError(text, retryable=False)
    # NetworkError and TimedOut, or anything unforeseen: the same message may well pass later.
    return DeliveryError(text, retryable=True)


def _seconds(value: int | timedelta) -> float:
    # int unless PTB_TIMEDELTA is set; PTB 23 will always give a timedelta.
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
