"""Button data: what a button carries back, at most 64 bytes, parsed strictly (a client can forge any of it)."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BYTES = 64  # Telegram's limit for callback_data
PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKEN = re.compile(r"^[a-z0-9_]{1,24}$")
LANGUAGE = re.compile(r"^(en|zh)$")


class BadButtonError(ValueError):
    """The button data is malformed: forged, truncated or from another bot."""


@dataclass(frozen=True, slots=True)
class Consent:
    agreed: bool
    payload: str
    language: str


@dataclass(frozen=True, slots=True)
class Language:
    language: str
    payload: str  # empty when no branch is known yet


@dataclass(frozen=True, slots=True)
class Answer:
    conversation_id: int
    step: str
    value: str


@dataclass(frozen=True, slots=True)
class Forget:
    confirmed: bool


@dataclass(frozen=True, slots=True)
class PickBranch:
    payload: str


Parsed = Consent | Language | Answer | Forget | PickBranch


def consent(agreed: bool, payload: str, language: str) -> str:
    return _checked(f"k|{'y' if agreed else 'n'}|{payload}|{language}")


def language(language: str, payload: str = "") -> str:
    return _checked(f"l|{language}|{payload}")


def answer(conversation_id: int, step: str, value: str) -> str:
    return _checked(f"a|{_base36(conversation_id)}|{step}|{value}")


def forget(confirmed: bool) -> str:
    return "f|y" if confirmed else "f|n"


def pick_branch(payload: str) -> str:
    return _checked(f"b|{payload}")


def parse(data: str) -> Parsed:
    """Parse button data, raising BadButtonError on anything this bot did not make."""
    if not data or len(data.encode()) > MAX_BYTES:
        raise BadButtonError("empty or oversized")
    kind, _, rest = data.partition("|")
    parts = rest.split("|")
    try:
        return _PARSERS[kind](parts)
    except (KeyError, ValueError, IndexError) as exc:
        raise BadButtonError(f"unreadable button of kind {kind[:8]!r}") from exc


def _parse_consent(parts: list[str]) -> Consent:
    flag, payload, lang = parts
    _require(flag in ("y", "n") and PAYLOAD.match(payload) and LANGUAGE.match(lang))
    return Consent(agreed=flag == "y", payload=payload, language=lang)


def _parse_language(parts: list[str]) -> Language:
    lang, payload = parts
    _require(LANGUAGE.match(lang) and (payload == "" or PAYLOAD.match(payload)))
    return Language(language=lang, payload=payload)


def _parse_answer(parts: list[str]) -> Answer:
    conversation, step, value = parts
    _require(TOKEN.match(step) and TOKEN.match(value) and re.fullmatch(r"[0-9a-z]{1,12}", conversation))
    return Answer(conversation_id=int(conversation, 36), step=step, value=value)


def _parse_forget(parts: list[str]) -> Forget:
    (flag,) = parts
    _require(flag in ("y", "n"))
    return Forget(confirmed=flag == "y")


def _parse_pick(parts: list[str]) -> PickBranch:
    (payload,) = parts
    _require(PAYLOAD.match(payload))
    return PickBranch(payload=payload)


_PARSERS = {"k": _parse_consent, "l": _parse_language, "a": _parse_answer, "f": _parse_forget, "b": _parse_pick}


def _require(condition: object) -> None:
    if not condition:
        raise ValueError("field out of range")


def _checked(data: str) -> str:
    if len(data.encode()) > MAX_BYTES:
        raise ValueError(f"button data over {MAX_BYTES} bytes: {data!r}")
    return data


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out
