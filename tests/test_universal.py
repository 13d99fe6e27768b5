"""The second embedding a bank's own category sets read: the packaged Universal Sentence Encoder."""

from __future__ import annotations

import numpy as np
import pytest

from nlp.categories import LabelSet
from nlp.heads import Classifier, train_softmax
from nlp.universal import NAME, UniversalEncoder


@pytest.fixture(scope="module")
def universal() -> UniversalEncoder:
    return UniversalEncoder.load(threads=1)


def test_rows_are_unit_length_and_in_the_order_given(universal: UniversalEncoder) -> None:
    texts = ["a much longer sentence about a card that never arrived in the post", "hi", "", "我的卡丢了", "atm ate it"]
    together = universal.encode(texts, batch_size=2)  # sorted by length into batches, then put back in order
    assert together.shape == (5, 512)
    assert together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([universal.encode([text]) for text in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)
    assert universal.encode([]).shape == (0, 512)


def test_a_label_set_reads_the_view_beside_the_encoder(universal: UniversalEncoder) -> None:
    texts = ["my card has not arrived", "where is my new card", "reset my pin", "forgot my pin number"] * 3
    labels = ["card", "card", "pin", "pin"] * 3
    encoder_part = np.zeros((len(texts), 4), dtype=np.float32)  # the encoder says nothing: only the view can tell
    features = np.hstack([encoder_part, universal.encode(texts)])
    head = Classifier(train_softmax(features, labels, strength=10.0), view=NAME)
    label_set = LabelSet(head, universal)
    scores = label_set.scores(["when will my card come", "I can't remember my PIN"], np.zeros((2, 4), np.float32))
    assert [label_set.labels[i] for i in scores.argmax(axis=1)] == ["card", "pin"]
    with pytest.raises(ValueError, match="reads the view"):
        LabelSet(head)
