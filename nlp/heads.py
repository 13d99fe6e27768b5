"""Small trained layers over sentence embeddings: calibrated softmax (one label) or sigmoid (several labels).

Trained with scikit-learn, applied with numpy, saved as one .npz file each: a few hundred kilobytes that ship
in the repository, so a fresh install needs no training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

TEMPERATURES = np.geomspace(0.25, 4.0, 41)


@dataclass(frozen=True)
class LinearHead:
    labels: tuple[str, ...]
    weights: np.ndarray  # (dim, labels)
    bias: np.ndarray  # (labels,)
    temperature: float = 1.0
    multi_label: bool = False

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Probabilities per label, rows summing to 1 (softmax) or each in [0, 1] (sigmoid)."""
        logits = (embeddings @ self.weights + self.bias) / self.temperature
        if self.multi_label:
            return 1.0 / (1.0 + np.exp(-logits))
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"labels": list(self.labels), "temperature": self.temperature, "multi_label": self.multi_label}
        np.savez_compressed(path, weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32),
                            meta=np.array(json.dumps(meta)))  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(
                labels=tuple(meta["labels"]),
                weights=data["weights"],
                bias=data["bias"],
                temperature=float(meta["temperature"]),
                multi_label=bool(meta["multi_label"]),
            )


def train_softmax(
    embeddings: np.ndarray,
    labels: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    strength: float = 4.0,
    calibration: tuple[np.ndarray, Sequence[str]] | None = None,
) -> LinearHead:
    """Fit a multinomial logistic regression; calibrate its temperature on held-out data when given."""
    model = LogisticRegression(C=strength, max_iter=2000)
    model.fit(embeddings, list(labels), sample_weight=weights)
    head = LinearHead(tuple(str(c) for c in model.classes_), model.coef_.T.copy(), model.intercept_.copy())
    if model.coef_.shape[0] == 1:  # two classes: scikit-learn keeps one row; make it a proper two-way softmax
        head = LinearHead(head.labels, np.hstack([-head.weights / 2, head.weights / 2]),
                          np.array([-head.bias[0] / 2, head.bias[0] / 2]))  # fmt: skip
    if calibration is not None:
        head = _calibrated(head, *calibration)
    return head


def train_sigmoid(
    embeddings: np.ndarray, targets: np.ndarray, labels: Sequence[str], *, strength: float = 4.0
) -> LinearHead:
    """Fit one logistic regression per label (multi-label); a label with one class only gets a constant."""
    dim = embeddings.shape[1]
    weights = np.zeros((dim, len(labels)), dtype=np.float32)
    bias = np.full(len(labels), -6.0, dtype=np.float32)
    for j in range(len(labels)):
        column = targets[:, j]
        if column.min() == column.max():
            continue
        model = LogisticRegression(C=strength, max_iter=2000, class_weight="balanced")
        model.fit(embeddings, column)
        weights[:, j] = model.coef_[0]
        bias[j] = model.intercept_[0]
    return LinearHead(tuple(labels), weights, bias, multi_label=True)


def _calibrated(head: LinearHead, embeddings: np.ndarray, labels: Sequence[str]) -> LinearHead:
    """Pick the temperature with the lowest negative log-likelihood on held-out data."""
    index = {label: i for i, label in enumerate(head.labels)}
    known = [(row, index[label]) for row, label in enumerate(labels) if label in index]
    rows = np.array([r for r, _ in known])
    truth = np.array([c for _, c in known])
    best, best_loss = 1.0, np.inf
    for temperature in TEMPERATURES:
        trial = LinearHead(head.labels, head.weights, head.bias, float(temperature))
        probabilities = trial.predict(embeddings[rows])[np.arange(len(rows)), truth]
        loss = -np.log(np.clip(probabilities, 1e-9, 1.0)).mean()
        if loss < best_loss:
            best, best_loss = float(temperature), loss
    return LinearHead(head.labels, head.weights, head.bias, best)
