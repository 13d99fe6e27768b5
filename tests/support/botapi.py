"""A local stand-in of the Telegram Bot API (aiohttp on 127.0.0.1) so the real python-telegram-bot runs offline."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .botapi_methods import (
    METHODS,
    RATE_LIMITED,
    ApiError,
    BotApiMethods,
    Params,
    SentMessage,
    State,
    Upload,
    WebhookConfig,
    error_response,
    read_params,
)
from .botapi_users import SimulatedUsers

__all__ = ["ApiCall", "BotApiStandIn", "SentMessage", "Upload", "WebhookDelivery"]

_TOKEN = re.compile(r"\d+:[\w-]+")
_KEEP_SECRET: Any = object()


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One request the bot made: method as spelled in the URL, decoded parameters, HTTP status answered."""

    method: str
    params: Params
    status: int


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One POST of an update to the webhook: status 0 means the connection failed."""

    update_id: int
    status: int
    secret: str | None


class BotApiStandIn(SimulatedUsers, BotApiMethods):
    """Serve the Bot API methods a bot uses, record what the bot sends, and inject what users do.

    ``async with BotApiStandIn() as api:`` then build PTB with ``.base_url(api.base_url)`` and
    ``.base_file_url(api.base_file_url)``; any token shaped ``123:ABC`` is accepted.

    Updates from ``user_*`` and ``push_update`` are queued for getUpdates. While a webhook is set they are POSTed
    to it instead (with ``X-Telegram-Bot-Api-Secret-Token`` when a secret was set), once, when injected; pass
    ``auto_deliver=False`` to hold them in ``pending_webhook`` until ``await deliver_pending()``. Every POST is
    recorded in ``webhook_deliveries``; there is no automatic retry: call ``deliver_again`` to redeliver.

    Observe with ``sent`` (new messages), ``edits``, ``calls`` (every request), ``wait_for_messages``,
    ``wait_for_calls`` and ``last_message``. ``block(user_id)`` makes sends to that chat answer 403;
    ``rate_limit_next(n)`` makes the next n sending calls answer 429 with ``retry_after``.
    """

    def __init__(self, *, username: str = "closeloop_test_bot", auto_deliver: bool = True) -> None:
        self.username = username
        self.auto_deliver = auto_deliver
        self.sent: list[SentMessage] = []
        self.edits: list[SentMessage] = []
        self.calls: list[ApiCall] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.pending_webhook: list[dict[str, Any]] = []
        self._state = State()
        self._webhook: WebhookConfig | None = None
        self._profiles: dict[int, dict[str, Any]] = {}
        self._file_numbers = itertools.count(1)
        self._update_ids = itertools.count(1)
        self._bot_id = 0
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._port = 0

    # lifecycle

    async def __aenter__(self) -> BotApiStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        self._client = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Wake pending long polls, then close the server and the webhook client."""
        self._closing = True
        await self._notify()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/file/bot"

    # test controls and observation

    def block(self, user_id: int) -> None:
        """Make the user have blocked the bot: sending to their chat answers 403."""
        self._state.blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self._state.blocked.discard(user_id)

    def rate_limit_next(self, n: int, retry_after: int = 1) -> None:
        """Answer the next ``n`` sending calls with 429 Too Many Requests."""
        self._state.rate_limits.extend([retry_after] * n)

    def last_message(self, chat_id: int) -> SentMessage | None:
        return next((m for m in reversed(self.sent) if m.chat_id == chat_id), None)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """Return the current state of a message in a chat, as a Message object."""
        return self._state.messages[(chat_id, message_id)]

    async def wait_for_messages(self, chat_id: int, count: int, timeout: float = 5.0) -> list[SentMessage]:
        """Return every message sent to ``chat_id`` once at least ``count`` have been sent."""

        def arrived() -> list[SentMessage]:
            return [m for m in self.sent if m.chat_id == chat_id]

        if not await self._wait_until(lambda: len(arrived()) >= count, timeout):
            texts = [m.text for m in arrived()]
            raise AssertionError(f"expected {count} message(s) to chat {chat_id} within {timeout}s; got {texts!r}")
        return arrived()

    async def wait_for_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> list[ApiCall]:
        """Return every call of ``method`` once at least ``count`` have been made."""

        def made() -> list[ApiCall]:
            return [c for c in self.calls if c.method.lower() == method.lower()]

        if not await self._wait_until(lambda: len(made()) >= count, timeout):
            raise AssertionError(f"expected {count} {method} call(s) within {timeout}s; got {len(made())}")
        return made()

    # updates

    async def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Give ``update`` a fresh update_id and queue it for getUpdates or deliver it to the webhook."""
        update = {**update, "update_id": next(self._update_ids)}
        if self._webhook is None:
            self._state.queue.append(update)
            await self._notify()
        elif self.auto_deliver:
            await self.post_to_webhook(update)
        else:
            self.pending_webhook.append(update)
        return update

    async def deliver_pending(self) -> list[int]:
        """POST the held webhook updates in order; return the statuses."""
        pending, self.pending_webhook = self.pending_webhook, []
        return [await self.post_to_webhook(update) for update in pending]

    async def deliver_again(self, update: dict[str, Any]) -> int:
        """Redeliver an already delivered update (same update_id), as Telegram does until it gets a 2xx."""
        return await self.post_to_webhook(update)

    async def post_to_webhook(self, update: dict[str, Any], *, secret: str | None = _KEEP_SECRET) -> int:
        """POST ``update`` to the webhook with the configured secret (or ``secret``; None sends no header)."""
        assert self._webhook is not None, "no webhook is set"
        assert self._client is not None, "the stand-in is not started"
        secret = self._webhook.secret if secret is _KEEP_SECRET else secret
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        try:
            async with self._client.post(self._webhook.url, json=update, headers=headers) as response:
                status = response.status
        except aiohttp.ClientError:
            status = 0
        self.webhook_deliveries.append(WebhookDelivery(update["update_id"], status, secret))
        return status

    def store_message(self, message: dict[str, Any]) -> None:
        self._state.messages[(message["chat"]["id"], message["message_id"])] = message

    def remember_chat(self, chat: dict[str, Any]) -> None:
        self._state.chats[chat["id"]] = chat

    def next_message_id(self, chat_id: int) -> int:
        return next(self._state.message_ids.setdefault(chat_id, itertools.count(1)))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(predicate)
            except TimeoutError:
                return False
        return True

    # HTTP

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if not _TOKEN.fullmatch(request.match_info["token"]):
            return error_response(ApiError(404, "Not Found"))
        self._bot_id = int(request.match_info["token"].split(":")[0])
        params = await read_params(request)
        try:
            result = await self._call(method, params)
        except ApiError as error:
            self.calls.append(ApiCall(method, params, error.status))
            await self._notify()
            return error_response(error)
        self.calls.append(ApiCall(method, params, 200))
        await self._notify()
        return web.json_response({"ok": True, "result": result})

    async def _call(self, method: str, params: Params) -> Any:
        # Method names are case-insensitive in the real API.
        if method.lower() not in METHODS:
            raise ApiError(404, "Not Found: method not found")
        if method.lower() in RATE_LIMITED and self._state.rate_limits:
            retry_after = self._state.rate_limits.pop(0)
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        return await getattr(self, METHODS[method.lower()])(params)
