"""One case as its page shows it: the case, the feedback behind it, the transcript, the analysis and the history.

The case is read through the user's scope (reporting.scope.staff_branches) like any listing, so an id outside
it finds nothing and the page answers 404, as for an id that does not exist. Everything else is read by the
case's own keys, a fixed handful of indexed statements whatever the history's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.scope import staff_branches
from store import Database
from store.models import (
    Analysis,
    Answer,
    Branch,
    Case,
    CaseEvent,
    Conversation,
    Counter,
    Feedback,
    LabelCorrection,
    ScopeKind,
    StaffUser,
)

STAFF_LIMIT = 500  # people offered in the assign list; a branch has far fewer


@dataclass(frozen=True, slots=True)
class Correction:
    """The latest labels a staff member gave this comment."""

    name: str
    at: datetime
    sentiment: str | None
    categories: list[str]


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """What the page needs, as stored; web.cases turns it into words."""

    case: Case
    branch: Branch
    feedback: Feedback
    counter: Counter | None
    answers: list[tuple[str, Any]]  # (step, value) in the order answered
    analysis: Analysis | None
    events: list[tuple[CaseEvent, str | None]]  # with the actor's name; None: the system
    names: dict[int, str]  # staff user id -> name, for the assignee and every assignment in the history
    staff: list[tuple[int, str]]  # active users whose scope covers the branch: who the case can go to
    correction: Correction | None
    channel: str | None = None  # where the customer answered (telegram, web): whether staff can write back


async def load_case(db: Database, user: StaffUser, case_id: int) -> CaseRecord | None:
    """The case with everything around it, or None when it does not exist or lies outside the user's scope."""
    async with db.sessions() as session:
        found = (
            await session.execute(
                select(Case, Branch, Feedback, Conversation.channel)
                .join(Branch, Branch.id == Case.branch_id)
                .join(Feedback, Feedback.id == Case.feedback_id)
                .outerjoin(Conversation, Conversation.id == Feedback.conversation_id)
                .where(Case.id == case_id, staff_branches(user))
            )
        ).first()
        if found is None:
            return None
        case, branch, feedback, channel = found
        events = (
            await session.execute(
                select(CaseEvent, StaffUser.display_name)
                .outerjoin(StaffUser, StaffUser.id == CaseEvent.actor_id)
                .where(CaseEvent.case_id == case.id)
                .order_by(CaseEvent.id)
            )
        ).all()
        return CaseRecord(
            case=case,
            branch=branch,
            feedback=feedback,
            counter=await session.get(Counter, feedback.counter_id) if feedback.counter_id is not None else None,
            answers=await _answers(session, feedback.conversation_id),
            analysis=await latest_analysis(session, feedback.id),
            events=[(event, name) for event, name in events],
            names=await _names(session, {case.assignee_id, *(_assignee_of(event) for event, _ in events)}),
            staff=await _covering_staff(session, branch),
            correction=await _latest_correction(session, feedback.id),
            channel=channel,
        )


async def latest_analysis(session: AsyncSession, feedback_id: int) -> Analysis | None:
    """The newest model version's reading of a comment (ix_analyses_feedback_latest)."""
    statement = select(Analysis).where(Analysis.feedback_id == feedback_id).order_by(Analysis.id.desc()).limit(1)
    return await session.scalar(statement)


async def _answers(session: AsyncSession, conversation_id: int) -> list[tuple[str, Any]]:
    statement = select(Answer.step, Answer.value).where(Answer.conversation_id == conversation_id).order_by(Answer.id)
    return [(step, value) for step, value in await session.execute(statement)]


def _assignee_of(event: CaseEvent) -> int | None:
    after = event.data.get("after") if isinstance(event.data, dict) else None
    return after.get("assignee_id") if isinstance(after, dict) else None


async def _names(session: AsyncSession, ids: set[int | None]) -> dict[int, str]:
    wanted = sorted(i for i in ids if isinstance(i, int))
    if not wanted:
        return {}
    rows = await session.execute(select(StaffUser.id, StaffUser.display_name).where(StaffUser.id.in_(wanted)))
    return {user_id: name for user_id, name in rows}


async def _covering_staff(session: AsyncSession, branch: Branch) -> list[tuple[int, str]]:
    statement = (
        select(StaffUser.id, StaffUser.display_name)
        .where(StaffUser.is_active, _covers(branch))
        .order_by(StaffUser.display_name, StaffUser.id)
        .limit(STAFF_LIMIT)
    )
    return [(user_id, name) for user_id, name in await session.execute(statement)]


def _covers(branch: Branch) -> ColumnElement[bool]:
    """reporting.scope.staff_covers turned around: the users whose scope takes in this branch."""
    return or_(
        StaffUser.scope_kind == ScopeKind.ALL,
        and_(StaffUser.scope_kind == ScopeKind.REGION, StaffUser.scope_value == (branch.region or "")),
        and_(StaffUser.scope_kind == ScopeKind.BRANCH, StaffUser.scope_value == branch.code),
    )


async def _latest_correction(session: AsyncSession, feedback_id: int) -> Correction | None:
    statement = (
        select(LabelCorrection, StaffUser.display_name)
        .join(StaffUser, StaffUser.id == LabelCorrection.staff_user_id)
        .where(LabelCorrection.feedback_id == feedback_id)
        .order_by(LabelCorrection.id.desc())
        .limit(1)
    )
    found = (await session.execute(statement)).first()
    if found is None:
        return None
    correction, name = found
    sentiment = correction.sentiment.value if correction.sentiment is not None else None
    return Correction(name, correction.created_at, sentiment, list(correction.categories))
