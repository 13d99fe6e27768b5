"""Which language a comment is in (en, zh or other), from its characters alone: no model needed."""

from __future__ import annotations

import re

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")
OTHER_LETTERS = re.compile(r"[^\W\d_A-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
ENGLISH_WORDS = frozenset(
    "the a an and or but is are was were be been it this that i you we they he she my your our to of in on at for "
    "with not no very too so can could would will do did does have has had there here what why how when please "
    "thanks thank good bad great slow fast".split()
)
WORD = re.compile(r"[a-z']+")


def detect_language(text: str) -> str:
    """'zh' when Chinese carries the meaning, 'en' for English, 'other' for anything else or nothing."""
    cjk = len(CJK.findall(text))
    latin = len(LATIN.findall(text))
    other = len(OTHER_LETTERS.findall(text))
    if cjk == 0 and latin == 0:
        return "other"
    # A Chinese sentence with a few English words ("ATM机坏了，card被吞了") is Chinese: one ideograph carries
    # about as much as a three-letter word.
    if cjk * 3 >= latin:
        return "zh"
    if other > latin:
        return "other"
    words = WORD.findall(text.lower())
    english = sum(1 for w in words if w in ENGLISH_WORDS)
    return "en" if len(words) <= 2 or english / len(words) >= 0.2 else "other"
