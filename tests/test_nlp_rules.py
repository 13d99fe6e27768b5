"""The parts of the analysis that need no model: language, clauses and the flag rules."""

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.files import parse_file
from config.settings import PACKAGE_DIR
from nlp.clauses import MAX_CLAUSES, split_clauses
from nlp.flags import FlagRules, evaluate_flags
from nlp.language import detect_language

RULES = parse_file(FlagRules, PACKAGE_DIR / "flags.toml")


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The queue was far too long", "en"),
        ("排队太久了", "zh"),
        ("ATM机坏了，card被吞了", "zh"),
        ("great", "en"),
        ("Der Service war sehr langsam und unfreundlich", "other"),
        ("Очень долго ждал", "other"),
        ("", "other"),
        ("😡😡😡 123", "other"),
    ],
)
def test_language_is_read_from_the_characters(text, language):
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("text", "clauses"),
    [
        ("the teller was kind but I waited 40 minutes", ["the teller was kind", "I waited 40 minutes"]),
        ("柜员态度很好，但是排队等了一个小时", ["柜员态度很好", "排队等了一个小时"]),
        ("Great service.", ["Great service"]),
        ("I paid 3.5 dollars. The fee is too high!", ["I paid 3.5 dollars", "The fee is too high"]),
        ("Friendly staff, however the app keeps crashing", ["Friendly staff", "the app keeps crashing"]),
        ("服务不错，不过停车位太少", ["服务不错", "停车位太少"]),
        ("", []),
    ],
)
def test_comments_split_into_clauses(text, clauses):
    assert split_clauses(text) == clauses


def test_a_huge_comment_gives_a_bounded_number_of_clauses():
    assert len(split_clauses("slow. " * 20_000)) == MAX_CLAUSES


def flags(text: str, *, negative: float = 0.1, categories=None, rating=None, callback=False, language="en"):
    found = evaluate_flags(
        RULES,
        text=text,
        language=language,
        negative=negative,
        categories=categories or {},
        rating=rating,
        callback_requested=callback,
    )
    return {f.id: f.reason for f in found}


@pytest.mark.parametrize(
    ("text", "fired"),
    [
        ("Someone made an unauthorized transaction on my card", {"fraud_security"}),
        ("卡被盗刷了两千块", {"fraud_security"}),
        ("I will talk to my lawyer about these fees", {"legal_threat"}),
        ("我要去银保监投诉你们", {"legal_threat"}),
        ("My mother slipped on the wet floor", {"safety"}),
        ("大厅地板太滑，老人摔倒了", {"safety"}),
        ("please call me back tomorrow", {"callback_request"}),
        ("The issue was solved quickly", set()),  # "sue" inside "issue"
        ("Courteous staff, thank you", set()),  # "court" inside "courteous"
        ("call me on [PHONE]", {"callback_request"}),
        ("[PHONE] [CARD]", set()),
    ],
)
def test_flag_rules(text, fired):
    assert set(flags(text)) == fired


def test_very_negative_needs_a_low_rating_too():
    assert flags("awful", negative=0.95, rating=1) == {"very_negative": "negative 0.95 with rating 1"}
    assert flags("awful", negative=0.95, rating=4) == {}
    assert flags("awful", negative=0.5, rating=1) == {}


def test_category_and_callback_conditions():
    assert flags("odd charge", categories={"fraud_security": 0.8}) == {"fraud_security": "category fraud_security 0.80"}
    assert flags("", callback=True) == {"callback_request": "the customer asked to be called back"}


def test_a_rule_without_conditions_or_with_a_bad_priority_is_named(tmp_path: Path):
    path = tmp_path / "flags.toml"
    path.write_text(
        '[[flags]]\nid = "x"\nname = { en = "X", zh = "某" }\npriority = "asap"\nsla_hours = 4\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"key flags\[0\] \(x\)\.priority: Input should be 'low'"):
        parse_file(FlagRules, path)
    path.write_text(
        '[[flags]]\nid = "x"\nname = { en = "X", zh = "某" }\npriority = "low"\nsla_hours = 4\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="flag 'x' needs a condition"):
        parse_file(FlagRules, path)
