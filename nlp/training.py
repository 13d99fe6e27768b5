"""Train the shipped heads from licensed data, evaluate them, and train a bank's own category set.

Everything here is deterministic (fixed seeds, sorted inputs) so `closeloop nlp train` rebuilds the same
artefacts from the same data; the metadata records each data file with its hash, licence and the metrics.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from nlp.categories import AnchorCurve, CategoryModel
from nlp.corpus import OWN_DATA, SENTIMENTS, SOURCES, Example, dev_sets, file_digest, own_examples, public_examples
from nlp.heads import Classifier, LinearHead, SentimentModel, train_hidden, train_sigmoid, train_softmax
from nlp.language import detect_language
from nlp.ngrams import train_ngrams
from nlp.taxonomy import Taxonomy

SEED = 13
HELD_OUT = 0.1
# Chinese has 10k licensed reviews of its own, and its classifier beats the multilingual one by 4 points on held-out
# shop reviews; English has no licensed sentiment set, and an English-only classifier did no better on SemEval.
SENTIMENT_LANGUAGES = ("zh",)
LABEL_SET_STRENGTH = 32.0  # many labels, little noise: a weakly regularised head does best
NGRAM_STRENGTH = 8.0
HIDDEN_BLEND = 0.7  # a hidden-layer head reads the embeddings better than a linear one: it gets the larger share


class Encoder(Protocol):
    version: str

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


class View(Protocol):
    name: str

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


Progress = Callable[[str], None]


@dataclass(frozen=True)
class Scores:
    accuracy: float
    macro_f1: float
    labels: list[str]
    confusion: list[list[int]]

    def table(self) -> str:
        width = max(len(label) for label in self.labels) + 2
        lines = [
            f"accuracy {self.accuracy:.4f}   macro-F1 {self.macro_f1:.4f}",
            "confusion (rows: true, columns: predicted)",
        ]
        lines.append(" " * width + "".join(f"{label[:10]:>12}" for label in self.labels))
        for label, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"{label:<{width}}" + "".join(f"{n:>12}" for n in row))
        return "\n".join(lines)


def score(truth: Sequence[str], predicted: Sequence[str]) -> Scores:
    labels = sorted(set(truth) | set(predicted))
    return Scores(
        accuracy=round(float(accuracy_score(truth, predicted)), 4),
        macro_f1=round(float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)), 4),
        labels=labels,
        confusion=confusion_matrix(truth, predicted, labels=labels).tolist(),
    )


def train_shipped(
    data_root: Path | None,
    out_dir: Path,
    encoder: Encoder,
    taxonomy: Taxonomy,
    *,
    extra: Sequence[Example] = (),
    progress: Progress = print,
) -> dict[str, Any]:
    """Rebuild the sentiment files, categories.npz and metadata.json in `out_dir` from licensed data only, plus
    `extra` (a bank's staff corrections, which then stay in that bank's data directory)."""
    examples = list(own_examples())
    if data_root is not None and data_root.exists():
        examples += list(public_examples(data_root))
    examples += list(extra)
    progress(f"embedding {len(examples)} training texts")
    vectors = encoder.encode([e.text for e in examples])
    progress("training the sentiment classifiers")
    sentiment, sentiment_dev = _train_sentiment(examples, vectors)
    categories, curve = _train_categories(examples, vectors, taxonomy, encoder)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("sentiment-*.npz"):
        stale.unlink()
    sentiment.save(out_dir)
    categories.save(out_dir / "categories.npz")
    metrics = {f"sentiment_held_out_{name}": scores.__dict__ for name, scores in sentiment_dev.items()}
    if data_root is not None and data_root.exists():
        progress("evaluating on the development sets (research licences: evaluation only)")
        metrics |= evaluate_dev(data_root, encoder, sentiment)
    metadata = {
        "encoder": encoder.version,
        "anchor_curve": curve.__dict__,
        "data": _data_record(examples, data_root),
        "metrics": metrics,
    }
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return metadata


def evaluate_dev(data_root: Path, encoder: Encoder, sentiment: SentimentModel) -> dict[str, Any]:
    results = {}
    for name, (texts, truth) in dev_sets(data_root).items():
        if len(texts) > 3000:  # a fixed sample keeps `nlp train` quick on the 21k-row Chinese set
            picks = sorted(random.Random(SEED).sample(range(len(texts)), 3000))
            texts, truth = [texts[i] for i in picks], [truth[i] for i in picks]
        languages = [detect_language(text) for text in texts]
        probabilities = sentiment.predict(texts, encoder.encode(texts), languages)
        predicted = predict_labels(sentiment.labels, probabilities, binary="binary" in name)
        results[name] = score(truth, predicted).__dict__
    return results


def predict_labels(labels: Sequence[str], probabilities: np.ndarray, *, binary: bool = False) -> list[str]:
    """Argmax labels; for a binary (positive/negative) task, neutral steps aside."""
    if binary and "neutral" in labels:
        keep = [i for i, label in enumerate(labels) if label != "neutral"]
        return [labels[keep[j]] for j in probabilities[:, keep].argmax(axis=1)]
    return [labels[i] for i in probabilities.argmax(axis=1)]


def train_label_set(
    texts: Sequence[str], labels: Sequence[str], encoder: Encoder, *, view: View | None = None
) -> tuple[Classifier, Scores]:
    """A bank's own categories: a hidden-layer embedding head and an n-gram head (characters and words) blended,
    with held-out scores.

    With a `view` (nlp.views) the embedding head reads its embeddings after the encoder's.
    """
    vectors = encoder.encode(texts)
    if view is not None:
        vectors = np.hstack([vectors, view.encode(texts)])
    classifier, held_out = train_classifier(texts, vectors, labels, strength=LABEL_SET_STRENGTH, hidden=True,
                                            words=True)  # fmt: skip
    return replace(classifier, view=view.name if view is not None else None), held_out


def train_classifier(
    texts: Sequence[str],
    vectors: np.ndarray,
    labels: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    strength: float,
    ngrams: bool = True,
    hidden: bool = False,
    words: bool = False,
) -> tuple[Classifier, Scores]:
    """Fit on 90%, calibrate and score on the held-out 10%, then refit on everything with that temperature.

    `hidden` puts a hidden layer in the embedding head (heads.train_hidden) instead of the linear one; `words` gives
    the n-gram head word n-grams beside the character ones.
    """
    train, held = _split(len(texts))
    picked = (lambda rows: weights[rows]) if weights is not None else (lambda rows: None)
    trial = _fit(texts, vectors, labels, train, picked(train), strength=strength, ngrams=ngrams, hidden=hidden,
                 words=words, calibration=(vectors[held], [labels[i] for i in held]))  # fmt: skip
    held_texts, held_labels = [texts[i] for i in held], [labels[i] for i in held]
    held_out = score(held_labels, predict_labels(trial.labels, trial.predict(held_texts, vectors[held])))
    everything = list(range(len(texts)))
    final = _fit(texts, vectors, labels, everything, picked(everything), strength=strength, ngrams=ngrams,
                 hidden=hidden, words=words)  # fmt: skip
    return replace(final, linear=final.linear.with_temperature(trial.linear.temperature)), held_out


def _fit(
    texts: Sequence[str],
    vectors: np.ndarray,
    labels: Sequence[str],
    rows: list[int],
    weights: np.ndarray | None,
    *,
    strength: float,
    ngrams: bool,
    hidden: bool = False,
    words: bool = False,
    calibration: tuple[np.ndarray, Sequence[str]] | None = None,
) -> Classifier:
    chosen = [labels[i] for i in rows]
    if hidden:
        linear = train_hidden(vectors[rows], chosen, weights=weights, calibration=calibration)
    else:
        linear = train_softmax(vectors[rows], chosen, weights=weights, strength=strength, calibration=calibration)
    if not ngrams:
        return Classifier(linear)
    blend = HIDDEN_BLEND if hidden else Classifier.blend
    ngram_head = train_ngrams([texts[i] for i in rows], chosen, weights=weights, strength=NGRAM_STRENGTH, words=words)
    return Classifier(linear, ngram_head, blend)


def _train_sentiment(examples: list[Example], vectors: np.ndarray) -> tuple[SentimentModel, dict[str, Scores]]:
    """A multilingual classifier over embeddings, and one per language with its own data and n-grams."""
    rows = [i for i, e in enumerate(examples) if e.sentiment is not None]
    default, default_scores = _sentiment_classifier(examples, vectors, rows, ngrams=False)
    scores = {"all": default_scores}
    by_language = {}
    for language in SENTIMENT_LANGUAGES:
        subset = [i for i in rows if examples[i].language == language]
        if len({examples[i].sentiment for i in subset}) == len(SENTIMENTS):
            by_language[language], scores[language] = _sentiment_classifier(examples, vectors, subset, ngrams=True)
    return SentimentModel(default, by_language), scores


def _sentiment_classifier(
    examples: list[Example], vectors: np.ndarray, rows: list[int], *, ngrams: bool
) -> tuple[Classifier, Scores]:
    # Each source counts alike, whatever its size: 10k Chinese reviews must not drown 960 English comments.
    sizes = Counter(examples[i].source for i in rows)
    weights = np.array([len(rows) / (len(sizes) * sizes[examples[i].source]) for i in rows])
    texts = [examples[i].text for i in rows]
    labels = [str(examples[i].sentiment) for i in rows]
    return train_classifier(texts, vectors[rows], labels, weights=weights, strength=1.0, ngrams=ngrams)


def _train_categories(
    examples: list[Example], vectors: np.ndarray, taxonomy: Taxonomy, encoder: Encoder
) -> tuple[LinearHead, AnchorCurve]:
    ids = [c.id for c in taxonomy.categories]
    rows = [i for i, e in enumerate(examples) if e.categories is not None]
    targets = np.array([[c in examples[i].categories for c in ids] for i in rows], dtype=int)
    head = train_sigmoid(vectors[rows], targets, ids)
    # The anchor curve is fitted on our own comments only: they are what real feedback looks like.
    own = [j for j, i in enumerate(rows) if examples[i].source.startswith("own")]
    margins = CategoryModel.from_taxonomy(taxonomy, encoder).margins(vectors[[rows[j] for j in own]])
    fit = LogisticRegression(C=1.0, max_iter=1000).fit(margins.reshape(-1, 1), targets[own].reshape(-1))
    return head, AnchorCurve(slope=round(float(fit.coef_[0][0]), 3), intercept=round(float(fit.intercept_[0]), 3))


def _split(n: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(SEED).shuffle(order)
    cut = max(1, int(n * HELD_OUT))
    return sorted(order[cut:]), sorted(order[:cut])


def _data_record(examples: list[Example], data_root: Path | None) -> list[dict[str, Any]]:
    counts = Counter(e.source for e in examples)
    record = []
    for name, count in sorted(counts.items()):
        source = SOURCES[name]
        base = OWN_DATA if name.startswith("own") else data_root
        path = base / source.path if base and name != "corrections" else None
        entry = {"source": name, "path": source.path, "licence": source.licence, "rows": count}
        if path is not None and path.is_file():
            entry["sha256"] = file_digest(path)
        record.append(entry)
    return record
