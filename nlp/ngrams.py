"""Character n-grams with a linear layer: a second opinion beside the sentence embeddings.

The encoder reads meaning; n-grams catch the exact words a domain uses ("pin", "top up", 退货, 客服). Averaged with
the embedding head they add two to three points of accuracy on held-out sets, for microseconds per text. Saved
without pickle: the vocabulary, the idf weights and the linear layer, as arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

NGRAM_RANGE = (1, 4)  # characters within words; Chinese has no spaces, so this covers its words too
MAX_FEATURES = 100_000  # keeps a head to a few megabytes however large the training set


def _vectorizer(vocabulary: Sequence[str] | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=NGRAM_RANGE,
        sublinear_tf=True,
        min_df=2 if vocabulary is None else 1,
        max_features=MAX_FEATURES if vocabulary is None else None,
        vocabulary=None if vocabulary is None else {term: i for i, term in enumerate(vocabulary)},
        dtype=np.float32,
    )


@dataclass(frozen=True)
class NgramHead:
    labels: tuple[str, ...]
    vocabulary: tuple[str, ...]
    idf: np.ndarray  # (features,)
    weights: np.ndarray  # (features, labels)
    bias: np.ndarray  # (labels,)

    def __post_init__(self) -> None:
        vectorizer = _vectorizer(self.vocabulary)
        vectorizer.idf_ = self.idf  # a fixed vocabulary plus its idf is a fitted vectorizer
        object.__setattr__(self, "_vectorizer", vectorizer)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax probabilities per label, one row per text."""
        logits = self._vectorizer.transform(texts) @ self.weights + self.bias
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "ngram_labels": np.array(self.labels),
            "ngram_vocabulary": np.array(self.vocabulary),
            "ngram_idf": self.idf.astype(np.float32),
            "ngram_weights": self.weights.astype(np.float32),
            "ngram_bias": self.bias.astype(np.float32),
        }

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> NgramHead:
        return cls(
            labels=tuple(str(label) for label in data["ngram_labels"]),
            vocabulary=tuple(str(term) for term in data["ngram_vocabulary"]),
            idf=data["ngram_idf"],
            weights=data["ngram_weights"],
            bias=data["ngram_bias"],
        )


def train_ngrams(
    texts: Sequence[str], labels: Sequence[str], *, weights: np.ndarray | None = None, strength: float = 4.0
) -> NgramHead:
    """Fit the vocabulary and a multinomial logistic regression over it."""
    vectorizer = _vectorizer()
    features = vectorizer.fit_transform(texts)
    model = LogisticRegression(C=strength, max_iter=3000)
    model.fit(features, list(labels), sample_weight=weights)
    coef, intercept = model.coef_.T, model.intercept_
    if coef.shape[1] == 1:  # two classes: scikit-learn keeps one column; make it a proper two-way softmax
        coef, intercept = np.hstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
    return NgramHead(tuple(str(c) for c in model.classes_), tuple(vocabulary), vectorizer.idf_, coef, intercept)
