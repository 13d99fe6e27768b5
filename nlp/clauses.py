"""Split a comment into clauses for aspect analysis: sentences, then contrastive or joining boundaries."""

from __future__ import annotations

import re

MAX_CLAUSES = 50
SCAN_CHARS = 20_000  # a longer comment is read for its first clauses only
# A full stop ends a sentence after a word of two letters or more ("e.g." and "3.5" stay whole).
SENTENCE_END = re.compile(r"(?<=[。！？!?；;\n])|(?<=[A-Za-z]{2}\.)\s+")
ENGLISH_JOINS = re.compile(
    r"\s*(?:,\s*)?\b(?:but|however|although|though|yet|whereas|while)\b\s*,?\s*|\s*,\s*and\s+(?=i\b|the\b|it\b|they\b|we\b)",
    re.IGNORECASE,
)
CHINESE_JOINS = re.compile(r"[，,]?\s*(?:但是|但|可是|不过|然而|虽然)\s*|(?<=[\u4e00-\u9fff])却")
CHINESE_COMMA = re.compile(r"[，]")
MIN_PART = 3  # characters; shorter pieces stay with their neighbour
WORDY = re.compile(r"[A-Za-z\u4e00-\u9fff]")


def split_clauses(text: str) -> list[str]:
    """Return the clauses of `text`, connectors dropped; a short or single-clause text comes back whole."""
    text = text[:SCAN_CHARS].strip()
    if not text:
        return []
    clauses: list[str] = []
    for sentence in SENTENCE_END.split(text):
        for part in _split_sentence(sentence.strip()):
            if len(clauses) == MAX_CLAUSES:
                return clauses
            clauses.append(part)
    return clauses or [text]


def _split_sentence(sentence: str) -> list[str]:
    if not WORDY.search(sentence):
        return []
    pieces = [sentence]
    for pattern in (ENGLISH_JOINS, CHINESE_JOINS, CHINESE_COMMA):
        pieces = [p for piece in pieces for p in pattern.split(piece)]
    kept = [p.strip(" ,，。.;；!！?？") for p in pieces]
    kept = [p for p in kept if p and WORDY.search(p)]
    merged: list[str] = []
    for piece in kept:
        if merged and len(piece) < MIN_PART:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged
