"""Benchmark: the ticket grouping pass over a year of feedback on PostgreSQL (default 1,000,000 rows, 200 branches).

Builds a scratch database beside the admin URL and fills it in SQL (bench/fill.py: conversations, feedback and
one analysis each, about a fifth of them negative, with twelve planted bursts in the last four weeks), then times
the window's counting query (with its plan), a first grouping pass, a second pass at the same moment (which
must change nothing) and verify_resolved. Embeddings come from a hashing bag-of-words stand-in unless
--encoder loads the real one. The database is dropped afterwards. bench/reporting_digest.py times the first
pass on SQLite too.

    .venv/bin/python bench/reporting_tickets.py [--url postgresql://postgres@127.0.0.1:5432/test] [--rows 1000000]
                                                [--encoder]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fill import CATEGORIES, NOW, fill, scratch_database  # noqa: E402

from reporting.complaints import TicketRules, window_counts_query  # noqa: E402
from reporting.tickets import run_grouping, verify_resolved  # noqa: E402
from store import Database, upgrade  # noqa: E402


def embed(texts: Sequence[str]) -> np.ndarray:
    """A stand-in encoder: hashed bag of words, unit rows (shared words make texts close, as in a real one)."""
    rows = np.zeros((len(texts), 2048))
    for i, value in enumerate(texts):
        for word in re.findall(r"\w+", value.casefold()):
            rows[i, zlib.crc32(word.encode()) % 2048] += 1.0
        rows[i, 0] += 1e-6
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--encoder", action="store_true", help="embed with the real int8 e5-small")
    args = parser.parse_args(argv)
    async with scratch_database("postgresql", args.url) as url:
        db = Database(url)
        try:
            await run(db, args)
        finally:
            await db.dispose()


async def run(db: Database, args: argparse.Namespace) -> None:
    await upgrade(db)
    filled = await fill(db, args.rows)
    print(f"filled {filled.feedback:,} feedback rows in {filled.seconds:.1f} s")
    embedder = embed
    if args.encoder:
        from nlp.encoder import Encoder

        embedder = Encoder.load(cache_dir=ROOT / "data" / "models").encode
    rules = TicketRules(cluster_distance=0.5) if not args.encoder else TicketRules()
    statement = window_counts_query("postgresql", rules, end=NOW)
    async with db.engine.connect() as conn:
        compiled = statement.compile(db.engine.sync_engine, compile_kwargs={"literal_binds": True})
        plan = (await conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}"))).scalars().all()
    print("window counts plan:\n  " + "\n  ".join(line for line in plan if "->" in line or "Time" in line))
    departments = dict.fromkeys(CATEGORIES, "branch_operations")
    for label in ("first pass", "second pass"):
        started = time.perf_counter()
        result = await run_grouping(db, departments, embedder, now=NOW, rules=rules)
        tally = f"opened {result.opened}, updated {result.updated}, reopened {result.reopened}"
        print(f"{label}: {time.perf_counter() - started:.2f} s, {tally}")
    started = time.perf_counter()
    checked = await verify_resolved(db, NOW, rules)
    print(f"verify_resolved: {time.perf_counter() - started:.2f} s, {len(checked)} checked")


if __name__ == "__main__":
    asyncio.run(main())
