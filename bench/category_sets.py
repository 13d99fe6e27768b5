"""Benchmark: a bank's own category set, trained from labelled history and scored on rows it never saw.

banking77 (77 intents, ../shared/eval-data) is split 80/20, stratified by intent, once per seed; each split goes
through the commands a bank would run, in a fresh data directory:

    closeloop nlp train-categories --data train.csv --text-column text --label-column category --name b77
    closeloop nlp eval --data test.csv --text-column text --label-column category --task categories --categories b77

and the accuracy and macro-F1 that `nlp eval` prints are collected, with each command's wall time.

    .venv/bin/python bench/category_sets.py [--seeds 0,1,2] [--cache-dir data/models]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "eval-data" / "banking77" / "train.csv"
CLOSELOOP = Path(sys.executable).with_name("closeloop")
SCORES = re.compile(r"accuracy ([0-9.]+)\s+macro-F1 ([0-9.]+)")


def run(args: list[str], data_dir: Path) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run([str(CLOSELOOP), *args], capture_output=True, text=True,  # noqa: S603 - our own CLI
                          env=os.environ | {"CLOSELOOP_DATA_DIR": str(data_dir)})  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"closeloop {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "models",
                        help="the converted encoder (made there on first use)")  # fmt: skip
    options = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is missing: this benchmark needs ../shared/eval-data")
    rows = pd.read_csv(DATA)
    options.cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"banking77: {len(rows)} rows, {rows['category'].nunique()} intents; 80/20 stratified splits")
    print(f"{'seed':>4} {'train':>6} {'test':>5} {'accuracy':>9} {'macro-F1':>9} {'train s':>8} {'eval s':>7}")
    accuracies = []
    for seed in (int(s) for s in options.seeds.split(",")):
        train, test = train_test_split(rows, test_size=0.2, stratify=rows["category"], random_state=seed)
        with tempfile.TemporaryDirectory(prefix="closeloop-bench-") as folder:
            work = Path(folder)
            (work / "models").symlink_to(options.cache_dir.resolve())
            train.to_csv(work / "train.csv", index=False)
            test.to_csv(work / "test.csv", index=False)
            columns = ["--text-column", "text", "--label-column", "category"]
            _, train_s = run(["nlp", "train-categories", "--data", str(work / "train.csv"), *columns,
                              "--name", "b77"], work)  # fmt: skip
            out, eval_s = run(["nlp", "eval", "--data", str(work / "test.csv"), *columns, "--task", "categories",
                               "--categories", "b77"], work)  # fmt: skip
        found = SCORES.search(out)
        if found is None:
            raise SystemExit(f"no scores in the output of nlp eval:\n{out}")
        accuracy, macro_f1 = float(found[1]), float(found[2])
        accuracies.append(accuracy)
        print(f"{seed:>4} {len(train):>6} {len(test):>5} {accuracy:>9.4f} {macro_f1:>9.4f} {train_s:>8.0f} "
              f"{eval_s:>7.0f}", flush=True)  # fmt: skip
    print(f"mean accuracy {sum(accuracies) / len(accuracies):.4f} over {len(accuracies)} splits")


if __name__ == "__main__":
    main()
