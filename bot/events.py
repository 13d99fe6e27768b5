"""What every channel is translated into (Incoming) and what the engine answers with (Reply)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    TEXT = "text"
    CHOICE = "choice"  # a button press; `choice` holds the button's data
    CONTACT = "contact"  # a shared phone number; `text` holds it
    COMMAND = "command"  # /start, /help, ...; `command` without the slash, `text` its argument
    UNSUPPORTED = "unsupported"  # a sticker, photo, voice note, location...
    EDITED = "edited"  # an edited earlier message


@dataclass(frozen=True, slots=True)
class Incoming:
    """One thing a customer did, in any channel."""

    channel: str
    user: str  # the channel's user id; only a salted hash of it is ever stored
    kind: Kind
    text: str | None = None
    choice: str | None = None
    command: str | None = None
    language: str | None = None  # the client's hint: Telegram's language_code, the browser's Accept-Language
    event_id: str | None = None  # the channel's id for this event, so a redelivery is handled once


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    data: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One message to send back: text, optional button rows, optional request for the customer's phone number."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    ask_contact: str | None = None  # label of a "share my phone number" button
    clear_keyboard: bool = False  # remove a contact keyboard shown earlier
    # What the reply asks for, so a channel can render the right input: "text", "buttons", "contact" or "".
    expects: str = ""
