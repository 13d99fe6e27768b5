"""Masking of personal data: what is replaced, what is left alone, and the counts."""

import random

import pytest

from nlp.masking import Masked, is_cn_id_valid, is_iban_valid, is_luhn_valid, mask_pii, mask_text

VALID_CARD = "4111111111111111"
VALID_CN_CARD_19 = "6222021234567890128"
VALID_CN_ID = "11010519491231002X"


def luhn_complete(prefix: str) -> str:
    """Append the check digit that makes ``prefix`` Luhn-valid."""
    return next(prefix + d for d in "0123456789" if is_luhn_valid(prefix + d))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # cards
        (VALID_CARD, "[CARD]"),
        ("4111 1111 1111 1111", "[CARD]"),
        ("4111-1111-1111-1111", "[CARD]"),
        ("card 4539 1488 0343 6467 expires", "card [CARD] expires"),
        ("amex 3782 822463 10005", "amex [CARD]"),
        (VALID_CN_CARD_19, "[CARD]"),
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),  # Luhn fails and not a contiguous account run
        ("4111111111111112", "[ACCOUNT]"),  # Luhn fails: still a long digit run
        # Chinese resident IDs
        (VALID_CN_ID, "[ID]"),
        ("11010519491231002x", "[ID]"),
        ("身份证110105194912310021", "身份证[ACCOUNT]"),  # wrong checksum
        ("110105194913310021", "[ACCOUNT]"),  # month 13: right checksum, impossible birth date
        # phones
        ("13800138000", "[PHONE]"),
        ("+8613800138000", "[PHONE]"),
        ("+86 138 0013 8000", "[PHONE]"),
        ("0086 13800138000", "[PHONE]"),
        ("138 0013 8000", "[PHONE]"),
        ("138-0013-8000", "[PHONE]"),
        ("010-12345678", "[PHONE]"),
        ("0755-1234567", "[PHONE]"),
        ("(021) 87654321", "[PHONE]"),
        ("+44 20 7946 0958", "[PHONE]"),
        ("+1 (555) 123-4567", "[PHONE]"),
        ("+49-30-1234567", "[PHONE]"),
        ("12800138000", "[ACCOUNT]"),  # 12x is no mobile prefix, but 11 digits still look like an account
        # e-mail
        ("write to jane.doe+feedback@example.co.uk please", "write to [EMAIL] please"),
        ("邮箱13800138000@qq.com谢谢", "邮箱[EMAIL]谢谢"),
        # accounts
        ("GB82WEST12345698765432", "[ACCOUNT]"),
        ("IBAN GB82 WEST 1234 5698 7654 32 OK", "IBAN [ACCOUNT] OK"),
        ("DE89 3704 0044 0532 0130 00", "[ACCOUNT]"),
        ("GB83WEST12345698765432", "GB83WEST12345698765432"),  # mod-97 fails
        ("account 1234567890", "account [ACCOUNT]"),
        ("账户6217000010012345678", "账户[ACCOUNT]"),
        # mixed Chinese text without spaces
        (f"我的卡号是{VALID_CN_CARD_19}请回电13800138000", "我的卡号是[CARD]请回电[PHONE]"),
        (f"身份证号{VALID_CN_ID}，电话010-12345678。", "身份证号[ID]，电话[PHONE]。"),
    ],
)
def test_personal_data_is_replaced_by_its_placeholder(text, expected):
    assert mask_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I paid 1500 yuan",
        "waited 40 minutes at Counter 3",
        "rated it 1-5, gave 4/5",
        "visit on 2026-11-24 at 10:30",
        "2026年11月24日下午3点",
        "total ¥1,500.00 for 2 items",
        "pi is 3.14159265358979",
        "ticket 12345678",
        "queue number 0042",
        "we served 100,000 customers",
        "score 9.5 out of 10",
        "",
    ],
)
def test_ordinary_numbers_are_left_alone(text):
    assert mask_pii(text) == Masked(text=text, counts={})


def test_counts_every_kind_replaced():
    text = (
        f"card {VALID_CARD}, also 4111-1111-1111-1111; id {VALID_CN_ID}; iban GB82WEST12345698765432; "
        "acct 1234567890; call 13800138000 or +44 20 7946 0958; mail a@b.io"
    )
    masked = mask_pii(text)
    assert masked.counts == {"CARD": 2, "ID": 1, "ACCOUNT": 2, "PHONE": 2, "EMAIL": 1}
    assert masked.text == (
        "card [CARD], also [CARD]; id [ID]; iban [ACCOUNT]; acct [ACCOUNT]; call [PHONE] or [PHONE]; mail [EMAIL]"
    )


def test_multiple_items_in_one_text_are_all_masked():
    text = "13800138000、13900139000和13700137000都打不通"
    assert mask_pii(text) == Masked(text="[PHONE]、[PHONE]和[PHONE]都打不通", counts={"PHONE": 3})


@pytest.mark.parametrize(
    "text",
    [
        f"我的卡号是{VALID_CN_CARD_19}请回电13800138000",
        "mail me: x@y.com, +1 (555) 123-4567, GB82 WEST 1234 5698 7654 32",
        "nothing here 1500",
    ],
)
def test_masking_twice_gives_the_same_result(text):
    once = mask_text(text)
    assert mask_text(once) == once


def test_random_luhn_valid_cards_are_all_masked():
    rng = random.Random(20261124)
    for _ in range(500):
        number = luhn_complete(str(rng.randint(2, 6)) + "".join(str(rng.randint(0, 9)) for _ in range(14)))
        assert mask_pii(f"卡号{number}谢谢") == Masked(text="卡号[CARD]谢谢", counts={"CARD": 1}), number


def test_long_text_completes_with_sane_output():
    chunk = f"排队等了40分钟，柜台3号。Call 13800138000 or pay {VALID_CARD}. Rated 4/5 on 2026-11-24. "
    text = (chunk * (100_000 // len(chunk) + 1))[:100_000]
    masked = mask_pii(text)
    assert masked.counts["PHONE"] >= 1000
    assert masked.counts["CARD"] >= 1000
    assert 0 < len(masked.text) < len(text)
    assert "13800138000" not in masked.text


def test_long_digit_run_is_one_account_not_many():
    assert mask_text("9" * 30) == "[ACCOUNT]"
    assert mask_text("9" * 31) == "9" * 31  # longer than any account: left alone, not split


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    [
        (is_luhn_valid, "79927398713", True),
        (is_luhn_valid, "79927398710", False),
        (is_cn_id_valid, VALID_CN_ID, True),
        (is_cn_id_valid, "110105194912310021", False),
        (is_iban_valid, "GB82WEST12345698765432", True),
        (is_iban_valid, "GB82 WEST 1234 5698 7654 32", True),
        (is_iban_valid, "GB82WEST1234569876543", False),
    ],
)
def test_checksums(check, value, expected):
    assert check(value) is expected
