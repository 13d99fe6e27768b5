"""Character n-grams with a linear layer: a second opinion beside the sentence embeddings.

The encoder reads meaning; n-grams catch the exact words a domain uses ("pin", "top up", 退货, 客服). Averaged with
the embedding head they add two to three points of accuracy on held-out sets, for microseconds per text. Saved
without pickle: the vocabulary, the idf weights and the linear layer, as arrays.

A head may also read word unigrams and bigrams beside the characters (`words=True`; a bank's own category sets do):
each kind is a tf-idf block of unit length, the two side by side scaled by 1/sqrt(2). On banking77 (three stratified
80/20 splits) the n-gram head alone went from 0.888 / 0.895 / 0.901 to 0.894 / 0.900 / 0.909 accuracy, and blended
with the embedding head from 0.9340 / 0.9370 / 0.9405 to 0.9370 / 0.9370 / 0.9440. Whitespace-free Chinese gains
little from the word block (a run of characters is one "word"), so the shipped heads keep characters only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

NGRAM_RANGE = (1, 4)  # characters within words; Chinese has no spaces, so this covers its words too
MAX_FEATURES = 100_000  # keeps a head to a few megabytes however large the training set
WORD_RANGE = (1, 2)
MAX_WORD_FEATURES = 50_000


def _vectorizer(vocabulary: Sequence[str] | None = None, *, words: bool = False) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="word" if words else "char_wb",
        ngram_range=WORD_RANGE if words else NGRAM_RANGE,
        sublinear_tf=True,
        min_df=2 if vocabulary is None else 1,
        max_features=(MAX_WORD_FEATURES if words else MAX_FEATURES) if vocabulary is None else None,
        vocabulary=None if vocabulary is None else {term: i for i, term in enumerate(vocabulary)},
        dtype=np.float32,
    )


@dataclass(frozen=True)
class NgramHead:
    labels: tuple[str, ...]
    vocabulary: tuple[str, ...]
    idf: np.ndarray  # (features,)
    weights: np.ndarray  # (features, labels): the character features, then the word features if any
    bias: np.ndarray  # (labels,)
    word_vocabulary: tuple[str, ...] = ()  # empty: characters only (every head from before words)
    word_idf: np.ndarray | None = None

    def __post_init__(self) -> None:
        vectorizers = [_fitted(_vectorizer(self.vocabulary), self.idf)]
        if self.word_vocabulary:
            vectorizers.append(_fitted(_vectorizer(self.word_vocabulary, words=True), self.word_idf))
        object.__setattr__(self, "_vectorizers", vectorizers)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax probabilities per label, one row per text."""
        logits = _joined([v.transform(texts) for v in self._vectorizers]) @ self.weights + self.bias
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
        } | ({"ngram_word_vocabulary": np.array(self.word_vocabulary),
              "ngram_word_idf": np.asarray(self.word_idf, np.float32)} if self.word_vocabulary else {})  # fmt: skip

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> NgramHead:
        return cls(
            labels=tuple(str(label) for label in data["ngram_labels"]),
            vocabulary=tuple(str(term) for term in data["ngram_vocabulary"]),
            idf=data["ngram_idf"],
            weights=data["ngram_weights"],
            bias=data["ngram_bias"],
            word_vocabulary=tuple(str(term) for term in data.get("ngram_word_vocabulary", ())),
            word_idf=data.get("ngram_word_idf"),
        )


def train_ngrams(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    strength: float = 4.0,
    words: bool = False,
) -> NgramHead:
    """Fit the vocabulary (characters, and words with `words`) and a multinomial logistic regression over it."""
    chars, word = _vectorizer(), _vectorizer(words=True) if words else None
    blocks = [chars.fit_transform(texts)]
    if word is not None:
        try:
            blocks.append(word.fit_transform(texts))
        except ValueError:  # no word occurs twice (few, short or whitespace-free texts): characters only
            word = None
    features = _joined(blocks)
    model = LogisticRegression(C=strength, max_iter=3000)
    model.fit(features, list(labels), sample_weight=weights)
    coef, intercept = model.coef_.T, model.intercept_
    if coef.shape[1] == 1:  # two classes: scikit-learn keeps one column; make it a proper two-way softmax
        coef, intercept = np.hstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    head = NgramHead(tuple(str(c) for c in model.classes_), _vocabulary(chars), chars.idf_, coef, intercept)
    return head if word is None else replace(head, word_vocabulary=_vocabulary(word), word_idf=word.idf_)


def _fitted(vectorizer: TfidfVectorizer, idf: np.ndarray | None) -> TfidfVectorizer:
    vectorizer.idf_ = idf  # a fixed vocabulary plus its idf is a fitted vectorizer
    return vectorizer


def _joined(blocks: list[sparse.csr_matrix]) -> sparse.csr_matrix:
    """Blocks of unit-length rows side by side, scaled so that each row has unit length again."""
    if len(blocks) == 1:
        return blocks[0]
    return (sparse.hstack(blocks, format="csr") / np.sqrt(len(blocks))).astype(np.float32)


def _vocabulary(vectorizer: TfidfVectorizer) -> tuple[str, ...]:
    return tuple(sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get))
