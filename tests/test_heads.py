"""The classifier heads: n-grams beside embeddings, their blend, files without pickle, sentiment by language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlp.heads import Classifier, LinearHead, SentimentModel, train_hidden, train_softmax
from nlp.ngrams import train_ngrams

LABELS = ("negative", "neutral", "positive")
TEXTS = {
    "negative": ["the queue was awful", "awful service again", "rude and awful staff", "waited forever, awful"],
    "neutral": ["what time do you open", "what documents do I need", "what is the branch code", "what about sunday"],
    "positive": ["lovely helpful teller", "lovely quick service", "the staff were lovely", "lovely, thank you"],
}


def _corpus() -> tuple[list[str], list[str]]:
    texts = [t for label in LABELS for t in TEXTS[label]]
    return texts, [label for label in LABELS for _ in TEXTS[label]]


def _constant(label: str, dim: int = 4) -> LinearHead:
    """A head that always prefers `label`: zero weights, a bias for that label."""
    bias = np.array([4.0 if name == label else 0.0 for name in LABELS])
    return LinearHead(LABELS, np.zeros((dim, len(LABELS))), bias)


def test_ngram_head_learns_the_words_of_each_label() -> None:
    texts, labels = _corpus()
    head = train_ngrams(texts, labels, strength=10.0)
    assert head.labels == LABELS
    probabilities = head.predict(["so awful", "what are your hours", "lovely people"])
    assert [head.labels[i] for i in probabilities.argmax(axis=1)] == list(LABELS)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_two_label_ngram_head_is_a_proper_softmax() -> None:
    texts, labels = _corpus()
    keep = [i for i, label in enumerate(labels) if label != "neutral"]
    head = train_ngrams([texts[i] for i in keep], [labels[i] for i in keep], strength=10.0)
    probabilities = head.predict(["awful", "lovely"])
    assert probabilities.shape == (2, 2)
    assert probabilities[0, 0] > 0.5 > probabilities[1, 0]


def test_classifier_blends_both_heads_and_round_trips_without_pickle(tmp_path: Path) -> None:
    texts, labels = _corpus()
    ngrams = train_ngrams(texts, labels, strength=10.0)
    classifier = Classifier(_constant("neutral"), ngrams, blend=0.5)
    embeddings = np.zeros((2, 4))
    blended = classifier.predict(["awful queue", "lovely staff"], embeddings)
    expected = 0.5 * _constant("neutral").predict(embeddings) + 0.5 * ngrams.predict(["awful queue", "lovely staff"])
    np.testing.assert_allclose(blended, expected)

    path = tmp_path / "head.npz"
    classifier.save(path)
    with np.load(path, allow_pickle=False) as data:  # loads with pickle refused: arrays only
        assert "ngram_vocabulary" in data.files
    loaded = Classifier.load(path)
    np.testing.assert_allclose(loaded.predict(["awful queue", "lovely staff"], embeddings), blended, rtol=1e-5)


def test_word_ngrams_read_word_pairs_and_round_trip(tmp_path: Path) -> None:
    # The same characters in every text of both labels: only the order of the words tells them apart.
    texts = ["top up card", "card top up", "top up my card", "my card top up"] * 3
    labels = ["top_up", "card", "top_up", "card"] * 3
    words = train_ngrams(texts, labels, strength=10.0, words=True)
    assert {"top up", "up card", "card top"} <= set(words.word_vocabulary)
    probabilities = words.predict(["please top up card", "card top up please"])
    assert [words.labels[i] for i in probabilities.argmax(axis=1)] == ["top_up", "card"]
    characters = train_ngrams(texts, labels, strength=10.0).predict(["please top up card", "card top up please"])
    assert np.ptp(characters[:, 0]) < np.ptp(probabilities[:, 0])  # characters alone tell them apart less well

    path = tmp_path / "words.npz"
    classifier = Classifier(LinearHead(words.labels, np.zeros((2, 2)), np.zeros(2)), words)
    classifier.save(path)
    loaded = Classifier.load(path)
    assert loaded.ngrams is not None
    assert loaded.ngrams.word_vocabulary == words.word_vocabulary
    np.testing.assert_allclose(loaded.predict(texts, np.zeros((len(texts), 2))),
                               classifier.predict(texts, np.zeros((len(texts), 2))), rtol=1e-5)  # fmt: skip


def test_word_ngrams_fall_back_to_characters_where_no_word_repeats() -> None:
    texts, labels = ["我的卡丢了", "卡被吞了", "密码忘了", "重置密码"], ["card", "card", "pin", "pin"]
    head = train_ngrams(texts, labels, strength=10.0, words=True)  # each run of characters is one word, seen once
    assert head.word_vocabulary == ()
    assert [head.labels[i] for i in head.predict(["卡丢了", "忘了密码"]).argmax(axis=1)] == ["card", "pin"]


def test_an_embedding_only_file_loads_as_a_classifier_without_ngrams(tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    _constant("positive").save(path)
    loaded = Classifier.load(path)
    assert loaded.ngrams is None
    assert loaded.labels[int(loaded.predict(["anything"], np.zeros((1, 4))).argmax())] == "positive"


def test_heads_with_different_labels_are_refused() -> None:
    texts, labels = _corpus()
    ngrams = train_ngrams(texts[:8], labels[:8], strength=1.0)  # negative and neutral only
    with pytest.raises(ValueError, match="disagree on labels"):
        Classifier(_constant("positive"), ngrams)


def test_sentiment_goes_to_the_classifier_of_its_language(tmp_path: Path) -> None:
    model = SentimentModel(Classifier(_constant("neutral")), {"zh": Classifier(_constant("negative"))})
    texts = ["fine", "排队太久", "ok", "bonjour"]
    probabilities = model.predict(texts, np.zeros((4, 4)), ["en", "zh", "en", "other"])
    assert [model.labels[i] for i in probabilities.argmax(axis=1)] == ["neutral", "negative", "neutral", "neutral"]

    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentiment-zh.npz", "sentiment.npz"]
    loaded = SentimentModel.load(tmp_path)
    assert set(loaded.by_language) == {"zh"}
    np.testing.assert_allclose(loaded.predict(texts, np.zeros((4, 4)), ["en", "zh", "en", "other"]), probabilities)


def _xor(count: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Points in the four quadrants; the label is "same" where both coordinates share a sign: no line separates it."""
    points = np.random.default_rng(seed).uniform(-1, 1, size=(count, 2)).astype(np.float32)
    return points, ["same" if x * y > 0 else "differ" for x, y in points]


def test_a_hidden_layer_learns_what_no_linear_head_can_and_round_trips(tmp_path: Path) -> None:
    points, labels = _xor(600, seed=1)
    test_points, test_labels = _xor(300, seed=2)
    hidden = train_hidden(points, labels, calibration=(test_points[:100], test_labels[:100]))
    linear = train_softmax(points, labels, strength=10.0)

    def accuracy(head: LinearHead) -> float:
        predicted = [head.labels[i] for i in head.predict(test_points).argmax(axis=1)]
        return float(np.mean([p == t for p, t in zip(predicted, test_labels, strict=True)]))

    assert accuracy(hidden) > 0.9
    assert accuracy(linear) < 0.7
    assert hidden.dim == 2

    path = tmp_path / "hidden.npz"
    Classifier(hidden).save(path)
    loaded = Classifier.load(path)
    assert loaded.linear.hidden_weights is not None
    assert loaded.linear.temperature == hidden.temperature
    np.testing.assert_allclose(loaded.predict(["x"] * 300, test_points), hidden.predict(test_points), rtol=1e-5)


def test_hidden_layer_training_is_seeded() -> None:
    points, labels = _xor(200, seed=3)
    first, second = train_hidden(points, labels), train_hidden(points, labels)
    np.testing.assert_array_equal(first.hidden_weights, second.hidden_weights)
    np.testing.assert_array_equal(first.weights, second.weights)
