"""Assemble the analyzer: the encoder, the shipped heads (or a bank's own category set) and the flag rules."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nlp.analyzer import Analyzer
from nlp.categories import AnchorCurve, CategoryModel, LabelSet
from nlp.encoder import Encoder, ModelLoadError
from nlp.flags import FlagRules
from nlp.heads import Classifier, LinearHead, SentimentModel
from nlp.taxonomy import Taxonomy
from nlp.views import view_for

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def own_heads_path(data_dir: Path) -> Path:
    """Where `closeloop nlp train` puts heads that learnt from this bank's staff corrections."""
    return data_dir / "heads"


def category_set_path(data_dir: Path, name: str) -> Path:
    return data_dir / "category-sets" / f"{name}.npz"


def load_analyzer(
    *,
    model: str | None,
    data_dir: Path,
    taxonomy: Taxonomy,
    flags: FlagRules,
    category_set: str | None = None,
    threads: int | None = None,
    artifacts: Path | None = None,
) -> Analyzer:
    """Load everything the analysis needs; raises ModelLoadError saying what is missing and how to make it.

    The bank's own heads (trained with its staff corrections) win over the shipped ones once they exist.
    """
    if artifacts is None:
        own = own_heads_path(data_dir)
        artifacts = own if (own / "metadata.json").exists() else ARTIFACTS
    encoder = Encoder.load(model, cache_dir=data_dir / "models", num_threads=threads)
    sentiment = _sentiment(artifacts, encoder)
    meta = json.loads((artifacts / "metadata.json").read_text(encoding="utf-8"))
    parts = [encoder.version, _digest(*sentiment.files(artifacts))]
    if category_set:
        path = category_set_path(data_dir, category_set)
        if not path.exists():
            raise ModelLoadError(
                f"no category set {category_set!r} at {path}: train it with `closeloop nlp train-categories`"
            )
        classifier = Classifier.load(path)
        view = view_for(classifier.view, cache_dir=data_dir / "models", threads=threads)
        _check_dim(classifier.linear, path, encoder, extra=view.dim if view else 0,
                   command="closeloop nlp train-categories")  # fmt: skip
        categories: CategoryModel | LabelSet = LabelSet(classifier, view)
        parts.append(f"{category_set}-{_digest(path)}")
    else:
        head = _head(artifacts / "categories.npz", encoder)
        curve = AnchorCurve(**meta["anchor_curve"])
        categories = CategoryModel.from_taxonomy(taxonomy, encoder, head=head, curve=curve)
        parts.append(_digest(artifacts / "categories.npz"))
    return Analyzer(encoder, sentiment, categories, flags, version="+".join(parts)[:64])


def _sentiment(folder: Path, encoder: Encoder) -> SentimentModel:
    _classifier(folder / "sentiment.npz", encoder)  # says clearly what is missing or mismatched
    model = SentimentModel.load(folder)
    for classifier, path in zip([model.default, *model.by_language.values()], model.files(folder), strict=True):
        _check_dim(classifier.linear, path, encoder)
    return model


def _classifier(path: Path, encoder: Encoder) -> Classifier:
    if not path.exists():
        raise ModelLoadError(f"{path} is missing: run `closeloop nlp train` to build the heads")
    classifier = Classifier.load(path)
    _check_dim(classifier.linear, path, encoder)
    return classifier


def _head(path: Path, encoder: Encoder) -> LinearHead:
    return _classifier(path, encoder).linear


def _check_dim(
    head: LinearHead, path: Path, encoder: Encoder, *, extra: int = 0, command: str = "closeloop nlp train"
) -> None:
    if head.dim != encoder.dim + extra:
        raise ModelLoadError(
            f"{path.name} was trained for {head.dim}-dimensional embeddings but the encoder gives "
            f"{encoder.dim + extra}: retrain with `{command}` for this model"
        )


def _digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]
