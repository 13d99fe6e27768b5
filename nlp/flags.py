"""Rules that flag serious feedback for staff: each gives a flag, its priority, SLA and a reason.

The rules are data (config/flags.toml, validated here): keywords per language, categories, a negative-sentiment
threshold with an optional rating, or the customer's request to be called back. They are deliberately simple;
negation ("not a scam") is not understood, so a keyword rule may fire on it and staff dismiss the case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import Field, model_validator

from nlp.taxonomy import IDENTIFIER, Bilingual, Strict, reject_duplicates

PLACEHOLDER = re.compile(r"\[(CARD|PHONE|EMAIL|ID|ACCOUNT)\]")


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Keywords(Strict):
    en: tuple[str, ...] = ()
    zh: tuple[str, ...] = ()


class FlagRule(Strict):
    id: str = Field(pattern=IDENTIFIER)
    name: Bilingual
    priority: Priority
    sla_hours: int = Field(ge=1, le=24 * 30)
    keywords: Keywords = Keywords()
    categories: tuple[str, ...] = ()
    min_category_score: float = Field(0.6, gt=0, le=1)
    min_negative: float | None = Field(None, gt=0, le=1)
    max_rating: int | None = Field(None, ge=1, le=5)
    callback_requested: bool = False

    @model_validator(mode="after")
    def _has_a_condition(self) -> FlagRule:
        if not (
            self.keywords.en or self.keywords.zh or self.categories or self.min_negative or self.callback_requested
        ):
            raise ValueError(
                f"flag {self.id!r} needs a condition: keywords, categories, min_negative or callback_requested"
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
    """Every rule that fires, with the first reason it fired for (never more of the text than a keyword)."""
    text = PLACEHOLDER.sub(" ", text)
    flags = []
    for rule in rules.flags:
        reason = _reason(rule, text, negative, categories, rating, callback_requested)
        if reason:
            flags.append(Flag(rule.id, rule.priority.value, rule.sla_hours, reason))
    return flags


def _reason(
    rule: FlagRule, text: str, negative: float, categories: Mapping[str, float], rating: int | None, callback: bool
) -> str | None:
    if rule.callback_requested and callback:
        return "the customer asked to be called back"
    keyword = _keyword(rule.keywords, text)
    if keyword:
        return f"keyword {keyword!r}"
    for category in rule.categories:
        if categories.get(category, 0.0) >= rule.min_category_score:
            return f"category {category} {categories[category]:.2f}"
    if rule.min_negative is not None and negative >= rule.min_negative:
        if rule.max_rating is None:
            return f"negative {negative:.2f}"
        if rating is not None and rating <= rule.max_rating:
            return f"negative {negative:.2f} with rating {rating}"
    return None


def _keyword(keywords: Keywords, text: str) -> str | None:
    lowered = text.lower()
    for word in keywords.en:
        if re.search(rf"(?<![a-z]){re.escape(word.lower())}(?![a-z])", lowered):
            return word
    return next((word for word in keywords.zh if word in text), None)
