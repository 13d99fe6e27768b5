"""The demo's database side: tell demo data from real data, remove an earlier demo, write a plan's conversations.

Everything a demo writes hangs off its DEMO_ branches (conversations, feedback, cases, tickets, link opens),
off respondents whose hash starts "demo-" and off the three demo staff users, so the census and the removal
work by those keys alone and can never touch a real branch's rows. Analysis and tickets are not made here
(config/demo_commands.py runs the production code for them), and cases only by reporting.cases.open_cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.demo_data import ACCOUNTS, DEMO_PREFIX, DemoPlan, Dropout, Visit
from nlp.masking import mask_text
from reporting.cases import open_cases
from store import Database
from store.analysis_queue import AnalysisResult
from store.models import (
    ActorKind,
    Analysis,
    Answer,
    AuditEntry,
    Branch,
    Case,
    CaseEvent,
    Conversation,
    ConversationStatus,
    Counter,
    Feedback,
    OutboxMessage,
    Respondent,
    StaffUser,
    SurveyStart,
    Ticket,
    TicketEvent,
    TicketEvidence,
)

DEMO_USERS = tuple(account.username for account in ACCOUNTS)
RESPONDENT_PREFIX = "demo-"  # real respondents are known by a hex hash, which never starts so
NOT_SENT = "demo data: never sent"  # on the demo's alerts and webhook events, which no one must receive
CONSENT_VERSION = "demo"
CASE_DELAY = timedelta(minutes=1)  # a case opens when its feedback's analysis lands, about a minute later


@dataclass(frozen=True, slots=True)
class Census:
    """How much feedback and how many staff users the database holds, and how many of them are the demo's."""

    feedback: int
    demo_feedback: int
    staff: int
    demo_staff: int

    @property
    def is_empty(self) -> bool:
        return self.feedback == 0 and self.staff == 0

    @property
    def is_demo_only(self) -> bool:
        return self.feedback == self.demo_feedback and self.staff == self.demo_staff


def is_demo_branch() -> ColumnElement[bool]:
    return Branch.code.startswith(DEMO_PREFIX, autoescape=True)  # "_" is no wildcard here


async def take_census(db: Database) -> Census:
    async with db.sessions() as session:
        feedback = await session.scalar(select(func.count()).select_from(Feedback)) or 0
        demo_feedback = await session.scalar(
            select(func.count()).select_from(Feedback).join(Branch, Branch.id == Feedback.branch_id)
            .where(is_demo_branch())
        ) or 0  # fmt: skip
        staff = await session.scalar(select(func.count()).select_from(StaffUser)) or 0
        demo_staff = await session.scalar(
            select(func.count()).select_from(StaffUser).where(StaffUser.username.in_(DEMO_USERS))
        ) or 0  # fmt: skip
    return Census(feedback, demo_feedback, staff, demo_staff)


async def remove_demo(db: Database) -> None:
    """Delete an earlier demo's rows, children first, in one transaction; its branches stay (they are re-synced)."""
    branches = select(Branch.id).where(is_demo_branch())
    tickets = select(Ticket.id).where(Ticket.branch_id.in_(branches))
    cases = select(Case.id).where(Case.branch_id.in_(branches))
    feedback = select(Feedback.id).where(Feedback.branch_id.in_(branches))
    conversations = select(Conversation.id).where(Conversation.branch_id.in_(branches))
    statements = [
        delete(TicketEvidence).where(TicketEvidence.ticket_id.in_(tickets)),
        delete(TicketEvent).where(TicketEvent.ticket_id.in_(tickets)),
        delete(Ticket).where(Ticket.branch_id.in_(branches)),
        delete(CaseEvent).where(CaseEvent.case_id.in_(cases)),
        delete(Case).where(Case.branch_id.in_(branches)),
        delete(Analysis).where(Analysis.feedback_id.in_(feedback)),
        delete(Feedback).where(Feedback.branch_id.in_(branches)),
        delete(Answer).where(Answer.conversation_id.in_(conversations)),
        delete(Conversation).where(Conversation.branch_id.in_(branches)),
        delete(SurveyStart).where(SurveyStart.branch_id.in_(branches)),
        delete(Respondent).where(Respondent.user_hash.startswith(RESPONDENT_PREFIX, autoescape=True)),
        # Their sessions cascade; their label corrections, all on demo feedback, went with it.
        delete(StaffUser).where(StaffUser.username.in_(DEMO_USERS)),
        delete(OutboxMessage).where(OutboxMessage.last_error == NOT_SENT),
    ]
    async with db.writing(), db.sessions() as session, session.begin():
        for statement in statements:
            await session.execute(statement.execution_options(synchronize_session=False))
        session.add(AuditEntry(actor_kind=ActorKind.CLI, action="demo.removed", target_type="demo"))


async def outbox_mark(db: Database) -> int:
    """The newest outbox row's id: rows after it are the demo's."""
    async with db.sessions() as session:
        return await session.scalar(select(func.max(OutboxMessage.id))) or 0


async def withhold_outbox(db: Database, after_id: int, now: datetime) -> None:
    """Mark the demo's alerts and webhook events as done without sending them."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id > after_id, OutboxMessage.delivered_at.is_(None))
        .values(delivered_at=now, last_error=NOT_SENT)
    )
    async with db.writing(), db.sessions() as session, session.begin():
        await session.execute(statement)


async def record_demo(db: Database, details: dict[str, Any]) -> None:
    """Leave the demo in the audit trail, so an administrator can see when and how it was made."""
    async with db.writing(), db.sessions() as session, session.begin():
        session.add(AuditEntry(actor_kind=ActorKind.CLI, action="demo.created", target_type="demo", after=details))


async def write_plan(db: Database, plan: DemoPlan) -> int:
    """Write respondents, conversations, answers, feedback (pending analysis) and link opens; return the feedback."""
    async with db.writing(), db.sessions() as session, session.begin():
        places = await _places(session)
        people = await _respondents(session, plan)
        visits = await _conversations(session, plan.visits, places, people, ConversationStatus.COMPLETED)
        await _conversations(session, plan.dropouts, places, people, ConversationStatus.EXPIRED)
        answers = [row for visit, cid in zip(plan.visits, visits, strict=True) for row in _answers(visit, cid)]
        await session.execute(insert(Answer), answers)
        feedback = [_feedback(v, cid, places, people) for v, cid in zip(plan.visits, visits, strict=True)]
        await session.execute(insert(Feedback), feedback)
        starts = [{"branch_id": places.branches[b], "counter_code": c, "channel": ch, "day": day, "count": n}
                  for (b, c, ch, day), n in plan.starts.items()]  # fmt: skip
        await session.execute(insert(SurveyStart), starts)
    return len(plan.visits)


@dataclass(frozen=True, slots=True)
class Places:
    """The demo branches' ids by code and their counters' ids by (branch code, counter code)."""

    branches: dict[str, int]
    counters: dict[tuple[str, str], int]

    def counter(self, branch: str, code: str | None) -> int | None:
        return None if code is None else self.counters[(branch, code)]


async def _places(session: AsyncSession) -> Places:
    branches = await session.execute(select(Branch.code, Branch.id).where(is_demo_branch()))
    counters = await session.execute(
        select(Branch.code, Counter.code, Counter.id)
        .join(Branch, Branch.id == Counter.branch_id)
        .where(is_demo_branch())
    )
    return Places(dict(branches.all()), {(branch, code): counter_id for branch, code, counter_id in counters})


async def _respondents(session: AsyncSession, plan: DemoPlan) -> dict[tuple[str, int], int]:
    first: dict[tuple[str, int], Visit | Dropout] = {}
    for item in sorted([*plan.visits, *plan.dropouts], key=lambda i: i.started_at):
        first.setdefault((item.channel, item.respondent), item)
    keys = list(first)
    rows = [{"channel": channel, "user_hash": f"{RESPONDENT_PREFIX}{channel}-{number:05d}",
             "language": first[(channel, number)].language, "consent_at": first[(channel, number)].started_at,
             "consent_version": CONSENT_VERSION, "created_at": first[(channel, number)].started_at}
            for channel, number in keys]  # fmt: skip
    ids = await session.scalars(insert(Respondent).returning(Respondent.id, sort_by_parameter_order=True), rows)
    return dict(zip(keys, ids, strict=True))


async def _conversations(
    session: AsyncSession,
    items: Sequence[Visit | Dropout],
    places: Places,
    people: dict[tuple[str, int], int],
    status: ConversationStatus,
) -> list[int]:
    if not items:
        return []
    rows = []
    for item in items:
        done = isinstance(item, Visit)
        end = item.submitted_at if isinstance(item, Visit) else item.started_at + timedelta(seconds=30)
        step = ("thanks_callback" if item.phone else "thanks") if isinstance(item, Visit) else "csat"
        rows.append({
            "respondent_id": people[(item.channel, item.respondent)], "channel": item.channel,
            "branch_id": places.branches[item.branch], "counter_id": places.counter(item.branch, item.counter),
            "source": "deeplink" if item.channel == "telegram" else "qr", "step": step, "state": {}, "status": status,
            "started_at": item.started_at, "updated_at": end, "completed_at": end if done else None, "version": 1,
        })  # fmt: skip
    statement = insert(Conversation).returning(Conversation.id, sort_by_parameter_order=True)
    return list(await session.scalars(statement, rows))


def _answers(visit: Visit, conversation_id: int) -> list[dict[str, Any]]:
    """The survey's answers as the engine keeps them (texts masked on arrival)."""
    values: dict[str, Any] = {"consent": True, "csat": visit.csat}
    text_step = "what_went_wrong" if visit.csat <= 3 else "what_went_well"
    values[text_step] = mask_text(visit.comment) if visit.comment else None
    values["followup"] = visit.customer_category
    if visit.csat <= 2:
        values["callback"] = visit.phone is not None
    if visit.phone:
        values["contact"] = visit.phone
    moment = visit.started_at
    rows = []
    for step, value in values.items():
        moment = min(moment + timedelta(seconds=12), visit.submitted_at)
        rows.append({"conversation_id": conversation_id, "step": step, "value": value, "answered_at": moment})
    return rows


def _feedback(visit: Visit, conversation_id: int, places: Places, people: dict[tuple[str, int], int]) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "branch_id": places.branches[visit.branch],
        "counter_id": places.counter(visit.branch, visit.counter),
        "respondent_id": people[(visit.channel, visit.respondent)],
        "language": visit.language,
        "csat": visit.csat,
        "nps": visit.nps,
        "ces": visit.ces,
        "comment": mask_text(visit.comment) if visit.comment else None,
        "callback_requested": visit.phone is not None,
        "contact_phone": visit.phone,
        "customer_category": visit.customer_category,
        "analysis_status": "pending",
        "submitted_at": visit.submitted_at,
    }


async def open_cases_when_submitted(session: AsyncSession, results: Sequence[AnalysisResult]) -> list[int]:
    """The worker's on_stored hook with the demo's clock: each case opens as if analysed right after its feedback.

    The rules are production's (reporting.cases.open_cases); only `now` is the feedback's time, not today, so a
    comment from three weeks ago has a case from three weeks ago with that day's SLA.
    """
    flagged = [r for r in results if r.flags]
    if not flagged:
        return []
    query = select(Feedback.id, Feedback.submitted_at).where(Feedback.id.in_([r.feedback_id for r in flagged]))
    submitted = dict((await session.execute(query)).all())
    opened = []
    for result in flagged:
        opened += await open_cases(session, [result], now=submitted[result.feedback_id] + CASE_DELAY)
    return opened
