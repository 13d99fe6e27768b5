"""The analysis queue over both databases: claims, leases, results per model version, back-off, re-queueing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from store import Database
from store.analysis_queue import (
    AnalysisResult,
    claim_pending,
    corrections,
    pending_count,
    record_correction,
    record_failure,
    requeue_for,
    store_results,
)
from store.models import Analysis, Branch, Conversation, Feedback, ScopeKind, StaffRole, StaffUser

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


async def add_feedback(db: Database, comments: list[str]) -> list[int]:
    async with db.sessions() as session, session.begin():
        branch = Branch(code="MAIN", name_en="Main", name_zh="总行")
        session.add(branch)
        await session.flush()
        ids = []
        for n, comment in enumerate(comments):
            conversation = Conversation(channel="web", branch_id=branch.id, source="link", step="thanks", state={})
            session.add(conversation)
            await session.flush()
            feedback = Feedback(
                conversation_id=conversation.id, branch_id=branch.id, language="en", csat=1 + n % 5, comment=comment
            )
            session.add(feedback)
            await session.flush()
            ids.append(feedback.id)
        return ids


def result(feedback_id: int, version: str = "v1") -> AnalysisResult:
    return AnalysisResult(
        feedback_id=feedback_id,
        model_version=version,
        language="en",
        sentiment="negative",
        sentiment_scores={"negative": 0.8, "neutral": 0.15, "positive": 0.05},
        categories=[["waiting_time", 0.9]],
        aspects=[{"text": "slow", "category": "waiting_time", "sentiment": "negative"}],
        flags=[{"id": "very_negative", "priority": "high", "sla_hours": 24, "reason": "negative 0.8"}],
    )


async def test_claims_lease_rows_so_a_second_claim_gets_others(db):
    ids = await add_feedback(db, [f"comment {n}" for n in range(5)])
    first = await claim_pending(db, limit=3, now=NOW)
    second = await claim_pending(db, limit=3, now=NOW)
    assert [p.id for p in first] == ids[:3]
    assert [p.id for p in second] == ids[3:]
    assert await claim_pending(db, limit=3, now=NOW) == []
    later = await claim_pending(db, limit=10, now=NOW + timedelta(minutes=6))
    assert len(later) == 5, "an expired lease (a worker that died) makes the rows claimable again"


async def test_results_are_stored_per_model_version_and_mark_feedback_done(db):
    [feedback_id] = await add_feedback(db, ["slow queue"])
    await store_results(db, [result(feedback_id)])
    await store_results(db, [result(feedback_id)])  # a rerun changes nothing
    assert await pending_count(db) == 0
    assert await requeue_for(db, "v2") == 1
    [pending] = await claim_pending(db, limit=10, now=NOW)
    await store_results(db, [result(pending.id, "v2")])
    async with db.sessions() as session:
        versions = sorted(await session.scalars(select(Analysis.model_version)))
        flagged = await session.scalar(select(Analysis.flag_reasons).where(Analysis.model_version == "v2"))
    assert versions == ["v1", "v2"], "re-analysis keeps the old results"
    assert flagged[0]["id"] == "very_negative"


async def test_a_failure_keeps_the_row_pending_with_a_growing_back_off(db):
    [feedback_id] = await add_feedback(db, ["model crashed on this"])
    for attempt, delay in [(1, 1), (2, 2), (3, 4)]:
        [claimed] = await claim_pending(db, limit=1, now=NOW + timedelta(hours=attempt))
        await record_failure(db, [claimed.id], "RuntimeError: boom", now=NOW + timedelta(hours=attempt))
        async with db.sessions() as session:
            row = await session.get(Feedback, feedback_id)
        assert (row.analysis_status, row.analysis_attempts) == ("pending", attempt)
        assert row.next_analysis_at == NOW + timedelta(hours=attempt, minutes=delay)
        assert row.analysis_error == "RuntimeError: boom"


@pytest.mark.postgres
async def test_concurrent_workers_never_claim_the_same_row(db):
    await add_feedback(db, [f"c{n}" for n in range(40)])
    claims = await asyncio.gather(*(claim_pending(db, limit=7, now=NOW) for _ in range(8)))
    claimed = [p.id for batch in claims for p in batch]
    assert len(claimed) == len(set(claimed)) == 40


async def test_corrections_are_kept_for_training(db):
    [feedback_id] = await add_feedback(db, ["the app is fine but fees are high"])
    async with db.sessions() as session, session.begin():
        staff = StaffUser(
            username="lin", display_name="Lin", role=StaffRole.STAFF, scope_kind=ScopeKind.ALL, password_hash="x"
        )
        session.add(staff)
    await record_correction(db, feedback_id, staff.id, sentiment="negative", categories=["fees_charges"])
    assert await corrections(db) == [("the app is fine but fees are high", "negative", ["fees_charges"])]
