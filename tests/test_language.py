"""Language detection from characters and common words: English, Chinese, mixed, other scripts, nothing."""

import pytest

from nlp.language import detect_language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The queue was far too long", "en"),
        ("great", "en"),
        ("Friendly staff, quick service", "en"),  # telegraphic English has no function words
        ("Café was nice", "en"),  # one borrowed accent
        ("ＡＴＭ ｉｓ ｂｒｏｋｅｎ", "en"),  # full-width letters
        ("The ATM at 人民路 branch ate my card", "en"),  # a Chinese place name in an English sentence
        ("排队太久了", "zh"),
        ("排隊太久了，服務很差", "zh"),  # traditional characters
        ("APP闪退", "zh"),
        ("原文请见http://blog.example.com/31436136_d.html", "zh"),  # a link's letters are not English
    ],
)
def test_clear_cases(text, language):
    assert detect_language(text) == language


@pytest.mark.parametrize(
    "text",
    [
        "ATM机坏了，card被吞了",
        "我的account被freeze了",
        "My card 被吞了",
        "柜员态度很好，但是排队等了一个小时 the teller",
    ],
)
def test_chinese_with_english_words_is_chinese(text):
    assert detect_language(text) == "zh"


@pytest.mark.parametrize(
    "text",
    [
        "Der Service war sehr langsam und unfreundlich",
        "Le service était très lent",
        "El servicio es muy lento",
        "Pelayanan sangat lambat dan tidak ramah",
        "Tiền phí quá cao",
        "Очень долго ждал",
        "待ち時間が長すぎる",
        "대기 시간이 너무 길어요",
    ],
)
def test_other_languages_are_other(text):
    assert detect_language(text) == "other"


@pytest.mark.parametrize("text", ["", "   ", "😡😡😡", "😡😡😡 123", "3.5", "!!! ...", "\x00\x07"])
def test_nothing_to_read_is_other(text):
    assert detect_language(text) == "other"


def test_a_long_comment_is_read():
    text = "柜员态度很好，但是排队等了一个小时。" * 10_000  # its speed is bench/'s job, not a wall-clock assert
    assert detect_language(text) == "zh"
