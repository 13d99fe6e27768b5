"""Simulated Telegram users: build the updates a person's actions produce and hand them to the Bot API stand-in."""

from __future__ import annotations

import itertools
import time
from typing import Any


class SimulatedUsers:
    """Mixin: one ``user_*`` coroutine per thing a person can do; each returns the update it produced.

    A user's name and language are remembered from their last ``user_sends_text`` call. The host class provides
    ``message``, ``store_message``, ``next_message_id``, ``remember_chat`` and ``push_update``.
    """

    _profiles: dict[int, dict[str, Any]]
    _file_numbers: itertools.count[int]

    async def user_sends_text(
        self,
        user_id: int,
        text: str,
        *,
        language_code: str = "en",
        chat_type: str = "private",
        first_name: str | None = None,
    ) -> dict[str, Any]:
        """Send ``text``; a leading ``/command`` (``/start PAYLOAD`` too) gets its ``bot_command`` entity."""
        self._profiles[user_id] = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name or f"User{user_id}",
            "language_code": language_code,
        }
        extra: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            extra["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_length(command)}]
        return await self._user_message(user_id, extra, chat_type=chat_type)

    async def user_shares_contact(self, user_id: int, phone: str) -> dict[str, Any]:
        """Share the user's own contact card (as the "share my phone number" keyboard button does)."""
        profile = self._profile(user_id)
        contact = {"phone_number": phone, "first_name": profile["first_name"], "user_id": user_id}
        return await self._user_message(user_id, {"contact": contact})

    async def user_sends_sticker(self, user_id: int, *, emoji: str = "👍") -> dict[str, Any]:
        """Send a sticker."""
        sticker = {**self._file("sticker"), "type": "regular", "width": 512, "height": 512, "emoji": emoji}
        return await self._user_message(user_id, {"sticker": sticker | {"is_animated": False, "is_video": False}})

    async def user_sends_photo(self, user_id: int, *, caption: str | None = None) -> dict[str, Any]:
        """Send a photo (two sizes, as Telegram does), optionally captioned."""
        base = self._file("photo")
        sizes = [
            {**base, "file_id": base["file_id"] + "_s", "width": 90, "height": 67, "file_size": 1200},
            {**base, "width": 1280, "height": 960, "file_size": 98_000},
        ]
        extra: dict[str, Any] = {"photo": sizes}
        if caption is not None:
            extra["caption"] = caption
        return await self._user_message(user_id, extra)

    async def user_sends_voice(self, user_id: int, *, duration: int = 3) -> dict[str, Any]:
        """Send a voice note."""
        voice = {**self._file("voice"), "duration": duration, "mime_type": "audio/ogg", "file_size": 4_000 * duration}
        return await self._user_message(user_id, {"voice": voice})

    async def user_sends_location(self, user_id: int, latitude: float, longitude: float) -> dict[str, Any]:
        """Send a location pin."""
        return await self._user_message(user_id, {"location": {"latitude": latitude, "longitude": longitude}})

    async def user_presses_button(self, user_id: int, message: Any, data: str) -> dict[str, Any]:
        """Press an inline button with callback ``data`` under ``message`` (a SentMessage or a message_id)."""
        message_id = message if isinstance(message, int) else message.message_id
        original = self.message(user_id, message_id)
        query = {
            "id": str(next(self._file_numbers)),
            "from": self._profile(user_id),
            "message": original,
            "chat_instance": str(original["chat"]["id"]),
            "data": data,
        }
        return await self.push_update({"callback_query": query})

    async def user_edits_message(self, user_id: int, message_id: int, text: str) -> dict[str, Any]:
        """Edit one of the user's earlier text messages; produces an ``edited_message`` update."""
        original = self.message(user_id, message_id)
        edited = {**original, "text": text, "edit_date": int(time.time())}
        edited.pop("entities", None)
        return await self.push_update({"edited_message": edited})

    async def _user_message(self, user_id: int, extra: dict[str, Any], *, chat_type: str = "private") -> dict[str, Any]:
        profile = self._profile(user_id)
        chat_id = user_id if chat_type == "private" else -user_id
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = profile["first_name"]
        else:
            chat["title"] = f"Group {user_id}"
        self.remember_chat(chat)
        message = {
            "message_id": self.next_message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": profile,
            **extra,
        }
        self.store_message(message)
        return await self.push_update({"message": message})

    def _profile(self, user_id: int) -> dict[str, Any]:
        default = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "language_code": "en"}
        return self._profiles.setdefault(user_id, default)

    def _file(self, kind: str) -> dict[str, Any]:
        number = next(self._file_numbers)
        return {"file_id": f"{kind}-{number}", "file_unique_id": f"u{kind}{number}"}


def _utf16_length(text: str) -> int:
    """Telegram measures entity offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2
