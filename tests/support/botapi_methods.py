"""The Bot API methods the stand-in serves, the state they share, and the records of what the bot sent."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Params = dict[str, Any]

_WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a "
    "current content and reply markup of the message"
)
# Bot API method name, lower-cased (the real API ignores case) -> implementing attribute.
METHODS = {
    name.lower(): attribute
    for name, attribute in [
        ("getMe", "_get_me"),
        ("getUpdates", "_get_updates"),
        ("setWebhook", "_set_webhook"),
        ("deleteWebhook", "_delete_webhook"),
        ("getWebhookInfo", "_get_webhook_info"),
        ("sendMessage", "_send_message"),
        ("sendPhoto", "_send_photo"),
        ("sendDocument", "_send_document"),
        ("editMessageText", "_edit_message_text"),
        ("editMessageReplyMarkup", "_edit_message_reply_markup"),
        ("answerCallbackQuery", "_answer_callback_query"),
        ("deleteMessage", "_delete_message"),
        ("setMyCommands", "_set_my_commands"),
        ("getMyCommands", "_get_my_commands"),
        ("sendChatAction", "_send_chat_action"),
        ("close", "_close"),
        ("logOut", "_log_out"),
    ]
}
RATE_LIMITED = frozenset(
    {"sendmessage", "sendphoto", "senddocument", "editmessagetext", "editmessagereplymarkup"}
    | {"answercallbackquery", "deletemessage", "sendchataction"}
)


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message the bot sent or edited; ``text`` holds a caption, ``file_name`` an upload's name or a file_id/URL."""

    method: str
    chat_id: int
    message_id: int
    text: str | None
    reply_markup: dict[str, Any] | None = None
    parse_mode: str | None = None
    file_name: str | None = None
    file_size: int | None = None

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Return the inline keyboard's buttons, row by row, flattened."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart request."""

    name: str
    size: int


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters


@dataclass
class WebhookConfig:
    """The webhook set with setWebhook."""

    url: str
    secret: str | None
    allowed_updates: list[str] | None = None


@dataclass
class State:
    """What the Bot API server knows: queued updates, messages by (chat, id), chats, commands, test switches."""

    queue: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    chats: dict[int, dict[str, Any]] = field(default_factory=dict)
    message_ids: dict[int, itertools.count[int]] = field(default_factory=dict)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    rate_limits: list[int] = field(default_factory=list)


class BotApiMethods:
    """Mixin: one coroutine per Bot API method, taking decoded parameters and returning the ``result``.

    The host class provides the shared state (``_state``, ``_webhook``, ``sent``, ``edits``, ...), ``_wait_until``
    and ``_notify``.
    """

    async def _get_me(self, params: Params) -> dict[str, Any]:
        return self._bot_user() | {
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: Params) -> list[dict[str, Any]]:
        if self._webhook is not None:
            raise ApiError(409, _WEBHOOK_CONFLICT)
        self._confirm(int(params.get("offset", 0)))
        limit = min(max(int(params.get("limit", 100)), 1), 100)

        def has_news() -> bool:
            return bool(self._state.queue) or self._closing or self._webhook is not None

        await self._wait_until(has_news, float(params.get("timeout", 0)))
        return [] if self._webhook is not None else self._state.queue[:limit]

    def _confirm(self, offset: int) -> None:
        queue = self._state.queue
        if offset > 0:
            queue[:] = [update for update in queue if update["update_id"] >= offset]
        elif offset < 0:
            queue[:] = queue[offset:]

    async def _set_webhook(self, params: Params) -> bool:
        if json_param(params, "drop_pending_updates", default=False):
            self._state.queue.clear()
        self._webhook = WebhookConfig(params["url"], params.get("secret_token"), json_param(params, "allowed_updates"))
        await self._notify()
        return True

    async def _delete_webhook(self, params: Params) -> bool:
        if json_param(params, "drop_pending_updates", default=False):
            self._state.queue.clear()
            self.pending_webhook.clear()
        self._webhook = None
        return True

    async def _get_webhook_info(self, params: Params) -> dict[str, Any]:
        info: dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        if self._webhook is not None:
            info |= {"url": self._webhook.url, "pending_update_count": len(self.pending_webhook)}
            if self._webhook.allowed_updates is not None:
                info["allowed_updates"] = self._webhook.allowed_updates
        else:
            info["pending_update_count"] = len(self._state.queue)
        return info

    async def _send_message(self, params: Params) -> dict[str, Any]:
        if not params.get("text"):
            raise ApiError(400, "Bad Request: message text is empty")
        return await self._new_message("sendMessage", params, {"text": params["text"]})

    async def _send_photo(self, params: Params) -> dict[str, Any]:
        upload, ref = _file_param(params, "photo")
        number = next(self._file_numbers)
        photo = [{"file_id": f"sent-photo-{number}", "file_unique_id": f"sp{number}", "width": 800, "height": 600}]
        return await self._new_message("sendPhoto", params, {"photo": photo} | _caption(params), upload or ref)

    async def _send_document(self, params: Params) -> dict[str, Any]:
        upload, ref = _file_param(params, "document")
        number = next(self._file_numbers)
        document = {"file_id": f"sent-document-{number}", "file_unique_id": f"sd{number}"}
        if upload is not None:
            document |= {"file_name": upload.name, "file_size": upload.size}
        return await self._new_message("sendDocument", params, {"document": document} | _caption(params), upload or ref)

    async def _edit_message_text(self, params: Params) -> dict[str, Any]:
        return await self._edit("editMessageText", params, {"text": params.get("text")})

    async def _edit_message_reply_markup(self, params: Params) -> dict[str, Any]:
        return await self._edit("editMessageReplyMarkup", params, {})

    async def _answer_callback_query(self, params: Params) -> bool:
        return True

    async def _delete_message(self, params: Params) -> bool:
        key = (self._chat_id(params), int(params["message_id"]))
        if self._state.messages.pop(key, None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    async def _set_my_commands(self, params: Params) -> bool:
        self._state.commands[params.get("language_code", "")] = json_param(params, "commands", default=[])
        return True

    async def _get_my_commands(self, params: Params) -> list[dict[str, Any]]:
        return self._state.commands.get(params.get("language_code", ""), [])

    async def _send_chat_action(self, params: Params) -> bool:
        self._chat_id(params)
        return True

    async def _close(self, params: Params) -> bool:
        return True

    async def _log_out(self, params: Params) -> bool:
        return True

    # message helpers

    async def _new_message(
        self, method: str, params: Params, content: dict[str, Any], file: Upload | str | None = None
    ) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        markup = json_param(params, "reply_markup")
        message = {
            "message_id": self.next_message_id(chat_id),
            "date": int(time.time()),
            "chat": self._state.chats.get(chat_id, {"id": chat_id, "type": "private"}),
            "from": self._bot_user(),
            **content,
        }
        if markup is not None and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self.store_message(message)
        text = content.get("text", content.get("caption"))
        upload = file if isinstance(file, Upload) else None
        self.sent.append(
            SentMessage(
                method, chat_id, message["message_id"], text, markup, params.get("parse_mode"),
                upload.name if upload else file, upload.size if upload else None,
            )
        )  # fmt: skip
        return message

    async def _edit(self, method: str, params: Params, changes: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        key = (chat_id, int(params["message_id"]))
        if key not in self._state.messages:
            raise ApiError(400, "Bad Request: message to edit not found")
        markup = json_param(params, "reply_markup")
        old = self._state.messages[key]
        new = {k: v for k, v in old.items() if k != "reply_markup"} | changes | {"edit_date": int(time.time())}
        if markup:
            new["reply_markup"] = markup
        if new.get("text") == old.get("text") and new.get("reply_markup") == old.get("reply_markup"):
            raise ApiError(400, _NOT_MODIFIED)
        self.store_message(new)
        self.edits.append(SentMessage(method, chat_id, key[1], new.get("text"), markup, params.get("parse_mode")))
        return new

    def _chat_id(self, params: Params) -> int:
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None
        if chat_id in self._state.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self._bot_id, "is_bot": True, "first_name": "Closeloop", "username": self.username}


async def read_params(request: web.Request) -> Params:
    """Merge query and body: form and multipart fields arrive as strings (files as Upload), JSON bodies typed."""
    params: Params = dict(request.query)
    if request.content_type == "application/json":
        params.update(await request.json())
    elif request.can_read_body:
        for name, value in (await request.post()).items():
            params[name] = Upload(value.filename, len(value.file.read())) if isinstance(value, web.FileField) else value
    return params


def json_param(params: Params, name: str, default: Any = None) -> Any:
    """Decode a non-string parameter: PTB JSON-encodes those in form bodies."""
    value = params.get(name)
    if value is None:
        return default
    return json.loads(value) if isinstance(value, str) else value


def _file_param(params: Params, name: str) -> tuple[Upload | None, str | None]:
    value = params.get(name)
    if isinstance(value, str) and value.startswith("attach://"):
        value = params.get(value.removeprefix("attach://"))
    return (value, None) if isinstance(value, Upload) else (None, value)


def _caption(params: Params) -> dict[str, Any]:
    return {"caption": params["caption"]} if params.get("caption") else {}


def error_response(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return web.json_response(body, status=error.status)
