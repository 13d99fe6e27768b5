"""Benchmark: the ticket grouping pass over a year of feedback on PostgreSQL (default 1,000,000 rows, 200 branches).

Builds a scratch database beside the admin URL, fills it in SQL (generate_series: conversations, feedback and
one analysis each, a fifth of them negative, with twelve planted bursts in the last four weeks), then times
the window's counting query (with its plan), a first grouping pass, a second pass at the same moment (which
must change nothing) and verify_resolved. Embeddings come from a hashing bag-of-words stand-in unless
--encoder loads the real one. The database is dropped afterwards.

    .venv/bin/python bench/reporting_tickets.py [--url postgresql://postgres@127.0.0.1:5432/test] [--rows 1000000]
                                                [--encoder]
"""

# ruff: noqa: S608 - the fill statements are built from this file's own constants and integers, no input

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import uuid
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reporting.complaints import TicketRules, window_counts_query  # noqa: E402
from reporting.tickets import run_grouping, verify_resolved  # noqa: E402
from store import Database, normalize_url, upgrade  # noqa: E402

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BRANCHES = 200
CATEGORIES = ["waiting_time", "staff_attitude", "staff_knowledge", "fees_charges", "card_atm", "digital_banking",
              "process_paperwork", "branch_environment", "fraud_security"]  # fmt: skip
COMMENTS = ["the queue was long and I waited {n} minutes", "only one counter open, waited {n} minutes",
            "the teller was rude to me", "the app kept logging me out", "fee of {n} yuan was never explained",
            "the atm swallowed my card", "too much paperwork for a simple change", "the hall was hot and stuffy",
            "friendly and quick service", "all fine, thanks"]  # fmt: skip


def embed(texts: Sequence[str]) -> np.ndarray:
    rows = np.zeros((len(texts), 2048))
    for i, value in enumerate(texts):
        for word in re.findall(r"\w+", value.casefold()):
            rows[i, zlib.crc32(word.encode()) % 2048] += 1.0
        rows[i, 0] += 1e-6
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def fill_sql(rows: int) -> list[str]:
    """Statements that generate `rows` visits over the year before NOW, plus planted bursts."""
    comments = "ARRAY[" + ",".join(f"'{c}'" for c in COMMENTS) + "]"
    categories = "ARRAY[" + ",".join(f"'{c}'" for c in CATEGORIES) + "]"
    now = NOW.isoformat()
    names = "'B' || lpad(i::text, 3, '0')"
    branches = f"""INSERT INTO branches (code, name_en, name_zh, region, is_active)
        SELECT {names}, 'Branch ' || i, '支行' || i, 'R' || (i % 10), true FROM generate_series(1, {BRANCHES}) i"""
    # One visit per i: branch, moment, mood and comment follow from i (hash-spread, so reproducible).
    visits = f"""CREATE TEMP TABLE visits AS SELECT i,
        1 + (hashint4(i) & 2147483647) % {BRANCHES} AS branch_id,
        timestamptz '{now}' - (((hashint4(i * 7) & 2147483647) % 31536000) || ' seconds')::interval AS at,
        (hashint4(i * 13) & 2147483647) % 100 < 20 AS negative,
        (hashint4(i * 17) & 2147483647) % 9 AS category,
        (hashint4(i * 19) & 2147483647) % 8 AS comment
        FROM generate_series(1, {rows}) i"""
    # Twelve bursts: 40 complaints each at one branch × category in the last four weeks.
    bursts = f"""INSERT INTO visits SELECT {rows} + 1 + j, 1 + (j / 40) * 13, timestamptz '{now}' - ((j % 40) || ' hours')::interval,
        true, (j / 40) % 9, (j / 40) % 8 FROM generate_series(0, 479) j"""  # noqa: E501
    conversations = """INSERT INTO conversations (id, channel, branch_id, source, step, state, status, started_at,
        updated_at, completed_at, version)
        SELECT i, 'web', branch_id, 'qr', 'done', '{}', 'completed', at, at, at, 1 FROM visits"""
    feedback = f"""INSERT INTO feedback (id, conversation_id, branch_id, language, csat, comment, analysis_status,
        submitted_at)
        SELECT i, i, branch_id, 'en', CASE WHEN negative THEN 2 ELSE 5 END,
        CASE WHEN negative THEN replace(({comments})[1 + comment], '{{n}}', (i % 60)::text)
             ELSE ({comments})[9 + i % 2] END, 'done', at FROM visits"""
    analyses = f"""INSERT INTO analyses (feedback_id, model_version, language, sentiment, sentiment_scores, categories,
        aspects, flag_reasons, created_at)
        SELECT i, 'm1', 'en', CASE WHEN negative THEN 'negative' ELSE 'positive' END, '{{}}',
        jsonb_build_array(jsonb_build_array(({categories})[1 + category], 0.9)), '[]', '[]', at FROM visits"""
    sequences = [f"SELECT setval('{t}_id_seq', (SELECT max(id) FROM {t}))" for t in ("conversations", "feedback")]
    return [branches, visits, bursts, conversations, feedback, analyses, *sequences, "ANALYZE"]


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--encoder", action="store_true", help="embed with the real int8 e5-small")
    args = parser.parse_args(argv)
    name = f"closeloop_bench_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(normalize_url(args.url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = Database(make_url(args.url).set(database=name).render_as_string(hide_password=False))
    try:
        await run(db, args)
    finally:
        await db.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def run(db: Database, args: argparse.Namespace) -> None:
    await upgrade(db)
    started = time.perf_counter()
    async with db.engine.begin() as conn:
        for statement in fill_sql(args.rows):
            await conn.execute(text(statement))
    print(f"filled {args.rows:,} feedback rows in {time.perf_counter() - started:.1f} s")
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
