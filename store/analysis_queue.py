"""The analysis queue: feedback waiting for the NLP worker, claimed in batches, results stored per model version.

A claim leases rows for a while (next_analysis_at moves forward) so another worker skips them; on PostgreSQL
`FOR UPDATE SKIP LOCKED` keeps concurrent claims apart. A failure leaves the row pending with an error count and
a growing back-off: feedback is never lost, only retried later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.database import Database
from store.models import Analysis, AnalysisStatus, Feedback, LabelCorrection, Sentiment

LEASE = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class PendingFeedback:
    id: int
    comment: str | None
    language: str
    csat: int | None
    callback_requested: bool


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """What the worker stores for one feedback under one model version (plain data from the NLP module)."""

    feedback_id: int
    model_version: str
    language: str
    sentiment: str
    sentiment_scores: dict[str, float]
    categories: list[Any]
    aspects: list[Any]
    flags: list[dict[str, Any]]


# Called inside store_results' transaction with the newly stored results; it must not commit.
OnStored = Callable[[AsyncSession, Sequence[AnalysisResult]], Awaitable[object]]


async def claim_pending(db: Database, *, limit: int, now: datetime) -> list[PendingFeedback]:
    """Take up to `limit` due feedback rows, leasing them so no other worker takes them meanwhile."""
    due = and_(
        Feedback.analysis_status == AnalysisStatus.PENDING,
        or_(Feedback.next_analysis_at.is_(None), Feedback.next_analysis_at <= now),
    )
    query = select(Feedback).where(due).order_by(Feedback.id).limit(limit)
    if db.dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    async with db.writing(), db.sessions() as session, session.begin():
        rows = list(await session.scalars(query))
        for row in rows:
            row.next_analysis_at = now + LEASE
        return [PendingFeedback(r.id, r.comment, r.language, r.csat, r.callback_requested) for r in rows]


async def store_results(db: Database, results: Sequence[AnalysisResult], *, on_stored: OnStored | None = None) -> None:
    """Store the analyses and mark their feedback done, in one transaction; a rerun replaces nothing.

    ``on_stored`` runs inside that transaction with the results actually inserted (not those a rerun skipped),
    so what it writes (a case for a flagged comment) commits or rolls back together with the analyses.
    """
    if not results:
        return
    async with db.writing(), db.sessions() as session, session.begin():
        insert = postgresql_insert if db.dialect == "postgresql" else sqlite_insert
        statement = insert(Analysis).values([_row(r) for r in results])
        statement = statement.on_conflict_do_nothing(index_elements=["feedback_id", "model_version"])
        inserted = set(await session.scalars(statement.returning(Analysis.feedback_id)))
        await session.execute(
            update(Feedback)
            .where(Feedback.id.in_([r.feedback_id for r in results]))
            .values(analysis_status=AnalysisStatus.DONE, analysis_error=None, next_analysis_at=None)
        )
        if on_stored is not None:
            await on_stored(session, [r for r in results if r.feedback_id in inserted])


async def record_failure(db: Database, feedback_ids: Sequence[int], error: str, *, now: datetime) -> None:
    """Keep the rows pending, count the attempt and push the next one back: 1, 2, 4 ... minutes, at most an hour."""
    async with db.writing(), db.sessions() as session, session.begin():
        for row in await session.scalars(select(Feedback).where(Feedback.id.in_(feedback_ids))):
            row.analysis_attempts += 1
            row.analysis_error = error[:500]
            delay = min(timedelta(minutes=2 ** (row.analysis_attempts - 1)), MAX_BACKOFF)
            row.next_analysis_at = now + delay


async def requeue_for(db: Database, model_version: str) -> int:
    """Queue every feedback that has no analysis under `model_version` yet; earlier results are kept."""
    has_version = select(Analysis.id).where(
        Analysis.feedback_id == Feedback.id, Analysis.model_version == model_version
    )
    async with db.writing(), db.sessions() as session, session.begin():
        result = await session.execute(
            update(Feedback)
            .where(~has_version.exists())
            .values(analysis_status=AnalysisStatus.PENDING, next_analysis_at=None, analysis_attempts=0)
        )
        return result.rowcount


async def pending_count(db: Database) -> int:
    async with db.sessions() as session:
        query = select(func.count()).where(Feedback.analysis_status == AnalysisStatus.PENDING)
        return await session.scalar(query)


async def record_correction(
    db: Database, feedback_id: int, staff_user_id: int, *, sentiment: str | None, categories: Sequence[str]
) -> None:
    """Keep a staff member's corrected labels; the next `closeloop nlp train` learns from them."""
    async with db.writing(), db.sessions() as session, session.begin():
        session.add(
            LabelCorrection(
                feedback_id=feedback_id,
                staff_user_id=staff_user_id,
                sentiment=Sentiment(sentiment) if sentiment else None,
                categories=list(categories),
            )
        )


async def corrections(db: Database) -> list[tuple[str, str | None, list[str]]]:
    """(comment, sentiment, categories) of every correction, newest last, for training."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(Feedback.comment, LabelCorrection.sentiment, LabelCorrection.categories)
            .join(Feedback, Feedback.id == LabelCorrection.feedback_id)
            .where(Feedback.comment.is_not(None))
            .order_by(LabelCorrection.id)
        )
        return [(comment, str(sentiment) if sentiment else None, list(cats)) for comment, sentiment, cats in rows]


def _row(result: AnalysisResult) -> dict[str, Any]:
    return {
        "feedback_id": result.feedback_id,
        "model_version": result.model_version,
        "language": result.language,
        "sentiment": result.sentiment,
        "sentiment_scores": result.sentiment_scores,
        "categories": result.categories,
        "aspects": result.aspects,
        "is_flagged": bool(result.flags),
        "flag_reasons": result.flags,
    }
