"""The engine's reads and writes: respondents, conversations, answers, feedback, handled events, erasure."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.script import StepType, Survey
from store.models import (
    Analysis,
    AnalysisStatus,
    Answer,
    Branch,
    Conversation,
    ConversationStatus,
    Counter,
    Feedback,
    InboundEvent,
    Respondent,
    SurveyStart,
    utcnow,
)


def hash_user(salt: bytes, channel: str, user: str) -> str:
    """A keyed one-way hash: the same customer maps to the same row, but the id cannot be recovered."""
    return hmac.new(salt, f"{channel}:{user}".encode(), hashlib.sha256).hexdigest()


def _insert(session: AsyncSession):
    return postgresql_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


async def accept_event(session: AsyncSession, channel: str, event_id: str, payload: dict[str, Any]) -> bool:
    """Store a received update to handle next; False when it was received before (a redelivery)."""
    statement = (
        _insert(session)(InboundEvent)
        .values(channel=channel, external_id=event_id, payload=payload, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["channel", "external_id"])
        .returning(InboundEvent.id)
    )
    return (await session.execute(statement)).scalar() is not None


async def claim_event(session: AsyncSession, channel: str, event_id: str, now: datetime) -> bool:
    """Mark the event handled in this transaction; False when it already was.

    An event stored by accept_event is claimed by setting handled_at; one that arrives directly (polling, a
    web form) is claimed by inserting it handled. On PostgreSQL a second process claiming the same row waits
    for the first to commit and then finds it handled.
    """
    claimed = await session.execute(
        update(InboundEvent)
        .where(
            InboundEvent.channel == channel,
            InboundEvent.external_id == event_id,
            InboundEvent.handled_at.is_(None),
        )
        .values(handled_at=now, payload=None)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount == 1:
        return True
    inserted = await session.execute(
        _insert(session)(InboundEvent)
        .values(channel=channel, external_id=event_id, handled_at=now, received_at=now)
        .on_conflict_do_nothing(index_elements=["channel", "external_id"])
        .returning(InboundEvent.id)
    )
    return inserted.scalar() is not None


async def unhandled_events(session: AsyncSession, channel: str, received_before: datetime, limit: int) -> list:
    """Stored updates nobody handled (a crash between storing and handling), oldest first."""
    rows = await session.execute(
        select(InboundEvent.external_id, InboundEvent.payload)
        .where(
            InboundEvent.channel == channel,
            InboundEvent.handled_at.is_(None),
            InboundEvent.received_at < received_before,
            InboundEvent.payload.is_not(None),
        )
        .order_by(InboundEvent.id)
        .limit(limit)
    )
    return [(external_id, payload) for external_id, payload in rows]


async def find_respondent(session: AsyncSession, channel: str, user_hash: str) -> Respondent | None:
    return await session.scalar(
        select(Respondent).where(Respondent.channel == channel, Respondent.user_hash == user_hash)
    )


async def active_conversation(
    session: AsyncSession, channel: str, user_hash: str, *, lock: bool = True
) -> Conversation | None:
    """The customer's active conversation in one query, locked for this transaction on PostgreSQL."""
    query = (
        select(Conversation)
        .join(Respondent, Respondent.id == Conversation.respondent_id)
        .where(
            Respondent.channel == channel,
            Respondent.user_hash == user_hash,
            Conversation.status == ConversationStatus.ACTIVE,
        )
        .order_by(Conversation.id.desc())
        .limit(1)
    )
    return await session.scalar(query.with_for_update(of=Conversation) if lock else query)


@dataclass(frozen=True, slots=True)
class Place:
    branch: Branch
    counter: Counter | None

    @property
    def payload(self) -> str:
        return f"{self.branch.code}-{self.counter.code}" if self.counter else self.branch.code


async def resolve_payload(session: AsyncSession, payload: str) -> Place | None:
    """Map a deep-link payload "BRANCH" or "BRANCH-COUNTER" onto active rows; None when unknown."""
    branch_code, _, counter_code = payload.partition("-")
    branch = await session.scalar(select(Branch).where(Branch.code == branch_code, Branch.is_active.is_(True)))
    if branch is None:
        return None
    if not counter_code:
        return Place(branch, None)
    counter = await session.scalar(
        select(Counter).where(Counter.branch_id == branch.id, Counter.code == counter_code, Counter.is_active.is_(True))
    )
    return Place(branch, counter) if counter else None


async def active_branches(session: AsyncSession, limit: int) -> list[Branch]:
    return list(
        await session.scalars(select(Branch).where(Branch.is_active.is_(True)).order_by(Branch.code).limit(limit))
    )


async def responded_recently(
    session: AsyncSession, respondent: Respondent | None, branch_id: int, since: datetime
) -> bool:
    if respondent is None:
        return False
    return bool(
        await session.scalar(
            select(
                exists().where(
                    Conversation.respondent_id == respondent.id,
                    Conversation.branch_id == branch_id,
                    Conversation.status == ConversationStatus.COMPLETED,
                    Conversation.completed_at >= since,
                )
            )
        )
    )


async def save_answer(session: AsyncSession, conversation: Conversation, step: str, value: Any, now: datetime) -> None:
    """Write the step's answer, replacing an earlier one for the same step (one statement, an upsert)."""
    statement = _insert(session)(Answer).values(
        conversation_id=conversation.id, step=step, value=value, answered_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["conversation_id", "step"],
        set_={"value": statement.excluded.value, "answered_at": statement.excluded.answered_at},
    )
    await session.execute(statement)


async def answers_of(session: AsyncSession, conversation_id: int) -> dict[str, Any]:
    rows = await session.execute(
        select(Answer.step, Answer.value).where(Answer.conversation_id == conversation_id).order_by(Answer.id)
    )
    return {step: value for step, value in rows}


async def conversations_of(session: AsyncSession, respondent: Respondent, limit: int = 10) -> list[tuple]:
    rows = await session.execute(
        select(Conversation, Branch)
        .join(Branch, Branch.id == Conversation.branch_id)
        .where(Conversation.respondent_id == respondent.id)
        .order_by(Conversation.id.desc())
        .limit(limit)
    )
    return [(conversation, branch) for conversation, branch in rows]


async def erase_respondent(session: AsyncSession, respondent: Respondent) -> None:
    """Erase a customer's data: answers, comments, phone number, the chat staff could write to and the link to them.

    Ratings stay, detached from the person, so last month's statistics do not change under the managers.
    """
    conversation_ids = select(Conversation.id).where(Conversation.respondent_id == respondent.id)
    feedback_ids = select(Feedback.id).where(Feedback.conversation_id.in_(conversation_ids))
    await session.execute(update(Analysis).where(Analysis.feedback_id.in_(feedback_ids)).values(aspects=[]))
    await session.execute(
        update(Feedback)
        .where(Feedback.conversation_id.in_(conversation_ids))
        .values(comment=None, contact_phone=None, reply_chat=None, reply_consent_at=None, respondent_id=None)
    )
    await session.execute(delete(Answer).where(Answer.conversation_id.in_(conversation_ids)))
    await session.execute(
        update(Conversation)
        .where(Conversation.respondent_id == respondent.id)
        .values(state={}, respondent_id=None, status=ConversationStatus.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    await session.delete(respondent)


async def count_start(session: AsyncSession, place: Place, channel: str, now: datetime) -> None:
    """Add one to today's anonymous start count for the place (an upsert, safe under concurrency)."""
    statement = _insert(session)(SurveyStart).values(
        branch_id=place.branch.id,
        counter_code=place.counter.code if place.counter else "",
        channel=channel,
        day=now.date(),
        count=1,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["branch_id", "counter_code", "channel", "day"],
        set_={"count": SurveyStart.count + 1},
    )
    await session.execute(statement)


def add_feedback(
    session: AsyncSession,
    survey: Survey,
    conversation: Conversation,
    answers: dict[str, Any],
    language: str,
    now: datetime,
) -> Feedback:
    """Turn a completed conversation's answers into the feedback row that analysis and reports read."""
    feedback = Feedback(
        conversation_id=conversation.id,
        branch_id=conversation.branch_id,
        counter_id=conversation.counter_id,
        respondent_id=conversation.respondent_id,
        language=language,
        submitted_at=now,
        analysis_status=AnalysisStatus.PENDING,
    )
    comments = []
    for step in survey.steps:
        value = answers.get(step.id)
        if value is None:
            continue
        match step.type:
            case StepType.RATING if getattr(feedback, step.scale.value) is None:
                setattr(feedback, step.scale.value, value)
            case StepType.TEXT:
                comments.append(value)
            case StepType.CONTACT:
                feedback.contact_phone = value
                feedback.callback_requested = True
            case StepType.FOLLOWUP if value != "other":
                feedback.customer_category = value
    feedback.comment = "\n".join(comments) or None
    session.add(feedback)
    return feedback
