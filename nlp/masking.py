"""Personal-data masking: replace cards, IDs, accounts, phones and e-mails in free text with typed placeholders."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

# Digits may touch CJK characters directly ("卡号6222..."), where \b does not help: a number's edge is defined as
# "no ASCII letter or digit next to it". A digit after "1." or before ".5" is part of a decimal, not an identifier.
_START = r"(?<![A-Za-z\d])(?<!\d[.,])"
_END = r"(?![A-Za-z\d])(?![.,]\d)"

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# An IBAN is written either in one piece or in groups of four separated by single spaces.
_IBAN = re.compile(
    r"(?<![A-Za-z\d])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?![A-Za-z\d])"
)
_CN_ID = re.compile(_START + r"\d{17}[\dXx]" + _END)
_CARD = re.compile(_START + r"(?:\d{13,19}|\d{3,6}(?:[ -]\d{3,6}){1,5})" + _END)
_CN_MOBILE = re.compile(r"(?<![A-Za-z\d+])(?<!\d[.,])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _END)
_CN_LANDLINE = re.compile(_START + r"(?:0\d{2,3}[ -]?|\(0\d{2,3}\) ?)\d{7,8}" + _END)
_INTERNATIONAL = re.compile(r"(?<![A-Za-z\d+])\+\d(?:[ ()-]{0,2}\d){7,14}" + _END)
_ACCOUNT_DIGITS = re.compile(_START + r"\d{10,30}" + _END)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"


@dataclass(frozen=True, slots=True)
class Masked:
    """Masked text and how many items of each kind were replaced."""

    text: str
    counts: dict[str, int]


def mask_pii(text: str) -> Masked:
    """Replace personal data in ``text`` with ``[CARD]``, ``[ID]``, ``[ACCOUNT]``, ``[PHONE]`` and ``[EMAIL]``."""
    counts: dict[str, int] = {}
    for kind, pattern, is_valid in _RULES:
        text = _replace(text, kind, pattern, is_valid, counts)
    return Masked(text=text, counts=counts)


def mask_text(text: str) -> str:
    """Return ``text`` with personal data replaced by typed placeholders."""
    return mask_pii(text).text


def _replace(
    text: str, kind: str, pattern: re.Pattern[str], is_valid: Callable[[str], bool], counts: dict[str, int]
) -> str:
    def substitute(match: re.Match[str]) -> str:
        if not is_valid(match.group()):
            return match.group()
        counts[kind] = counts.get(kind, 0) + 1
        return f"[{kind}]"

    return pattern.sub(substitute, text)


def _digits(candidate: str) -> str:
    return "".join(ch for ch in candidate if ch.isdigit())


def _always(candidate: str) -> bool:
    return True


def is_luhn_valid(number: str) -> bool:
    """Return whether a string of digits passes the Luhn check used by payment cards."""
    total = 0
    for position, ch in enumerate(reversed(number)):
        digit = int(ch)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _is_card(candidate: str) -> bool:
    digits = _digits(candidate)
    return 13 <= len(digits) <= 19 and is_luhn_valid(digits)


def is_cn_id_valid(candidate: str) -> bool:
    """Return whether an 18-character Chinese resident ID has a GB 11643 checksum and a plausible birth date."""
    body, check = candidate[:17], candidate[17].upper()
    total = sum(int(ch) * weight for ch, weight in zip(body, _ID_WEIGHTS, strict=True))
    if _ID_CHECK_CHARS[total % 11] != check:
        return False
    try:
        born = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def is_iban_valid(candidate: str) -> bool:
    """Return whether an IBAN (spaces allowed) passes the ISO 13616 mod-97 check."""
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _is_international_phone(candidate: str) -> bool:
    return 8 <= len(_digits(candidate)) <= 15


# Order matters: e-mails first (their local part may be a phone number), checksummed kinds (IBAN, ID, card) before
# the looser phone shapes, and the catch-all account run last so it only takes what nothing else claimed.
_RULES: tuple[tuple[str, re.Pattern[str], Callable[[str], bool]], ...] = (
    ("EMAIL", _EMAIL, _always),
    ("ACCOUNT", _IBAN, is_iban_valid),
    ("ID", _CN_ID, is_cn_id_valid),
    ("CARD", _CARD, _is_card),
    ("PHONE", _CN_MOBILE, _always),
    ("PHONE", _CN_LANDLINE, _always),
    ("PHONE", _INTERNATIONAL, _is_international_phone),
    ("ACCOUNT", _ACCOUNT_DIGITS, _always),
)
