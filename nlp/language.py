"""Which language a comment is in (en, zh or other), from its characters and a few common words: no model needed."""

from __future__ import annotations

import re
import unicodedata

SAMPLE_CHARS = 4000  # the start of a comment says which language it is in; reading more only costs time
HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
CJK = re.compile(f"[{HAN}]")
KANA_HANGUL = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff]")
ASCII_LETTER = re.compile(r"[A-Za-z]")
ASCII_WORD = re.compile(r"[A-Za-z]+")
# Letters of any other script, and Latin letters with diacritics (é, ñ, ß, ư): English has almost none.
OTHER_LETTER = re.compile(rf"[^\W\d_A-Za-z{HAN}\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff]")
URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)  # its letters say nothing about the language
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")

ENGLISH_WORDS = frozenset(
    "the a an and or but is are was were be been am it its this that these those i me you we they he she my your our "
    "their to of in on at for from with by about not no very too so can could would will should do did does don't "
    "didn't can't won't isn't wasn't have has had there here what why how when who which please thanks thank just "
    "all any more much only than then if as also again after before because".split()
)
# Function words of the Latin-script languages a branch's customers most often write instead of English. A word
# that is also English ("in", "a", "no", "me", "die") is left out, so it cannot argue against English.
FOREIGN_WORDS = frozenset(
    # German, Dutch
    "der das und ist nicht ich sehr mit war wir sie ein eine auf für zu het een niet ik zijn dat wat "
    # French, Spanish, Portuguese, Italian
    "le la les et est une je pas tres très avec pour du des il elle nous el los las es muy por para una pero "
    "con del que y o não nao uma com muito di il che della sono molto "
    # Indonesian, Malay, Vietnamese without marks
    "yang dan tidak saya dengan sangat untuk ini itu ada"
    "".split()
)


def detect_language(text: str) -> str:
    """Return 'zh' when Chinese carries the meaning, 'en' for English, and 'other' for anything else or nothing."""
    sample = URL.sub(" ", unicodedata.normalize("NFKC", text[:SAMPLE_CHARS]))  # full-width ＡＴＭ reads as ATM
    han = len(CJK.findall(sample))
    kana_hangul = len(KANA_HANGUL.findall(sample))
    latin = len(ASCII_LETTER.findall(sample))
    other = len(OTHER_LETTER.findall(sample))
    if han + latin + other + kana_hangul == 0:
        return "other"  # empty, emoji, digits, punctuation
    if kana_hangul * 2 >= han and kana_hangul > 0:
        return "other"  # Japanese mixes kanji with kana; Korean is hangul
    # A Chinese sentence with English words in it ("ATM机坏了，card被吞了") is Chinese: it is Chinese when its
    # ideographs make at least as many words (about 1.5 characters each) as its English words.
    if han and han * 2 >= len(ASCII_WORD.findall(sample)) * 3:
        return "zh"
    return _english_or_other(sample, latin, other)


def _english_or_other(sample: str, latin: int, other: int) -> str:
    if other * 4 > latin:
        return "other"  # Cyrillic, Arabic, Thai... or Latin with more than the odd borrowed "café"
    words = WORD.findall(sample.lower())
    english = sum(1 for w in words if w in ENGLISH_WORDS)
    foreign = sum(1 for w in words if w in FOREIGN_WORDS)
    # Feedback is often telegraphic ("friendly staff, quick service"): plain ASCII words are English unless
    # another language's function words outnumber the English ones.
    return "other" if foreign > english else "en"
