"""Flag rules over an analysis: what fires, what must not, the reasons, and the rules file's validation."""

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.files import parse_file
from config.settings import PACKAGE_DIR
from nlp.flags import Flag, FlagRules, evaluate_flags

RULES = parse_file(FlagRules, PACKAGE_DIR / "flags.toml")


def fired(text: str = "", *, language: str = "en", negative: float = 0.1, categories=None, rating=None,
          callback: bool = False, rules: FlagRules = RULES) -> dict[str, str]:  # fmt: skip
    found = evaluate_flags(
        rules,
        text=text,
        language=language,
        negative=negative,
        categories=categories or {},
        rating=rating,
        callback_requested=callback,
    )
    return {flag.id: flag.reason for flag in found}


def test_the_shipped_rules_load_with_every_flag():
    assert [rule.id for rule in RULES.flags] == [
        "fraud_security",
        "legal_threat",
        "safety",
        "callback_request",
        "very_negative",
    ]


@pytest.mark.parametrize(
    ("text", "flag", "keyword"),
    [
        ("Someone made an unauthorised transaction on my card", "fraud_security", "unauthorised"),
        ("I think this was a SCAM", "fraud_security", "scam"),
        ("I got a phishing text", "fraud_security", "phishing"),
        ("I will talk to my lawyer about these fees", "legal_threat", "lawyer"),
        ("I will sue the bank", "legal_threat", "sue"),
        ("I'll complain to the regulator", "legal_threat", "regulator"),
        ("See you in court", "legal_threat", "court"),
        ("My mother slipped on the wet floor", "safety", "slipped"),
        ("There was smoke near the ATM", "safety", "smoke"),
        ("please call me back tomorrow", "callback_request", "call me"),
        ("Could someone call-back?", "callback_request", "call back"),
        ("卡被盗刷了两千块", "fraud_security", "盗刷"),
        ("有人冒充银行给我打电话", "fraud_security", "冒充"),
        ("账户里有一笔不明交易", "fraud_security", "不明交易"),
        ("我要去银保监投诉你们", "legal_threat", "银保监"),
        ("我要打12378投诉", "legal_threat", "12378"),
        ("我已经找了律师", "legal_threat", "律师"),
        ("大厅地板太滑，老人摔倒了", "safety", "摔倒"),
        ("门口有人抢劫", "safety", "抢劫"),
        ("请尽快回电", "callback_request", "回电"),
        ("我要找lawyer", "legal_threat", "lawyer"),  # an English word inside Chinese text
    ],
)
def test_a_keyword_fires_its_flag_and_is_named(text, flag, keyword):
    language = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"
    assert fired(text, language=language) == {flag: f"keyword {keyword!r}"}


@pytest.mark.parametrize(
    "text",
    [
        "The issue was solved quickly",  # "sue" inside "issue"
        "Courteous staff, thank you",  # "court" inside "courteous"
        "She pursued the matter for me",  # "sue" inside "pursued"
        "Quick and friendly, no complaints",
        "I paid 123780 yuan in fees",  # "12378" inside a longer number
        "转账金额是123780元",
        "服务很好，谢谢",
        "",
    ],
)
def test_near_misses_fire_nothing(text):
    assert fired(text) == {}


@pytest.mark.parametrize("text", ["[PHONE]", "call [PHONE]", "[PHONE] [CARD] [EMAIL] [ID] [ACCOUNT]", "电话[PHONE]"])
def test_masked_placeholders_fire_nothing(text):
    assert fired(text) == {}


def test_negation_is_not_understood():
    # Documented in flags.toml: the rules stay simple, and staff dismiss such a case.
    assert fired("this was not a scam") == {"fraud_security": "keyword 'scam'"}


def test_a_keyword_is_named_not_the_customers_text():
    flags = evaluate_flags(
        RULES, text="My name is Li and someone stole my card, it was fraud", language="en", negative=0.2,
        categories={}, rating=None, callback_requested=False,
    )  # fmt: skip
    assert flags == [Flag("fraud_security", "urgent", 4, "keyword 'fraud'")]


@pytest.mark.parametrize(
    ("negative", "rating", "expected"),
    [
        (0.93, 1, {"very_negative": "negative 0.93 with rating 1"}),
        (0.85, 2, {"very_negative": "negative 0.85 with rating 2"}),
        (0.95, 3, {}),  # the rating is not low enough
        (0.84, 1, {}),  # not negative enough
        (0.99, None, {}),  # no rating given
    ],
)
def test_very_negative_needs_both_a_negative_reading_and_a_low_rating(negative, rating, expected):
    assert fired("awful", negative=negative, rating=rating) == expected


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.71, {"fraud_security": "category fraud_security 0.71"}),
        (0.7, {"fraud_security": "category fraud_security 0.70"}),
        (0.69, {}),
        (None, {}),
    ],
)
def test_a_category_score_fires_at_its_threshold(score, expected):
    categories = {"waiting_time": 0.99} | ({"fraud_security": score} if score is not None else {})
    assert fired("odd charge", categories=categories) == expected


def test_a_call_back_request_fires_without_words():
    assert fired("", callback=True) == {"callback_request": "the customer asked to be called back"}


def test_several_flags_fire_together():
    found = fired("Fraud on my card, I will call my lawyer. Call me back.", negative=0.97, rating=1)
    assert set(found) == {"fraud_security", "legal_threat", "callback_request", "very_negative"}


def test_the_comments_language_is_tried_first():
    rules = FlagRules.model_validate(
        {"flags": [{"id": "x", "name": {"en": "X", "zh": "某"}, "priority": "low", "sla_hours": 1,
                    "keywords": {"en": ["fraud"], "zh": ["诈骗"]}}]}
    )  # fmt: skip
    assert fired("fraud 诈骗", language="zh", rules=rules) == {"x": "keyword '诈骗'"}
    assert fired("fraud 诈骗", language="en", rules=rules) == {"x": "keyword 'fraud'"}


def test_a_rating_alone_can_be_a_rule():
    rules = FlagRules.model_validate(
        {"flags": [{"id": "lowest", "name": {"en": "X", "zh": "某"}, "priority": "low", "sla_hours": 1,
                    "max_rating": 1}]}
    )  # fmt: skip
    assert fired(rating=1, rules=rules) == {"lowest": "rating 1"}
    assert fired(rating=2, rules=rules) == {}


RULE = '[[flags]]\nid = "x"\nname = { en = "X", zh = "某" }\npriority = "low"\nsla_hours = 4\nkeywords.en = ["a"]\n'


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (RULE.replace('"low"', '"asap"'), r"key flags\[0\] \(x\)\.priority: Input should be 'low', 'normal'"),
        (RULE.replace('keywords.en = ["a"]\n', ""), r"flag 'x' needs a condition"),
        (RULE + RULE, r"duplicate flag ids: x"),
        (RULE + "colour = 1\n", r"key flags\[0\] \(x\)\.colour: unknown key"),
        (RULE.replace("sla_hours = 4", "sla_hours = 0"), r"key flags\[0\] \(x\)\.sla_hours: .*greater than or equal"),
        (RULE + "min_negative = 1.5\n", r"key flags\[0\] \(x\)\.min_negative: .*less than or equal to 1"),
        (RULE + "max_rating = 6\n", r"key flags\[0\] \(x\)\.max_rating"),
        (RULE.replace('["a"]', '[" "]'), r"key flags\[0\] \(x\)\.keywords\.en\[0\]"),
        (RULE + "keywords.fr = []\n", r"key flags\[0\] \(x\)\.keywords\.fr: unknown key"),
        (RULE.replace('id = "x"', 'id = "Very Negative"'), r"key flags\[0\] \(Very Negative\)\.id"),
        ("", r"key flags: Field required"),
    ],
)
def test_a_wrong_rules_file_is_named_by_key(tmp_path: Path, toml, message):
    path = tmp_path / "flags.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        parse_file(FlagRules, path)
