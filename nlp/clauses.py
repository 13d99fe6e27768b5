"""Split a comment into clauses for aspect analysis: sentences, then contrastive or joining boundaries.

A clause never carries its connector ("but", "但是") or edge punctuation. A cut is made only where both sides are
clause-sized, so a short text ("good but slow", "你好，谢谢") comes back whole. Text with no letter or digit (empty,
emoji, punctuation) has no clauses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

MAX_CLAUSES = 50
SCAN_CHARS = 20_000  # a longer comment is read for its first clauses only
HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
ABBREVIATIONS = frozenset("mr mrs ms dr prof st no vs etc eg ie approx jr sr".split())

# Sentence ends: CJK and hard punctuation anywhere; a full stop only before a space ("3.5" stays whole) or between
# Chinese characters (some people type "." for "。").
HARD_END = re.compile(rf"[。！？!?；;…\n]+|(?<=[{HAN}])\.+|(?:(?<=[^\W_])|(?<=[)\"”’']))\.+(?=\s)")
ENGLISH_JOIN = re.compile(
    r"\b(?:but|however|whereas|although|(?:even\s+)?(?<!\bas\s)though"
    r"|(?<!\bnot\s)(?<!n't\s)(?<!\bas\s)yet(?=\s+[^\W\d_])"  # not "not yet", nor "yet" ending a clause
    r"|(?<!\ba\s)while)\b\s*,?"  # not "for a while"
    r"|,\s*and\s+(?=(?:i|the|it|they|we|he|she|you|my|our|their|there|this|that|nobody|everyone|someone)\b)",
    re.IGNORECASE,
)
# A sentence that opens with a subordinate clause ("Although the staff were kind, I waited") turns at its comma.
LEADING_CLAUSE = re.compile(r"^\W*(?:although|though|even\s+though|while|whereas)\b[^,]{3,}?(,)", re.IGNORECASE)
# 但 alone, but not in 不但 (not only), 但愿 (hopefully) or 但凡; 不过 only at a clause start (不过如此 is "so-so");
# 却 only inside a clause that has no comma before it ("态度好却办事慢"; in "…，经理却很冷淡" the comma cuts).
CHINESE_JOIN = re.compile(r"但是|可是|然而|虽然|(?<!不)但(?![愿凡])|(?:^|(?<=[，,\s]))不过|(?<=[" + HAN + r"])却")
COMMA = re.compile(rf"，|(?<=[{HAN}]),|,(?=\s*[{HAN}])")
EDGES = " \t\r\n,，、.。;；:：!！?？¡¿…-—~～"  # not brackets or quotes: "[PHONE]" and "(ATM)" must stay whole
WORD = re.compile(rf"[{HAN}]|[^\W_{HAN}]+")
MIN_WORDS = 2  # each side of a connector; a Chinese character counts as a word
MIN_WORDS_AT_COMMA = 3  # a comma also lists things ("干净，明亮"): it cuts only between longer pieces


def split_clauses(text: str) -> list[str]:
    """Return the clauses of `text`, at most MAX_CLAUSES, connectors and edge punctuation dropped."""
    text = text[:SCAN_CHARS]
    clauses: list[str] = []
    for start, end in _sentences(text):
        for clause in _split_sentence(text[start:end]):
            clauses.append(clause)
            if len(clauses) == MAX_CLAUSES:
                return clauses
    return clauses


def _sentences(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    for match in HARD_END.finditer(text):
        if match.group().startswith(".") and _ends_with_abbreviation(text, match.start()):
            continue
        yield start, match.start()
        start = match.end()
    yield start, len(text)


def _ends_with_abbreviation(text: str, dot: int) -> bool:
    word = re.search(r"(?<![A-Za-z.])[A-Za-z]+(?:\.[A-Za-z]+)*$", text[max(0, dot - 12) : dot])
    if word is None:
        return False
    token = word.group()
    return token.lower() in ABBREVIATIONS or "." in token or len(token) == 1  # "Dr.", "e.g.", "U.S.", an initial


def _split_sentence(sentence: str) -> list[str]:
    if not WORD.search(sentence):
        return []
    kept: list[tuple[int, int]] = []
    start = end = size = 0  # the clause being built
    for (piece_start, piece_end), minimum in _pieces(sentence, sorted(_cuts(sentence))):
        piece_size = _size(sentence[piece_start:piece_end])
        if size == 0:
            start, end, size = piece_start, piece_end, piece_size  # a connector opening the sentence is dropped
        elif size >= minimum and piece_size >= minimum:
            kept.append((start, end))
            start, end, size = piece_start, piece_end, piece_size
            if len(kept) == MAX_CLAUSES:
                break
        elif piece_size:
            end, size = piece_end, size + piece_size  # too small to stand alone: the cut is undone, text kept
    else:
        kept.append((start, end))
    clauses = [sentence[start:end].strip(EDGES) for start, end in kept]
    # A sentence of connectors alone ("But.") is still what the customer said.
    return [clause for clause in clauses if WORD.search(clause)] or [sentence.strip(EDGES)]


def _cuts(sentence: str) -> Iterator[tuple[int, int, int]]:
    """Yield (start, end, minimum side size) of every place the sentence may be cut."""
    for match in ENGLISH_JOIN.finditer(sentence):
        yield match.start(), match.end(), MIN_WORDS
    leading = LEADING_CLAUSE.match(sentence)
    if leading:
        yield leading.start(1), leading.end(1), MIN_WORDS
    first_comma = COMMA.search(sentence)
    for match in CHINESE_JOIN.finditer(sentence):
        if match.group() == "却" and first_comma and first_comma.start() < match.start():
            continue
        yield match.start(), match.end(), MIN_WORDS
    for match in COMMA.finditer(sentence):
        yield match.start(), match.end(), MIN_WORDS_AT_COMMA


def _pieces(sentence: str, cuts: list[tuple[int, int, int]]) -> list[tuple[tuple[int, int], int]]:
    """The text between cuts, each with the minimum size of the cut before it (0 for the first)."""
    pieces, start, minimum = [], 0, 0
    for cut_start, cut_end, cut_minimum in cuts:
        if cut_start < start:
            continue  # overlaps the previous cut (", but" is one boundary)
        pieces.append(((start, cut_start), minimum))
        start, minimum = cut_end, cut_minimum
    pieces.append(((start, len(sentence)), minimum))
    return pieces


def _size(piece: str) -> int:
    return len(WORD.findall(piece))
