"""Decide whether the adaptive follow-up adds information, and which categories to offer.

With the NLP module present, its fast single-text path ranks the categories. Without it, a simple rule does:
a comment that names a category's own words (English words or Chinese character pairs from the taxonomy's
names and examples) is specific; a short or unmatched one is vague.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nlp.taxonomy import Taxonomy

WORD = re.compile(r"[a-z]{3,}")
CJK = re.compile(r"[\u4e00-\u9fff]+")
STOPWORDS = frozenset(
    [
        "the",
        "and",
        "was",
        "were",
        "for",
        "with",
        "that",
        "this",
        "too",
        "very",
        "not",
        "but",
        "you",
        "your",
        "our",
        "are",
        "had",
        "has",
        "have",
        "they",
        "them",
        "there",
        "what",
        "when",
        "who",
        "how",
        "all",
        "any",
        "can",
        "could",
        "did",
        "does",
        "just",
        "more",
        "much",
        "only",
        "other",
        "some",
        "than",
        "then",
        "into",
        "out",
    ]
)
# Chinese character pairs that say how, not what: they must not tie a comment to a category.
GENERIC_PAIRS = frozenset(
    "太差 不好 很好 非常 没有 不是 一个 我们 你们 他们 这个 那个 什么 怎么 还是 就是 可以 不能 太慢 很差 了吧".split()
)
MIN_WORDS = 4
MIN_CJK_CHARS = 6
MAX_OFFERED = 10


class CategoryRanker(Protocol):
    """Score each category for one comment, in [0, 1]; the NLP module provides one, the rule below another."""

    def rank(self, comment: str) -> list[tuple[str, float]]: ...


@dataclass(frozen=True, slots=True)
class FollowupDecision:
    ask: bool
    offered: tuple[str, ...] = ()  # category ids, most likely first
    reason: str = ""


def decide_followup(scores: list[tuple[str, float]], taxonomy: Taxonomy, comment: str) -> FollowupDecision:
    """Ask only when the comment is vague: too short, or no category clearly found."""
    ranked = sorted(scores, key=lambda pair: -pair[1])
    is_short = _is_short(comment)
    top_score = ranked[0][1] if ranked else 0.0
    # Naming two problems is still specific: the aspects analysis will split them, the customer need not.
    if not is_short and top_score >= 0.5:
        return FollowupDecision(ask=False, reason="specific")
    # The likely categories first, then the rest, so the customer can always find theirs.
    matched = [cid for cid, score in ranked if score > 0]
    rest = [c.id for c in taxonomy.categories if c.id not in matched]
    offered = tuple((matched + rest)[:MAX_OFFERED])
    return FollowupDecision(ask=True, offered=offered, reason="short" if is_short else "unclear")


def _is_short(comment: str) -> bool:
    cjk = sum(len(run) for run in CJK.findall(comment))
    words = len(WORD.findall(comment.lower()))
    return cjk < MIN_CJK_CHARS and words < MIN_WORDS


class KeywordRanker:
    """The rule used without the NLP module: overlap between a comment and each category's own words."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self._terms = {c.id: _terms(_anchor_texts(c)) for c in taxonomy.categories}

    def rank(self, comment: str) -> list[tuple[str, float]]:
        found = _terms([comment])
        scores = []
        for category_id, terms in self._terms.items():
            hits = len(found & terms)
            scores.append((category_id, min(1.0, hits / 2)))
        return scores


def _anchor_texts(category) -> Sequence[str]:
    return [category.name.en, category.name.zh, *category.examples.en, *category.examples.zh]


def _terms(texts: Sequence[str]) -> set[str]:
    terms: set[str] = set()
    for value in texts:
        lowered = value.lower()
        terms.update(_stem(w) for w in WORD.findall(lowered) if w not in STOPWORDS)
        for run in CJK.findall(lowered):
            terms.update(run[i : i + 2] for i in range(len(run) - 1) if run[i : i + 2] not in GENERIC_PAIRS)
    return terms


def _stem(word: str) -> str:
    # Crude but enough for anchors: "waited"/"waiting"/"waits" all meet at "wait".
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word
