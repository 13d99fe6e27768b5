"""Train the shipped heads from licensed data, evaluate them, and train a bank's own category set.

Everything here is deterministic (fixed seeds, sorted inputs) so `closeloop nlp train` rebuilds the same
artefacts from the same data; the metadata records each data file with its hash, licence and the metrics.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from nlp.categories import AnchorCurve, CategoryModel
from nlp.corpus import OWN_DATA, SOURCES, Example, dev_sets, file_digest, own_examples, public_examples
from nlp.heads import LinearHead, train_sigmoid, train_softmax
from nlp.taxonomy import Taxonomy

SEED = 13
HELD_OUT = 0.1


class Encoder(Protocol):
    version: str

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
    data_root: Path | None, out_dir: Path, encoder: Encoder, taxonomy: Taxonomy, *, progress: Progress = print
) -> dict[str, Any]:
    """Rebuild sentiment.npz, categories.npz and metadata.json in `out_dir` from licensed data only."""
    examples = list(own_examples())
    if data_root is not None and data_root.exists():
        examples += list(public_examples(data_root))
    progress(f"embedding {len(examples)} training texts")
    vectors = encoder.encode([e.text for e in examples])
    sentiment, sentiment_dev = _train_sentiment(examples, vectors)
    categories, curve = _train_categories(examples, vectors, taxonomy, encoder)
    out_dir.mkdir(parents=True, exist_ok=True)
    sentiment.save(out_dir / "sentiment.npz")
    categories.save(out_dir / "categories.npz")
    metrics = {"sentiment_held_out": sentiment_dev.__dict__}
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


def evaluate_dev(data_root: Path, encoder: Encoder, sentiment: LinearHead) -> dict[str, Any]:
    results = {}
    for name, (texts, truth) in dev_sets(data_root).items():
        if len(texts) > 3000:  # a fixed sample keeps `nlp train` quick on the 21k-row Chinese set
            picks = sorted(random.Random(SEED).sample(range(len(texts)), 3000))
            texts, truth = [texts[i] for i in picks], [truth[i] for i in picks]
        probabilities = sentiment.predict(encoder.encode(texts))
        predicted = predict_labels(sentiment.labels, probabilities, binary="binary" in name)
        results[name] = score(truth, predicted).__dict__
    return results


def predict_labels(labels: Sequence[str], probabilities: np.ndarray, *, binary: bool = False) -> list[str]:
    """Argmax labels; for a binary (positive/negative) task, neutral steps aside."""
    if binary and "neutral" in labels:
        keep = [i for i, label in enumerate(labels) if label != "neutral"]
        return [labels[keep[j]] for j in probabilities[:, keep].argmax(axis=1)]
    return [labels[i] for i in probabilities.argmax(axis=1)]


def train_label_set(texts: Sequence[str], labels: Sequence[str], encoder: Encoder) -> tuple[LinearHead, Scores]:
    """A bank's own categories: a calibrated softmax head, with held-out scores to report."""
    vectors = encoder.encode(texts)
    train, held = _split(len(texts))
    head = train_softmax(vectors[train], [labels[i] for i in train], strength=8.0,
                         calibration=(vectors[held], [labels[i] for i in held]))  # fmt: skip
    held_out = score([labels[i] for i in held], predict_labels(head.labels, head.predict(vectors[held])))
    final = train_softmax(vectors, list(labels), strength=8.0)
    return LinearHead(final.labels, final.weights, final.bias, head.temperature), held_out


def _train_sentiment(examples: list[Example], vectors: np.ndarray) -> tuple[LinearHead, Scores]:
    rows = [i for i, e in enumerate(examples) if e.sentiment is not None]
    train, held = _split(len(rows))
    labels = [examples[i].sentiment for i in rows]
    # Each source counts alike, whatever its size: 10k Chinese reviews must not drown 960 English comments.
    sizes = Counter(examples[i].source for i in rows)
    weights = np.array([len(rows) / (len(sizes) * sizes[examples[i].source]) for i in rows])
    picked = vectors[rows]
    head = train_softmax(picked[train], [labels[i] for i in train], weights=weights[train], strength=1.0,
                         calibration=(picked[held], [labels[i] for i in held]))  # fmt: skip
    held_out = score([labels[i] for i in held], predict_labels(head.labels, head.predict(picked[held])))
    final = train_softmax(picked, labels, weights=weights, strength=1.0)
    return LinearHead(final.labels, final.weights, final.bias, head.temperature), held_out


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
        path = base / source.path if base else None
        entry = {"source": name, "path": source.path, "licence": source.licence, "rows": count}
        if path is not None and path.is_file():
            entry["sha256"] = file_digest(path)
        record.append(entry)
    return record
