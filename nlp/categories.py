"""Category scores for a comment: anchors from the taxonomy file, sharpened by a trained head where one exists.

Every category has anchors, its names, description and examples in both languages, so one an operator adds or
rewords works at once. A comment's score for a category is how much closer it sits to that category's anchors
than to the average category, passed through a logistic curve fitted once on labelled feedback. Where the shipped
head was trained on a category, its probability is averaged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nlp.heads import Classifier, LinearHead
from nlp.taxonomy import Category, Taxonomy

TOP_ANCHORS = 2


class Encoder(Protocol):
    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


@dataclass(frozen=True)
class AnchorCurve:
    """p = sigmoid(slope * margin + intercept), the margin being a category's similarity above the row mean."""

    slope: float = 60.0
    intercept: float = -3.0


class CategoryModel:
    def __init__(
        self,
        labels: Sequence[str],
        anchors: Sequence[np.ndarray],
        *,
        head: LinearHead | None = None,
        curve: AnchorCurve = AnchorCurve(),
    ) -> None:
        self.labels = tuple(labels)
        self._anchors = list(anchors)
        self._head = head
        self._curve = curve

    @classmethod
    def from_taxonomy(
        cls, taxonomy: Taxonomy, encoder: Encoder, *, head: LinearHead | None = None, curve: AnchorCurve = AnchorCurve()
    ) -> CategoryModel:
        texts = [anchor_texts(c) for c in taxonomy.categories]
        vectors = encoder.encode([t for group in texts for t in group])
        anchors, start = [], 0
        for group in texts:
            anchors.append(vectors[start : start + len(group)])
            start += len(group)
        return cls([c.id for c in taxonomy.categories], anchors, head=head, curve=curve)

    def margins(self, embeddings: np.ndarray) -> np.ndarray:
        """How much closer each text is to each category's anchors than to the average category."""
        similarity = np.stack(
            [np.sort(embeddings @ a.T, axis=1)[:, -TOP_ANCHORS:].mean(axis=1) for a in self._anchors], axis=1
        )
        return similarity - similarity.mean(axis=1, keepdims=True)

    def scores(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """One score in [0, 1] per text and category (the anchors need the embeddings only)."""
        if len(embeddings) == 0:
            return np.zeros((0, len(self.labels)))
        margin = self.margins(embeddings)
        scores = 1.0 / (1.0 + np.exp(-(self._curve.slope * margin + self._curve.intercept)))
        if self._head is not None:
            trained = self._head.predict(embeddings)
            for j, label in enumerate(self._head.labels):
                if label in self.labels:
                    k = self.labels.index(label)
                    scores[:, k] = (scores[:, k] + trained[:, j]) / 2
        return scores


class LabelSet:
    """A bank's own category set, trained from its labelled history: one label per comment.

    Where the head reads a second embedding besides the encoder's (`Classifier.view`), `view` makes it from the
    texts; the analysis hands over the encoder's embeddings only.
    """

    def __init__(self, head: Classifier, view: Encoder | None = None) -> None:
        if (head.view is None) != (view is None):
            raise ValueError(f"the category set reads the view {head.view!r} but was given {view!r}")
        self._head = head
        self._view = view
        self.labels = head.labels

    def scores(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        if len(embeddings) == 0:
            return np.zeros((0, len(self.labels)))
        if self._view is not None:
            embeddings = np.hstack([embeddings, self._view.encode(texts)])
        return self._head.predict(texts, embeddings)


def anchor_texts(category: Category) -> list[str]:
    return [
        category.name.en,
        category.name.zh,
        category.description.en,
        category.description.zh,
        *category.examples.en,
        *category.examples.zh,
    ]
