"""Cases, the inner loop: a flagged comment opens one, staff work it to a close, an overdue one is escalated.

Every change is one transaction that also writes the case's history (a CaseEvent: who, what, the state before
and after), a webhook event through the outbox (ids and statuses, never customer text) and, where staff must
hear of it, an alert that reporting.alerts sends after the commit. Opening runs inside the transaction that
stores the analysis (``open_cases`` is store_results' ``on_stored``), so a crash can neither lose a case nor
open one twice. Staff actions raise CaseError subclasses the web layer maps onto HTTP statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from nlp.flags import Priority
from reporting.alerts import ESCALATED, OPENED, AlertDispatcher, AlertOptions, queue_alert
from reporting.delivery.notifier import Notifier
from reporting.delivery.outbox import add_event
from reporting.scope import staff_covers
from store import Database
from store.analysis_queue import AnalysisResult
from store.audit import audit_entry
from store.models import (
    ActorKind,
    Analysis,
    Branch,
    Case,
    CaseEvent,
    CasePriority,
    CaseStatus,
    Feedback,
    LabelCorrection,
    Sentiment,
    StaffUser,
    utcnow,
)

log = logging.getLogger(__name__)

# The one place where a flag's priority (nlp/flags.py, the operator's flags.toml) becomes a case's.
CASE_PRIORITY: dict[Priority, CasePriority] = {
    Priority.LOW: CasePriority.LOW,
    Priority.NORMAL: CasePriority.NORMAL,
    Priority.HIGH: CasePriority.HIGH,
    Priority.URGENT: CasePriority.URGENT,
}
RANK = {priority: rank for rank, priority in enumerate(CasePriority)}  # declared low to urgent
OPEN = (CaseStatus.NEW, CaseStatus.ACKNOWLEDGED, CaseStatus.IN_PROGRESS)
RESOLUTION_CODE = re.compile(r"[a-z][a-z0-9_]{0,31}")
NOTE_LIMIT = 4000
CATEGORY_LIMIT = 5


class CaseError(Exception):
    """A case action that cannot be done as asked; the message is safe to show staff."""


class CaseNotFoundError(CaseError):
    """No case with that id."""


class CaseStateError(CaseError):
    """The case's state does not allow the action (resolving a resolved case)."""


class CaseAccessError(CaseError):
    """The staff user is unknown, inactive, or not responsible for the case's branch."""


class CaseInputError(CaseError):
    """A value given with the action is not acceptable (an empty note, a malformed resolution code)."""


def case_priority(flag_priority: str) -> CasePriority:
    """The case priority for a flag priority value ("urgent" -> CasePriority.URGENT)."""
    return CASE_PRIORITY[Priority(flag_priority)]


@dataclass(frozen=True, slots=True)
class Opening:
    """What a flagged analysis makes of its case: the highest priority, the shortest SLA, every reason."""

    priority: CasePriority
    sla_hours: int
    reason: str
    flags: list[dict[str, Any]]
    categories: list[str]

    @classmethod
    def of(cls, result: AnalysisResult) -> Opening:
        flags = sorted(result.flags, key=lambda f: (-RANK[case_priority(f["priority"])], f["sla_hours"]))
        return cls(
            priority=case_priority(flags[0]["priority"]),
            sla_hours=min(int(f["sla_hours"]) for f in flags),
            reason="; ".join(f"{f['id']}: {f['reason']}" for f in flags),
            flags=[{k: f[k] for k in ("id", "priority", "sla_hours", "reason")} for f in flags],
            categories=[c[0] if isinstance(c, list | tuple) else str(c) for c in result.categories][:CATEGORY_LIMIT],
        )


async def open_cases(
    session: AsyncSession, results: Sequence[AnalysisResult], *, now: datetime | None = None
) -> list[int]:
    """Open a case for every first analysis whose flags fired, in the caller's transaction; return the new ids.

    Only a feedback's first analysis opens one: a re-analysis under a new model version (``closeloop nlp
    reanalyze`` runs over all history) must raise no case and no alert for old comments, nor reopen a closed
    case. The unique feedback_id, with ON CONFLICT DO NOTHING, keeps it to one case per feedback regardless.
    """
    now = now or utcnow()
    flagged = {r.feedback_id: r for r in results if r.flags}
    if not flagged:
        return []
    stored = await session.execute(
        select(Analysis.feedback_id, Analysis.model_version).where(Analysis.feedback_id.in_(list(flagged)))
    )
    first = set(flagged) - {fid for fid, version in stored if version != flagged[fid].model_version}
    branches = await session.execute(
        select(Feedback.id, Branch).join(Branch, Branch.id == Feedback.branch_id).where(Feedback.id.in_(sorted(first)))
    )
    branch_of: dict[int, Branch] = dict(branches.all())
    openings = {fid: Opening.of(flagged[fid]) for fid in sorted(branch_of)}
    if not openings:
        return []
    rows = [_case_row(fid, branch_of[fid], opening, now) for fid, opening in openings.items()]
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(Case).values(rows).on_conflict_do_nothing(index_elements=["feedback_id"])
    opened = (await session.execute(statement.returning(Case.id, Case.feedback_id))).all()
    for case_id, fid in sorted(opened):
        _record_opening(
            session, case_id, branch_of[fid], openings[fid], model_version=flagged[fid].model_version, now=now
        )
    if opened:
        log.info("opened %d case(s)", len(opened))
    return sorted(case_id for case_id, _ in opened)


def _case_row(feedback_id: int, branch: Branch, opening: Opening, now: datetime) -> dict[str, Any]:
    return {
        "feedback_id": feedback_id,
        "branch_id": branch.id,
        "priority": opening.priority,
        "status": CaseStatus.NEW,
        "reason": opening.reason,
        "sla_due_at": now + timedelta(hours=opening.sla_hours),
        "created_at": now,
        "updated_at": now,
    }


def _record_opening(
    session: AsyncSession, case_id: int, branch: Branch, opening: Opening, *, model_version: str, now: datetime
) -> None:
    due = (now + timedelta(hours=opening.sla_hours)).isoformat()
    data = {
        "priority": opening.priority.value,
        "sla_due_at": due,
        "flags": opening.flags,
        "categories": opening.categories,
        "model_version": model_version,
    }
    session.add(CaseEvent(case_id=case_id, kind="opened", data=data, created_at=now))
    reasons = [{"flag": f["id"], "reason": f["reason"]} for f in opening.flags]
    payload = {
        "case_id": case_id,
        "branch": branch.code,
        "priority": opening.priority.value,
        "sla_due_at": due,
        "categories": opening.categories,
        "reasons": reasons,
    }
    add_event(session, "case.opened", payload)
    queue_alert(session, OPENED, case_id)


async def acknowledge(db: Database, case_id: int, *, actor_id: int, now: datetime | None = None) -> Case:
    """Say a new case has been seen."""
    async with editing_case(db, case_id, actor_id) as (session, case, branch):
        if case.status != CaseStatus.NEW:
            raise CaseStateError(f"case {case_id} is {case.status}, not new: it was acknowledged already")
        before = case_state(case)
        case.status = CaseStatus.ACKNOWLEDGED
        record_case_action(session, case, branch, actor_id, "acknowledged", before, now=now)
    return case


async def assign(
    db: Database, case_id: int, assignee_id: int | None, *, actor_id: int, now: datetime | None = None
) -> Case:
    """Give an open case to a staff member responsible for its branch (None: take it back); it is then in progress."""
    async with editing_case(db, case_id, actor_id) as (session, case, branch):
        _require_open(case)
        if assignee_id is not None:
            await _staff(session, assignee_id, branch, role="assignee")
        if case.assignee_id == assignee_id:
            raise CaseStateError(f"case {case_id} is already assigned to {assignee_id or 'nobody'}")
        before = case_state(case)
        case.assignee_id = assignee_id
        if assignee_id is not None:
            case.status = CaseStatus.IN_PROGRESS
        record_case_action(session, case, branch, actor_id, "assigned", before, now=now)
    return case


async def add_note(db: Database, case_id: int, body: str, *, actor_id: int, now: datetime | None = None) -> Case:
    """Add a staff note to a case's history (a closed case takes notes too: a call made after closing)."""
    body = body.strip()
    if not body or len(body) > NOTE_LIMIT:
        raise CaseInputError(f"a note needs 1 to {NOTE_LIMIT} characters")
    async with editing_case(db, case_id, actor_id) as (session, case, branch):
        record_case_action(session, case, branch, actor_id, "note", case_state(case), body=body, now=now)
    return case


async def resolve(
    db: Database, case_id: int, code: str, *, actor_id: int, note: str | None = None, now: datetime | None = None
) -> Case:
    """Close an open case as handled, with a resolution code such as ``apologised`` or ``refunded``."""
    if not RESOLUTION_CODE.fullmatch(code):
        raise CaseInputError("a resolution code is 1-32 characters of a-z, 0-9 and _, starting with a letter")
    return await _close(db, case_id, CaseStatus.RESOLVED, code, actor_id=actor_id, note=note, now=now)


async def not_a_complaint(
    db: Database, case_id: int, *, actor_id: int, note: str | None = None, now: datetime | None = None
) -> Case:
    """Close an open case that should not have been one (a rule fired on "not a scam")."""
    code = CaseStatus.NOT_A_COMPLAINT.value
    return await _close(db, case_id, CaseStatus.NOT_A_COMPLAINT, code, actor_id=actor_id, note=note, now=now)


async def _close(
    db: Database, case_id: int, status: CaseStatus, code: str, *, actor_id: int, note: str | None, now: datetime | None
) -> Case:
    now = now or utcnow()
    body = (note or "").strip() or None
    if body is not None and len(body) > NOTE_LIMIT:
        raise CaseInputError(f"a note needs 1 to {NOTE_LIMIT} characters")
    async with editing_case(db, case_id, actor_id) as (session, case, branch):
        _require_open(case)
        before = case_state(case)
        case.status, case.resolution_code, case.resolved_at = status, code, now
        record_case_action(
            session, case, branch, actor_id, status.value, before, body=body, topic="case.resolved", now=now
        )
    return case


async def correct_labels(
    db: Database,
    case_id: int,
    *,
    actor_id: int,
    sentiment: str | None,
    categories: Sequence[str],
    now: datetime | None = None,
) -> Case:
    """Keep a staff member's labels for the case's comment; the next `closeloop nlp train` learns from them.

    The case, its analysis and every figure stay as they are: a correction is training data, not a re-analysis.
    The correction, the case's history entry and the audit entry are written in one transaction.
    """
    if sentiment is not None and sentiment not in {s.value for s in Sentiment}:
        raise CaseInputError(f"unknown sentiment {sentiment!r}")
    if sentiment is None and not categories:
        raise CaseInputError("a correction needs a sentiment or at least one category")
    now = now or utcnow()
    async with editing_case(db, case_id, actor_id) as (session, case, _branch):
        latest = select(Analysis).where(Analysis.feedback_id == case.feedback_id).order_by(Analysis.id.desc())
        analysis = await session.scalar(latest.limit(1))
        before = None
        if analysis is not None:
            labels = [_category_id(c) for c in analysis.categories]
            before = {"sentiment": str(analysis.sentiment), "categories": labels}
        after = {"sentiment": sentiment, "categories": list(categories)}
        session.add(LabelCorrection(feedback_id=case.feedback_id, staff_user_id=actor_id,
                                    sentiment=Sentiment(sentiment) if sentiment else None, categories=list(categories),
                                    created_at=now))  # fmt: skip
        session.add(CaseEvent(case_id=case.id, actor_id=actor_id, kind="labels_corrected", data=after, created_at=now))
        session.add(audit_entry(actor_kind=ActorKind.STAFF, actor_id=actor_id, action="case.labels_corrected",
                                target_type="case", target_id=case.id, before=before, after=after))  # fmt: skip
    return case


def _category_id(label: object) -> str:
    """analyses.categories holds [name, score] pairs (older rows: bare names)."""
    return str(label[0]) if isinstance(label, list | tuple) and label else str(label)


async def escalate_overdue(db: Database, now: datetime) -> list[int]:
    """Escalate every open case past its SLA that was not escalated yet; return their ids (each only ever once).

    One conditional UPDATE marks them, so two processes running this at once escalate each case once.
    """
    overdue = (Case.status.in_(OPEN), Case.sla_due_at < now, Case.escalated_at.is_(None))
    statement = (
        update(Case)
        .where(*overdue)
        .values(escalated_at=now, updated_at=now)
        .returning(Case.id, Case.branch_id, Case.priority, Case.sla_due_at)
        .execution_options(synchronize_session=False)
    )
    async with db.writing(), db.sessions() as session, session.begin():
        rows = (await session.execute(statement)).all()
        branches = select(Branch.id, Branch.code).where(Branch.id.in_(sorted({row.branch_id for row in rows})))
        codes = dict((await session.execute(branches)).all())
        for row in rows:
            due = row.sla_due_at.isoformat()
            data = {"sla_due_at": due, "overdue_minutes": int((now - row.sla_due_at).total_seconds() // 60)}
            session.add(CaseEvent(case_id=row.id, kind="escalated", data=data, created_at=now))
            payload = {"case_id": row.id, "branch": codes[row.branch_id], "priority": str(row.priority)}
            add_event(session, "case.escalated", payload | {"sla_due_at": due, "escalated_at": now.isoformat()})
            queue_alert(session, ESCALATED, row.id)
    if rows:
        log.info("escalated %d overdue case(s)", len(rows))
    return sorted(row.id for row in rows)


async def run_case_jobs(
    db: Database, notifier: Notifier, options: AlertOptions, stop: asyncio.Event, *, interval: float = 5.0
) -> None:
    """Until ``stop`` is set, every ``interval`` seconds: escalate overdue cases, then send the alerts due."""
    dispatcher = AlertDispatcher(db, notifier, options)
    while not stop.is_set():
        try:
            await escalate_overdue(db, utcnow())
            await dispatcher.dispatch_once()
        except Exception:
            # A background task: a database outage or a sender's surprise must not end it; next round tries again.
            log.exception("case jobs: a round failed; trying again in %g s", interval)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()


@asynccontextmanager
async def editing_case(db: Database, case_id: int, actor_id: int) -> AsyncIterator[tuple[AsyncSession, Case, Branch]]:
    """One write transaction over a locked case, with the actor checked against the case's branch."""
    query = select(Case).where(Case.id == case_id)
    if db.dialect == "postgresql":
        query = query.with_for_update()  # two staff acting at once: the second sees the first's result
    async with db.writing(), db.sessions() as session, session.begin():
        case = await session.scalar(query)
        if case is None:
            raise CaseNotFoundError(f"no case {case_id}")
        branch = await session.get_one(Branch, case.branch_id)
        await _staff(session, actor_id, branch, role="staff user")
        yield session, case, branch


async def _staff(session: AsyncSession, user_id: int, branch: Branch, *, role: str) -> StaffUser:
    user = await session.get(StaffUser, user_id)
    if user is None or not user.is_active:
        raise CaseAccessError(f"{role} {user_id}: no such active staff user")
    if not staff_covers(user, branch):
        raise CaseAccessError(f"{role} {user_id} is not responsible for branch {branch.code}")
    return user


def _require_open(case: Case) -> None:
    if case.status not in OPEN:
        raise CaseStateError(f"case {case.id} is closed ({case.status})")


def case_state(case: Case) -> dict[str, Any]:
    return {"status": case.status.value, "assignee_id": case.assignee_id, "resolution_code": case.resolution_code}


def record_case_action(
    session: AsyncSession,
    case: Case,
    branch: Branch,
    actor_id: int,
    kind: str,
    before: dict[str, Any],
    *,
    body: str | None = None,
    topic: str = "case.updated",
    now: datetime | None = None,
) -> None:
    """Write the history entry, audit entry and webhook event of a staff action; the first one answers the SLA clock."""
    now = now or utcnow()
    if case.first_response_at is None:
        case.first_response_at = now
    case.updated_at = now
    after = case_state(case)
    session.add(
        CaseEvent(
            case_id=case.id,
            actor_id=actor_id,
            kind=kind,
            body=body,
            data={"before": before, "after": after},
            created_at=now,
        )
    )
    session.add(audit_entry(actor_kind=ActorKind.STAFF, actor_id=actor_id, action=f"case.{kind}", target_type="case",
                            target_id=case.id, before=before, after=after))  # fmt: skip
    payload = {"case_id": case.id, "branch": branch.code, "action": kind, "priority": case.priority.value, **after}
    if case.resolved_at is not None and topic == "case.resolved":
        payload["resolved_at"] = case.resolved_at.isoformat()
    add_event(session, topic, payload)
