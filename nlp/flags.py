"""Rules that flag serious feedback for staff: each gives a flag, its priority, SLA and a reason.

The rules are data (config/flags.toml, validated here): keywords per language, categories, a negative-sentiment
threshold and/or a low rating, or the customer's request to be called back. They are deliberately simple: negation
is not understood ("not a scam" matches "scam"), so a keyword rule may fire on it and staff dismiss the case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from nlp.taxonomy import IDENTIFIER, Bilingual, Strict, reject_duplicates

# The masker's placeholders: "[PHONE]" is not the word "phone", and the digits it hid are gone.
PLACEHOLDER = re.compile(r"\[(?:CARD|PHONE|EMAIL|ID|ACCOUNT)\]")
SPACE = r"[\s-]+"
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Keywords(Strict):
    """English keywords match whole words, case-insensitively; Chinese ones anywhere (Chinese has no spaces)."""

    en: tuple[Keyword, ...] = ()
    zh: tuple[Keyword, ...] = ()


class FlagRule(Strict):
    """One flag; any one of its conditions fires it."""

    id: str = Field(pattern=IDENTIFIER)
    name: Bilingual
    priority: Priority
    sla_hours: int = Field(ge=1, le=24 * 30)
    keywords: Keywords = Keywords()
    categories: tuple[Annotated[str, Field(pattern=IDENTIFIER)], ...] = ()
    min_category_score: float = Field(0.6, gt=0, le=1)
    # Together: negative at least min_negative AND a rating at most max_rating (a missing rating never qualifies).
    min_negative: float | None = Field(None, gt=0, le=1)
    max_rating: int | None = Field(None, ge=1, le=5)
    callback_requested: bool = False

    @model_validator(mode="after")
    def _has_a_condition(self) -> FlagRule:
        if not (
            self.keywords.en
            or self.keywords.zh
            or self.categories
            or self.min_negative is not None
            or self.max_rating is not None
            or self.callback_requested
        ):
            raise ValueError(
                f"flag {self.id!r} needs a condition: keywords, categories, min_negative, max_rating "
                "or callback_requested"
            )
        return self


class FlagRules(Strict):
    flags: tuple[FlagRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> FlagRules:
        reject_duplicates("flag ids", [f.id for f in self.flags])
        return self


@dataclass(frozen=True, slots=True)
class Flag:
    """A rule that fired, and why: the reason names a keyword, a category or a score, never more of the text."""

    id: str
    priority: str
    sla_hours: int
    reason: str


def evaluate_flags(
    rules: FlagRules,
    *,
    text: str,
    language: str,
    negative: float,
    categories: Mapping[str, float],
    rating: int | None,
    callback_requested: bool,
) -> list[Flag]:
    """Return every rule that fires on a (masked) comment, each with the first reason it fired for.

    Both languages' keywords are tried whatever `language` is (mixed comments are common); the comment's own
    language is tried first, so the reason names a keyword in it.
    """
    text = PLACEHOLDER.sub(" ", text).lower()
    flags = []
    for rule in rules.flags:
        reason = (
            _callback(rule, callback_requested)
            or _keyword(rule.keywords, text, language)
            or _category(rule, categories)
            or _sentiment(rule, negative, rating)
        )
        if reason:
            flags.append(Flag(rule.id, rule.priority.value, rule.sla_hours, reason))
    return flags


def _callback(rule: FlagRule, requested: bool) -> str | None:
    return "the customer asked to be called back" if rule.callback_requested and requested else None


def _keyword(keywords: Keywords, text: str, language: str) -> str | None:
    lists = [(keywords.en, _english), (keywords.zh, _chinese)]
    for words, compile_word in lists[::-1] if language == "zh" else lists:
        # A plain substring test first: it is fast, and most comments contain none of the keywords.
        found = next((w for w in words if _stem(w) in text and compile_word(w).search(text)), None)
        if found:
            return f"keyword {found!r}"
    return None


def _category(rule: FlagRule, categories: Mapping[str, float]) -> str | None:
    for category in rule.categories:
        score = categories.get(category, 0.0)
        if score >= rule.min_category_score:
            return f"category {category} {score:.2f}"
    return None


def _sentiment(rule: FlagRule, negative: float, rating: int | None) -> str | None:
    if rule.min_negative is None and rule.max_rating is None:
        return None
    if rule.min_negative is not None and negative < rule.min_negative:
        return None
    if rule.max_rating is not None and (rating is None or rating > rule.max_rating):
        return None
    if rule.max_rating is None:
        return f"negative {negative:.2f}"
    return f"rating {rating}" if rule.min_negative is None else f"negative {negative:.2f} with rating {rating}"


def _stem(word: str) -> str:
    return word.lower().split()[0]


@lru_cache(maxsize=1024)
def _english(word: str) -> re.Pattern[str]:
    # Whole words ("sue" is not in "issue", nor "court" in "courteous"), also inside Chinese text ("找lawyer");
    # a space in a keyword also matches a hyphen or several spaces.
    pattern = SPACE.join(map(re.escape, word.lower().split()))
    return re.compile(rf"(?<![a-z0-9]){pattern}(?![a-z0-9])")


@lru_cache(maxsize=1024)
def _chinese(word: str) -> re.Pattern[str]:
    # Anywhere in the text, except that a number ("12378") is not part of a longer number.
    pattern = re.escape(word.lower())
    before = r"(?<!\d)" if pattern[:1].isdigit() else ""
    after = r"(?!\d)" if pattern[-1:].isdigit() else ""
    return re.compile(before + pattern + after)
