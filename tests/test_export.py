"""Exports over both databases: files that read back with pandas, streamed in chunks, formulas neutralised."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from config.report_commands import export
from config.settings import load_settings
from reporting.export import ExportRequest, export_files
from reporting.scope import ReportingError
from reporting.tables import neutralise_formulas
from store import Database, upgrade
from store.models import Analysis, Branch, Conversation, Counter, Feedback

TZ = "Asia/Shanghai"
NOVEMBER = {"first_day": date(2026, 11, 1), "last_day": date(2026, 11, 30)}
HOSTILE = ['=HYPERLINK("http://evil.example","click")', "+1 555 0100 call me", "-rude staff", "@SUM(1+1)"]
# (branch, counter, submitted_at, csat, comment)
ROWS = [
    ("B1", "C1", datetime(2026, 11, 2, 1, tzinfo=UTC), 5, HOSTILE[0]),
    ("B1", "C1", datetime(2026, 11, 3, 1, tzinfo=UTC), 4, HOSTILE[1]),
    ("B1", None, datetime(2026, 11, 4, 1, tzinfo=UTC), 2, HOSTILE[2]),
    ("B1", None, datetime(2026, 11, 5, 1, tzinfo=UTC), 1, HOSTILE[3]),
    ("B1", None, datetime(2026, 11, 6, 1, tzinfo=UTC), 5, "排队太久了"),
    ("B2", None, datetime(2026, 11, 7, 1, tzinfo=UTC), 3, None),
    ("B1", None, datetime(2026, 10, 31, 15, 59, tzinfo=UTC), 5, "October in Shanghai"),  # 23:59 local, 31 Oct
    ("B1", None, datetime(2026, 11, 30, 16, tzinfo=UTC), 5, "December in Shanghai"),  # 00:00 local, 1 Dec
]
SCORES = {"negative": 0.7, "neutral": 0.2, "positive": 0.1}
FLAGS = [{"id": "threat", "priority": "high", "reason": "matched a threat phrase"}]


async def seed(db: Database) -> None:
    async with db.sessions() as session, session.begin():
        b1, b2 = Branch(code="B1", name_en="One", name_zh="一"), Branch(code="B2", name_en="Two", name_zh="二")
        session.add_all([b1, b2])
        await session.flush()
        counter = Counter(branch_id=b1.id, code="C1", name_en="Desk", name_zh="柜台")
        session.add(counter)
        await session.flush()
        for branch, counter_code, at, csat, comment in ROWS:
            branch_id = (b1 if branch == "B1" else b2).id
            conversation = Conversation(channel="web", branch_id=branch_id, source="qr", step="done", state={})
            session.add(conversation)
            await session.flush()
            session.add(Feedback(conversation_id=conversation.id, branch_id=branch_id, language="en", csat=csat,
                                 counter_id=counter.id if counter_code else None, comment=comment, submitted_at=at,
                                 contact_phone="+86 138 0000 0000"))  # fmt: skip
        await session.flush()
        first = await session.scalar(select(func.min(Feedback.id)))
        for version, sentiment in (("v1", "positive"), ("v2", "negative")):
            session.add(Analysis(feedback_id=first, model_version=version, language="en", sentiment=sentiment,
                                 sentiment_scores=SCORES, categories=[["staff", 0.8]], flag_reasons=FLAGS))  # fmt: skip
            await session.flush()


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed(db)
    return db


async def test_csv_files_read_back_with_the_periods_rows_and_no_phone_numbers(seeded, tmp_path):
    result = await export_files(seeded, ExportRequest(tmp_path, TZ, formats=frozenset({"csv"}), **NOVEMBER))

    assert [p.name for p in result.files] == ["analyses.csv", "feedback.csv", "metrics.csv"]
    feedback = pd.read_csv(tmp_path / "feedback.csv")
    assert result.feedback_rows == len(feedback) == 6
    assert feedback["branch"].tolist() == ["B1"] * 5 + ["B2"]
    assert feedback["counter"].fillna("").tolist() == ["C1", "C1", "", "", "", ""]
    assert feedback["submitted_at"].iloc[0] == "2026-11-02T09:00:00+08:00"
    assert feedback["comment"].iloc[4] == "排队太久了"
    assert "contact_phone" not in feedback.columns
    assert "138" not in (tmp_path / "feedback.csv").read_text(encoding="utf-8-sig")


async def test_customer_text_that_looks_like_a_formula_is_neutralised(seeded, tmp_path):
    await export_files(seeded, ExportRequest(tmp_path, TZ, **NOVEMBER))

    from_csv = pd.read_csv(tmp_path / "feedback.csv")["comment"].tolist()[:4]
    from_excel = pd.read_excel(tmp_path / "closeloop-export.xlsx", sheet_name="feedback")["comment"].tolist()[:4]
    assert from_csv == from_excel == ["'" + text for text in HOSTILE]
    sheet = openpyxl.load_workbook(tmp_path / "closeloop-export.xlsx")["feedback"]
    assert [cell.data_type for row in sheet.iter_rows() for cell in row if cell.data_type == "f"] == []


def test_neutralising_leaves_numbers_and_missing_values_alone():
    frame = pd.DataFrame({"text": ["=1+2", "\tcmd", "ok", None, "-12", "+5%"], "n": [1, -2, 3, 4, 5, 6]})

    out = neutralise_formulas(frame)

    assert out["text"].fillna("<missing>").tolist() == ["'=1+2", "'\tcmd", "ok", "<missing>", "-12", "+5%"]
    assert out["n"].tolist() == [1, -2, 3, 4, 5, 6]


async def test_only_the_latest_analysis_is_exported(seeded, tmp_path):
    await export_files(seeded, ExportRequest(tmp_path, TZ, formats=frozenset({"csv"}), **NOVEMBER))

    analyses = pd.read_csv(tmp_path / "analyses.csv")
    assert analyses[["model_version", "sentiment", "categories", "flags"]].values.tolist() == [
        ["v2", "negative", "staff", "threat"]
    ]
    assert analyses["p_negative"].tolist() == [0.7]


async def test_metrics_sheet_holds_bank_and_branch_figures(seeded, tmp_path):
    request = ExportRequest(tmp_path, TZ, min_responses=5, **NOVEMBER)
    await export_files(seeded, request)

    metrics = pd.read_excel(tmp_path / "closeloop-export.xlsx", sheet_name="metrics")
    bank = metrics[(metrics["scope_kind"] == "all") & (metrics["metric"] == "csat")].iloc[0]
    assert (bank["value"], bank["n"], bank["period"]) == (pytest.approx(50.0), 6, "2026-11-01..2026-11-30")
    b2 = metrics[(metrics["branch"] == "B2") & (metrics["metric"] == "csat")].iloc[0]
    assert (bool(b2["enough"]), b2["shown"]) == (False, "not enough responses")
    assert pd.isna(b2["value"])
    from_csv = pd.read_csv(tmp_path / "metrics.csv")
    assert len(from_csv) == len(metrics)


async def test_feedback_streams_in_chunks_and_the_workbook_stops_at_its_cap(seeded, tmp_path):
    request = ExportRequest(tmp_path, TZ, chunk_rows=2, xlsx_max_rows=3, **NOVEMBER)
    result = await export_files(seeded, request)

    assert result.xlsx_truncated is True
    assert pd.read_csv(tmp_path / "feedback.csv")["csat"].tolist() == [5, 4, 2, 1, 5, 3]
    assert pd.read_excel(tmp_path / "closeloop-export.xlsx", sheet_name="feedback")["csat"].tolist() == [5, 4, 2]
    notes = pd.read_excel(tmp_path / "closeloop-export.xlsx", sheet_name="notes").set_index("item")["value"]
    assert notes["feedback rows"] == "3 of 6"
    assert "feedback.csv" in notes["feedback"]


async def test_a_branch_export_holds_only_that_branch(seeded, tmp_path):
    result = await export_files(seeded, ExportRequest(tmp_path, TZ, branch="B2", formats=frozenset({"csv"})))

    feedback = pd.read_csv(tmp_path / "feedback.csv")
    assert (result.feedback_rows, feedback["branch"].tolist()) == (1, ["B2"])
    assert result.period.first_day == date(2026, 11, 7)  # default start: the branch's first feedback
    with pytest.raises(ReportingError, match="unknown branch 'B9'"):
        await export_files(seeded, ExportRequest(tmp_path, TZ, branch="B9"))


async def test_an_empty_period_writes_headers_only(seeded, tmp_path):
    request = ExportRequest(tmp_path, TZ, first_day=date(2025, 1, 1), last_day=date(2025, 1, 31))
    await export_files(seeded, request)

    feedback = pd.read_csv(tmp_path / "feedback.csv")
    assert feedback.empty
    assert "comment" in feedback.columns
    assert pd.read_excel(tmp_path / "closeloop-export.xlsx", sheet_name="analyses").empty


async def test_an_end_before_the_first_feedback_is_an_empty_export_not_an_error(seeded, tmp_path):
    result = await export_files(seeded, ExportRequest(tmp_path, TZ, last_day=date(2025, 1, 1)))

    assert (result.period.label, result.feedback_rows) == ("2025-01-01..2025-01-01", 0)


def test_export_command_writes_the_files(database_url, tmp_path):
    asyncio.run(prepare(database_url, with_rows=True))
    settings = load_settings({"CLOSELOOP_DATABASE_URL": database_url, "CLOSELOOP_TIMEZONE": TZ})
    out = tmp_path / "out"
    args = ["--out", str(out), "--from", "2026-11-01", "--to", "2026-11-30", "--branch", "B1", "--format", "csv"]

    result = CliRunner().invoke(export, args, obj=settings)

    assert result.exit_code == 0, result.output
    assert "2026-11-01..2026-11-30 (Asia/Shanghai): 5 feedback, 1 analyses" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["analyses.csv", "feedback.csv", "metrics.csv"]


def test_export_command_refuses_an_unknown_branch_and_a_backwards_range(database_url, tmp_path):
    asyncio.run(prepare(database_url, with_rows=False))
    settings = load_settings({"CLOSELOOP_DATABASE_URL": database_url})
    runner = CliRunner()

    unknown = runner.invoke(export, ["--out", str(tmp_path), "--branch", "B9"], obj=settings)
    backwards = runner.invoke(export, ["--out", str(tmp_path), "--from", "2026-11-02", "--to", "2026-11-01"],
                              obj=settings)  # fmt: skip

    assert unknown.exit_code == 2
    assert "unknown branch 'B9'" in unknown.output
    assert backwards.exit_code == 2
    assert "2026-11-01 is before --from 2026-11-02" in backwards.output


async def prepare(url: str, *, with_rows: bool) -> None:
    """Migrate (and seed) a database for a command that opens its own connection (the CLI runs its own loop)."""
    database = Database(url)
    try:
        await upgrade(database)
        if with_rows:
            await seed(database)
    finally:
        await database.dispose()
