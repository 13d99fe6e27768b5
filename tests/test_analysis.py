"""The analysis with the real packaged model: sentiment, categories, aspects, flags, the worker and the CLI."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from config.app import load_analysis, load_catalog
from config.cli import main
from config.settings import load_settings
from config.worker import AnalysisWorker
from nlp.heads import Classifier, train_softmax
from store import Database, upgrade
from store.analysis_queue import pending_count, record_correction
from store.models import Analysis, Branch, Conversation, Feedback, StaffUser


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("closeloop-data")


@pytest.fixture(scope="session")
def analyzer(model_dir):
    settings = load_settings({"CLOSELOOP_DATA_DIR": str(model_dir)})
    return load_analysis(settings, load_catalog(settings))


@pytest.mark.parametrize(
    ("text", "sentiment"),
    [
        ("Terrible service, I waited over an hour and nobody helped", "negative"),
        ("The staff were friendly and it was quick, thank you!", "positive"),
        ("排队太久了，态度也很差", "negative"),
        ("柜员非常耐心，服务很好", "positive"),
    ],
)
def test_sentiment_reads_both_languages(analyzer, text, sentiment):
    [result] = analyzer.analyze([text])
    assert result.sentiment == sentiment
    assert abs(sum(result.sentiment_scores.values()) - 1) < 1e-3


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("The ATM swallowed my card", "card_atm"),
        ("排队等了一个多小时", "waiting_time"),
        ("The app keeps crashing when I log in", "digital_banking"),
        ("Why is the transfer fee so high?", "fees_charges"),
    ],
)
def test_the_top_category_matches_the_complaint(analyzer, text, category):
    [result] = analyzer.analyze([text])
    assert result.categories[0][0] == category


def test_a_mixed_comment_gets_one_aspect_per_clause(analyzer):
    [result] = analyzer.analyze(["The teller was very kind but the queue was terribly slow"])
    assert [a.text for a in result.aspects] == ["The teller was very kind", "the queue was terribly slow"]
    assert result.aspects[0].sentiment == "positive"
    assert result.aspects[1].category == "waiting_time"
    assert result.aspects[1].sentiment == "negative"


def test_flags_masking_and_empty_comments(analyzer):
    fraud, empty, masked = analyzer.analyze(
        ["Someone made an unauthorized transaction on my card, this is fraud", "", "my card 4111 1111 1111 1111"],
        ratings=[1, 1, 4],
    )
    assert "fraud_security" in {f.id for f in fraud.flags}
    assert empty.sentiment == "negative", "with no words, the rating speaks"
    assert "4111" not in masked.masked_text


def test_huge_and_strange_input_is_analysed(analyzer):
    results = analyzer.analyze(["slow " * 20_000, "😡😡😡", "\x00\x07", "ATM机坏了，card被吞了"])
    assert len(results) == 4
    assert results[3].language == "zh"


async def add_feedback(db, comments):
    async with db.sessions() as session, session.begin():
        branch = Branch(code="MAIN", name_en="Main", name_zh="总行")
        session.add(branch)
        await session.flush()
        for comment in comments:
            conversation = Conversation(channel="web", branch_id=branch.id, source="link", step="thanks", state={})
            session.add(conversation)
            await session.flush()
            session.add(
                Feedback(conversation_id=conversation.id, branch_id=branch.id, language="en", csat=2, comment=comment)
            )


async def test_the_worker_stores_analyses_under_the_model_version(db, analyzer):
    await add_feedback(db, ["The queue was too long", "Staff were rude to my father", "很满意"])
    worker = AnalysisWorker(db, lambda: analyzer, batch_size=2)
    worker._analyzer = analyzer
    assert await worker.run_once() == 2
    assert await worker.run_once() == 1
    assert await pending_count(db) == 0
    async with db.sessions() as session:
        rows = list(await session.scalars(select(Analysis).order_by(Analysis.feedback_id)))
    assert {r.model_version for r in rows} == {analyzer.version}
    assert rows[0].categories[0][0] == "waiting_time"


class FailingAnalyzer:
    version = "broken"

    def analyze_feedback(self, items):
        raise RuntimeError("model crashed")


async def test_a_failing_model_leaves_feedback_pending(db):
    await add_feedback(db, ["anything"])
    worker = AnalysisWorker(db, FailingAnalyzer, batch_size=5)
    worker._analyzer = FailingAnalyzer()
    assert await worker.run_once() == 1
    async with db.sessions() as session:
        row = (await session.scalars(select(Feedback))).one()
    assert (row.analysis_status, row.analysis_attempts, row.analysis_error) == (
        "pending",
        1,
        "RuntimeError: model crashed",
    )


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_cli_analyze_eval_and_train_categories(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLOSELOOP_DATA_DIR", str(model_dir))
    rows = [{"comment": t, "label": s} for t, s in [("awful queue", "negative"), ("lovely staff", "positive")] * 3]
    data = write_csv(tmp_path / "in.csv", rows)
    assert (
        main(["nlp", "analyze", "--data", str(data), "--text-column", "comment", "--out", str(tmp_path / "o.csv")]) == 0
    )
    with (tmp_path / "o.csv").open(encoding="utf-8") as fh:
        out = list(csv.DictReader(fh))
    assert [r["sentiment"] for r in out] == ["negative", "positive"] * 3
    assert main(["nlp", "eval", "--data", str(data), "--text-column", "comment", "--label-column", "label",
                 "--task", "sentiment"]) == 0  # fmt: skip
    assert "accuracy 1.0000" in capsys.readouterr().out
    intents = [("my card has not arrived", "card_arrival"), ("how do I reset my PIN", "pin")] * 15
    labelled = write_csv(tmp_path / "intents.csv", [{"text": t, "intent": i} for t, i in intents])
    assert main(["nlp", "train-categories", "--data", str(labelled), "--text-column", "text", "--label-column",
                 "intent", "--name", "mine"]) == 0  # fmt: skip
    saved = Classifier.load(model_dir / "category-sets" / "mine.npz")
    assert saved.view == "use-m3+minilm-en"  # an English history: the English encoder as well
    assert saved.linear.dim == 384 + 512 + 384  # e5's embedding, then the views' in the order named
    assert saved.ngrams is not None
    assert "my card" in saved.ngrams.word_vocabulary
    capsys.readouterr()
    assert main(["nlp", "eval", "--data", str(labelled), "--text-column", "text", "--label-column", "intent",
                 "--task", "categories", "--categories", "mine"]) == 0  # fmt: skip
    assert "accuracy 1.0000" in capsys.readouterr().out


def test_cli_names_a_category_set_it_cannot_load(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLOSELOOP_DATA_DIR", str(model_dir))
    rows = [{"text": "my card has not arrived", "intent": "card_arrival"}, {"text": "reset my PIN", "intent": "pin"}]
    data = write_csv(tmp_path / "in.csv", rows)
    command = ["nlp", "eval", "--data", str(data), "--text-column", "text", "--label-column", "intent",
               "--task", "categories", "--categories"]  # fmt: skip
    assert main([*command, "nosuch"]) == 2
    assert "no category set 'nosuch'" in capsys.readouterr().err
    # a set file that names a view this version does not know (a newer version's, or a damaged file)
    head = Classifier(train_softmax(np.eye(2, 384 + 512), ["a", "b"]), view="use-m3+use-m9")
    head.save(model_dir / "category-sets" / "newer.npz")
    assert main([*command, "newer"]) == 2
    assert "reads the embedding 'use-m9', which this version does not know" in capsys.readouterr().err


def test_cli_names_a_missing_column_and_bad_bytes(tmp_path, capsys):
    data = write_csv(tmp_path / "in.csv", [{"text": "hello"}])
    assert main(["nlp", "analyze", "--data", str(data), "--text-column", "comment", "--out", str(tmp_path / "o")]) == 2
    assert "no column 'comment' (columns: text)" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_bytes(b"text\n\xff\xfe broken\n")
    assert (
        main(
            [
                "nlp",
                "analyze",
                "--data",
                str(tmp_path / "bad.csv"),
                "--text-column",
                "text",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "not UTF-8 text" in capsys.readouterr().err


def test_staff_corrections_feed_the_next_train_and_those_heads_are_used(model_dir, tmp_path, monkeypatch, capsys):
    """`nlp train` reads the corrections, writes the bank's own heads to its data dir, and the loader prefers them."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (model_dir / "models").mkdir(exist_ok=True)
    (data_dir / "models").symlink_to(model_dir / "models")  # the converted encoder, not converted again
    monkeypatch.setenv("CLOSELOOP_DATA_DIR", str(data_dir))
    settings = load_settings({"CLOSELOOP_DATA_DIR": str(data_dir)})
    shipped = load_analysis(settings, load_catalog(settings)).version

    async def correct() -> None:
        database = Database(settings.database_url)
        try:
            await upgrade(database)
            await add_feedback(database, ["the coffee machine in the lobby is broken", "ok i guess"])
            async with database.sessions() as session, session.begin():
                staff = StaffUser(username="amy", display_name="Amy", role="staff", scope_kind="all", password_hash="x")
                session.add(staff)
            await record_correction(database, 1, staff.id, sentiment="neutral", categories=[])
            await record_correction(database, 1, staff.id, sentiment="negative", categories=["branch_environment"])
            await record_correction(database, 2, staff.id, sentiment="mixed", categories=[])
        finally:
            await database.dispose()

    asyncio.run(correct())
    empty = tmp_path / "no-public-data"
    empty.mkdir()
    assert main(["nlp", "train", "--data", str(empty)]) == 0
    assert f"2 staff corrections; writing the heads to {data_dir / 'heads'}" in capsys.readouterr().out
    metadata = json.loads((data_dir / "heads" / "metadata.json").read_text(encoding="utf-8"))
    [record] = [d for d in metadata["data"] if d["source"] == "corrections"]
    assert record["rows"] == 2
    assert load_analysis(settings, load_catalog(settings)).version != shipped, "the bank's own heads are in use"


def test_asking_for_corrections_without_a_database_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLOSELOOP_DATA_DIR", str(tmp_path))
    assert main(["nlp", "train", "--corrections"]) == 2
    assert "the database has no tables yet" in capsys.readouterr().err


class FixedAnalyzer:
    """Stands in for the model (not under test here): every comment reads as a neutral, unflagged one."""

    version = "fixed"

    def analyze_feedback(self, items):
        return [
            {"language": "en", "sentiment": "neutral", "sentiment_scores": {"neutral": 1.0}, "categories": [],
             "aspects": [], "flags": []}
            for _ in items
        ]  # fmt: skip


async def test_the_worker_outlives_a_database_failure_and_finishes_the_work(db):
    """The feedback table vanishes mid-run (as a failing database would): the worker waits, then catches up."""
    await add_feedback(db, ["first"])
    worker = AnalysisWorker(db, FixedAnalyzer, batch_size=5, idle_seconds=0.05)
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE feedback RENAME TO feedback_away")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.5)
        assert not task.done(), "a database error must not end the worker"
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE feedback_away RENAME TO feedback")
        async with asyncio.timeout(10):
            while await pending_count(db):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    async with db.sessions() as session:
        assert (await session.scalars(select(Analysis.model_version))).all() == ["fixed"]
