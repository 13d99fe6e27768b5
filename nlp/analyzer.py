"""Read a comment: language, masked text, sentiment, categories, sentence-level aspects and flags.

Plain data in, plain data out, synchronous (the worker runs it off the event loop). One encoder pass per text,
plus one per clause for comments with several clauses; every head works on those embeddings (a bank's own category
set also reads other embeddings of the same texts, nlp.views).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from nlp.clauses import split_clauses
from nlp.flags import Flag, FlagRules, evaluate_flags
from nlp.heads import SentimentModel
from nlp.language import detect_language
from nlp.masking import mask_text

ASSIGNED = 0.5  # a category counts for a comment (or a clause) from this score on
MAX_CHARS = 2000


class Encoder(Protocol):
    version: str

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


class Categories(Protocol):
    labels: tuple[str, ...]

    def scores(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray: ...


class FeedbackLike(Protocol):
    comment: str | None
    language: str
    csat: int | None
    callback_requested: bool


@dataclass(frozen=True, slots=True)
class Aspect:
    text: str
    category: str | None
    category_score: float
    sentiment: str
    sentiment_scores: dict[str, float]


@dataclass(frozen=True, slots=True)
class TextAnalysis:
    language: str
    masked_text: str
    sentiment: str
    sentiment_scores: dict[str, float]
    categories: list[tuple[str, float]]  # every category with its score, highest first
    aspects: list[Aspect] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    @property
    def assigned(self) -> list[str]:
        return [c for c, score in self.categories if score >= ASSIGNED]


class Analyzer:
    def __init__(
        self, encoder: Encoder, sentiment: SentimentModel, categories: Categories, flags: FlagRules, *, version: str
    ) -> None:
        self._encoder = encoder
        self._sentiment = sentiment
        self._categories = categories
        self._flags = flags
        self.version = version

    def analyze(
        self,
        texts: Sequence[str],
        *,
        ratings: Sequence[int | None] | None = None,
        callbacks: Sequence[bool] | None = None,
    ) -> list[TextAnalysis]:
        """Analyse a batch of comments; `ratings` (CSAT 1-5) and `callbacks` feed the flag rules."""
        masked = [mask_text(t[:MAX_CHARS]) for t in texts]
        languages = [detect_language(t) for t in masked]
        clauses = [split_clauses(t) for t in masked]
        extra = [c for parts in clauses if len(parts) > 1 for c in parts]
        extra_languages = [languages[i] for i, parts in enumerate(clauses) if len(parts) > 1 for _ in parts]
        inputs = [t if t.strip() else "." for t in masked]
        vectors = self._encoder.encode(inputs + extra)
        whole, parts = vectors[: len(masked)], vectors[len(masked) :]
        sentiments = self._sentiment.predict(inputs, whole, languages)
        categories = self._categories.scores(inputs, whole)
        part_sentiments = self._sentiment.predict(extra, parts, extra_languages)
        part_categories = self._categories.scores(extra, parts)
        results, cursor = [], 0
        for i, text in enumerate(masked):
            rating = ratings[i] if ratings else None
            aspects = []
            if len(clauses[i]) > 1:
                count = len(clauses[i])
                aspects = self._aspects(
                    clauses[i], part_sentiments[cursor : cursor + count], part_categories[cursor : cursor + count]
                )
                cursor += count
            callback = callbacks[i] if callbacks else False
            results.append(self._one(text, languages[i], sentiments[i], categories[i], aspects, rating, callback))
        return results

    @property
    def sentiment_labels(self) -> tuple[str, ...]:
        return self._sentiment.labels

    def sentiment_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Sentiment probabilities of whole texts (no clauses, no flags): for evaluation."""
        inputs = [mask_text(t[:MAX_CHARS]) or "." for t in texts]
        languages = [detect_language(t) for t in inputs]
        return self._sentiment.predict(inputs, self._encoder.encode(inputs), languages)

    def top_categories(self, texts: Sequence[str]) -> list[str]:
        """The best-scoring category of each text: for evaluation."""
        inputs = [mask_text(t[:MAX_CHARS]) or "." for t in texts]
        scores = self._categories.scores(inputs, self._encoder.encode(inputs))
        return [self._categories.labels[i] for i in scores.argmax(axis=1)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit rows for texts, from the analysis's own encoder and inputs: grouping complaints by meaning.

        The texts are masked and cut as `analyze` does, so grouping measures the same geometry the heads saw.
        """
        inputs = [mask_text(t[:MAX_CHARS]) or "." for t in texts]
        return self._encoder.encode(inputs)

    def rank(self, comment: str) -> list[tuple[str, float]]:
        """Score every category for one comment: the conversation's fast path for its follow-up question."""
        inputs = [mask_text(comment[:MAX_CHARS]) or "."]
        scores = self._categories.scores(inputs, self._encoder.encode(inputs))[0]
        return list(zip(self._categories.labels, (float(s) for s in scores), strict=True))

    def analyze_feedback(self, items: Sequence[FeedbackLike]) -> list[dict[str, Any]]:
        """The worker's entry: one JSON-friendly dict per feedback, in the fields the store keeps."""
        analyses = self.analyze(
            [item.comment or "" for item in items],
            ratings=[item.csat for item in items],
            callbacks=[item.callback_requested for item in items],
        )
        return [_stored_fields(a, item) for a, item in zip(analyses, items, strict=True)]

    def _one(self, text: str, language: str, sentiment: np.ndarray, categories: np.ndarray, aspects: list[Aspect],
             rating: int | None, callback: bool) -> TextAnalysis:  # fmt: skip
        labels = self._sentiment.labels
        scores = {label: round(float(p), 4) for label, p in zip(labels, sentiment, strict=True)}
        if not text.strip() and rating is not None:
            scores = _scores_from_rating(rating)
        ranked = sorted(zip(self._categories.labels, (round(float(s), 4) for s in categories), strict=True),
                        key=lambda pair: -pair[1])  # fmt: skip
        flags = evaluate_flags(
            self._flags, text=text, language=language, negative=scores.get("negative", 0.0),
            categories=dict(ranked), rating=rating, callback_requested=callback,
        )  # fmt: skip
        return TextAnalysis(language, text, max(scores, key=scores.get), scores, ranked, aspects, flags)

    def _aspects(self, clauses: list[str], sentiments: np.ndarray, categories: np.ndarray) -> list[Aspect]:
        aspects = []
        for clause, sentiment, scores in zip(clauses, sentiments, categories, strict=True):
            best = int(np.argmax(scores)) if scores.size else -1
            category = self._categories.labels[best] if best >= 0 and scores[best] >= ASSIGNED else None
            by_label = {label: round(float(p), 4) for label, p in zip(self._sentiment.labels, sentiment, strict=True)}
            aspects.append(Aspect(clause, category, round(float(scores[best]), 4) if best >= 0 else 0.0,
                                  max(by_label, key=by_label.get), by_label))  # fmt: skip
        return aspects


def _scores_from_rating(rating: int) -> dict[str, float]:
    """No words to read: the rating is all the customer said."""
    if rating <= 2:
        return {"negative": 0.9, "neutral": 0.08, "positive": 0.02}
    if rating == 3:
        return {"negative": 0.2, "neutral": 0.6, "positive": 0.2}
    return {"negative": 0.02, "neutral": 0.08, "positive": 0.9}


def _stored_fields(analysis: TextAnalysis, item: FeedbackLike) -> dict[str, Any]:
    return {
        "language": analysis.language if analysis.masked_text.strip() else item.language,
        "sentiment": analysis.sentiment,
        "sentiment_scores": analysis.sentiment_scores,
        "categories": [[c, s] for c, s in analysis.categories if s >= ASSIGNED],
        "aspects": [asdict(a) for a in analysis.aspects],
        "flags": [asdict(f) for f in analysis.flags],
    }
