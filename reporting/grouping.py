"""The grouping pass: the window's recurring complaints become tickets, or new evidence, or a reopened ticket.

A pass counts the window's complaints in SQL, clusters the texts of the groups that crossed a threshold or hold
an open ticket (reporting.complaints), matches each cluster to a ticket of its branch × category (shared
evidence first, then the average-linkage distance the clustering itself uses) and opens, updates or reopens.
Each ticket change is one transaction with its TicketEvent and its webhook event (ids and counts, never
customer text). A pass writes only where it adds evidence, so a second pass at the same `now` changes nothing.

On PostgreSQL one pass runs at a time, under a session advisory lock: whether to open a ticket depends on
tickets that do not exist yet, which no row lock can cover, and a second pass would only embed the same texts
again. Each ticket write also locks the ticket row, as staff actions do, so a pass and a staff member acting on
one ticket at once are serialised; each transaction re-reads which complaints are already evidence, so two
in-process passes on SQLite (one writer at a time) cannot attach a complaint twice either.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import case, false, func, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.complaints import (
    Assessment,
    Cluster,
    Embed,
    GroupCounts,
    GroupKey,
    TicketRules,
    assess,
    cluster_complaints,
    linkage,
    merge,
    recent_complaints,
    representatives,
    weekly_complaints,
    window_counts,
)
from reporting.delivery.outbox import add_event
from store import Database
from store.models import Branch, Feedback, Ticket, TicketEvent, TicketEvidence, TicketStatus

log = logging.getLogger(__name__)

ACTIVE = (TicketStatus.OPEN, TicketStatus.IN_PROGRESS)
CLOSED = (TicketStatus.RESOLVED, TicketStatus.VERIFIED)
PASS_LOCK = 0x636C_6F73_655F_746B  # "close_tk": the PostgreSQL advisory lock key of a grouping pass
TITLE_LIMIT = 200


@dataclass(frozen=True, slots=True)
class GroupingResult:
    """What a pass did; `skipped` when another process's pass held the lock."""

    opened: int = 0
    updated: int = 0
    reopened: int = 0
    ticket_ids: tuple[int, ...] = ()
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class Pass:
    """What every step of one pass needs."""

    db: Database
    embed: Embed
    departments: Mapping[str, str]
    names: Mapping[str, str]
    rules: TicketRules
    now: datetime


@dataclass(frozen=True, slots=True)
class Group:
    """One branch × category in this pass: its counts, the decision on them and its weekly complaints."""

    key: GroupKey
    counts: GroupCounts
    assessment: Assessment
    weekly: list[int]

    @property
    def is_triggered(self) -> bool:
        return bool(self.assessment.triggers)


@dataclass(slots=True)
class Plan:
    """Which clusters go to which existing ticket, and which open new tickets."""

    grow: dict[int, list[Cluster]] = field(default_factory=dict)
    open: list[Cluster] = field(default_factory=list)


async def run_grouping(
    db: Database,
    taxonomy_departments: Mapping[str, str],
    embed: Embed,
    *,
    now: datetime,
    rules: TicketRules | None = None,
    category_names: Mapping[str, str] | None = None,
) -> GroupingResult:
    """Open, update or reopen tickets from the complaints of the window ending at `now`.

    `taxonomy_departments` maps a category id to its owning department; `category_names` (optional) to the
    name used in titles ("Waiting time"). `embed` turns texts into unit rows and runs off the event loop.
    """
    work = Pass(db, embed, taxonomy_departments, category_names or {}, rules or TicketRules(), now)
    async with _pass_lock(db) as acquired:
        if not acquired:
            log.info("tickets: another grouping pass is running; this one is skipped")
            return GroupingResult(skipped=True)
        groups = await _groups(work)
        outcomes: list[tuple[str, int]] = []
        for group in groups:
            outcomes += await _group_pass(work, group)
    tally = defaultdict(int)
    for kind, _ in outcomes:
        tally[kind] += 1
    if outcomes:
        log.info("tickets: %d opened, %d updated, %d reopened", tally["opened"], tally["updated"], tally["reopened"])
    ids = tuple(sorted({ticket_id for _, ticket_id in outcomes}))
    return GroupingResult(tally["opened"], tally["updated"], tally["reopened"], ids)


@asynccontextmanager
async def _pass_lock(db: Database) -> AsyncIterator[bool]:
    """Hold PostgreSQL's session advisory lock for the pass (on its own connection); SQLite has one writer anyway."""
    if db.dialect != "postgresql":
        yield True
        return
    async with db.engine.connect() as conn:
        acquired = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": PASS_LOCK}))
        await conn.commit()  # the lock outlives the transaction; the connection must not idle in one
        try:
            yield acquired
        finally:
            if acquired:
                await conn.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": PASS_LOCK})
                await conn.commit()


async def _groups(work: Pass) -> list[Group]:
    """The groups this pass looks at: those past a threshold, and those with an open ticket and new complaints."""
    db, rules = work.db, work.rules
    async with db.sessions() as session:
        counts = await window_counts(session, db.dialect, rules, end=work.now)
        active = select(Ticket.branch_id, Ticket.category).where(Ticket.status.in_(ACTIVE)).distinct()
        watched = {(int(b), str(c)) for b, c in await session.execute(active)}
        assessments = {key: assess(c, rules) for key, c in counts.items() if c.complaints}
        chosen = sorted(key for key, a in assessments.items() if a.triggers or key in watched)
        weekly = await weekly_complaints(session, db.dialect, rules, chosen, end=work.now)
    return [Group(key, counts[key], assessments[key], weekly[key]) for key in chosen]


async def _group_pass(work: Pass, group: Group) -> list[tuple[str, int]]:
    """Cluster one group's complaints and apply the plan, one transaction per ticket."""
    async with work.db.sessions() as session:
        complaints = await recent_complaints(session, work.db.dialect, work.rules, group.key, end=work.now)
        tickets = await _tickets_of(session, group.key)
        owners = await _evidence_owners(session, list(tickets), [c.feedback_id for c in complaints])
    if not complaints:
        return []
    vectors = await asyncio.to_thread(_embed, work.embed, [c.comment for c in complaints])
    clusters = await asyncio.to_thread(cluster_complaints, complaints, vectors, work.rules)
    plan = await _plan(work, group, clusters, tickets, owners)
    outcomes = []
    for ticket_id, matched in plan.grow.items():
        outcome = await _grow(work, group, ticket_id, merge(matched))
        outcomes += [outcome] if outcome else []
    for cluster in plan.open:
        outcome = await _open(work, group, cluster)
        outcomes += [outcome] if outcome else []
    return outcomes


def _embed(embed: Embed, texts: list[str]) -> np.ndarray:
    vectors = np.asarray(embed(texts), dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"embed returned shape {vectors.shape} for {len(texts)} texts")
    return vectors


async def _tickets_of(session: AsyncSession, key: GroupKey) -> list[int]:
    query = select(Ticket.id).where(Ticket.branch_id == key[0], Ticket.category == key[1]).order_by(Ticket.id)
    return list(await session.scalars(query))


async def _evidence_owners(session: AsyncSession, ticket_ids: list[int], feedback_ids: list[int]) -> dict[int, int]:
    """feedback id -> the (lowest) ticket of the group it is evidence of, for the given feedback."""
    if not ticket_ids or not feedback_ids:
        return {}
    query = (
        select(TicketEvidence.feedback_id, func.min(TicketEvidence.ticket_id))
        .where(TicketEvidence.ticket_id.in_(ticket_ids), TicketEvidence.feedback_id.in_(feedback_ids))
        .group_by(TicketEvidence.feedback_id)
    )
    return {int(f): int(t) for f, t in await session.execute(query)}


async def _plan(work: Pass, group: Group, clusters: list[Cluster], tickets: list[int], owners: dict[int, int]) -> Plan:
    """Match each cluster to a ticket (shared evidence first, then linkage); the rest may open tickets.

    A triggered group whose texts are too scattered for any cluster to reach `min_cluster_size` still opens one
    ticket for all of them: the volume itself is the problem.
    """
    plan, rules = Plan(), work.rules
    means: dict[int, np.ndarray] | None = None
    unmatched: list[Cluster] = []
    for cluster in clusters:
        shared = defaultdict(int)
        for feedback_id in cluster.ids:
            if feedback_id in owners:
                shared[owners[feedback_id]] += 1
        ticket_id = min(shared, key=lambda t: (-shared[t], t)) if shared else None
        if ticket_id is None and tickets:
            means = means if means is not None else await _ticket_means(work, tickets)
            ticket_id = _closest(cluster.mean, means, rules.cluster_distance)
        if ticket_id is not None:
            plan.grow.setdefault(ticket_id, []).append(cluster)
        else:
            unmatched.append(cluster)
    if not group.is_triggered:
        return plan
    plan.open = [c for c in unmatched if len(c.members) >= rules.min_cluster_size]
    scattered = sum(len(c.members) for c in unmatched)
    if not plan.open and not plan.grow and scattered >= rules.min_complaints:
        plan.open = [merge(unmatched)]
    return plan


async def _ticket_means(work: Pass, tickets: list[int]) -> dict[int, np.ndarray]:
    """Each ticket's mean over its most recent evidence texts, embedded now (the model may have changed since)."""
    means = {}
    for ticket_id in tickets:
        query = (
            select(Feedback.comment)
            .join(TicketEvidence, TicketEvidence.feedback_id == Feedback.id)
            .where(TicketEvidence.ticket_id == ticket_id, Feedback.comment.is_not(None), Feedback.comment != "")
            .order_by(Feedback.submitted_at.desc(), Feedback.id.desc())
            .limit(work.rules.max_ticket_texts)
        )
        async with work.db.sessions() as session:
            texts = list(await session.scalars(query))
        if texts:
            means[ticket_id] = (await asyncio.to_thread(_embed, work.embed, texts)).mean(axis=0)
    return means


def _closest(mean: np.ndarray, means: dict[int, np.ndarray], max_distance: float) -> int | None:
    """The ticket whose evidence clustering would have merged with the cluster (the nearest, when several)."""
    scored = [(linkage(mean, other), ticket_id) for ticket_id, other in means.items()]
    best = min(scored, default=None)
    return best[1] if best is not None and best[0] <= max_distance else None


async def _grow(work: Pass, group: Group, ticket_id: int, cluster: Cluster) -> tuple[str, int] | None:
    """Add the cluster's new complaints to a ticket; reopen a resolved one when enough of them came after."""
    db, rules = work.db, work.rules
    async with db.writing(), db.sessions() as session, session.begin():
        ticket = await lock_ticket(session, db, ticket_id)
        if ticket is None:
            return None
        owners = await _evidence_owners(session, await _tickets_of(session, group.key), cluster.ids)
        new = [m for m in cluster.members if m.feedback_id not in owners]
        if not new:
            return None
        kind = "updated"
        if ticket.status in CLOSED:
            since = ticket.resolved_at or ticket.verified_at or ticket.opened_at
            if sum(m.submitted_at > since for m in new) < rules.min_complaints:
                return None  # a few stragglers do not reopen a resolved problem
            kind = "reopened"
            ticket.reopened_count += 1
            ticket.status, ticket.resolved_at, ticket.verified_at = TicketStatus.OPEN, None, None
        others = {f for f, t in owners.items() if t != ticket.id}
        branch = await session.get_one(Branch, ticket.branch_id)
        mine = [m for m in cluster.members if m.feedback_id not in others]
        await _attach(session, work, group, ticket, cluster, new_ids=[m.feedback_id for m in new], others=others)
        ticket.title = _title(work, branch, group.key[1], len(mine))
        _record(session, work, ticket, branch, kind, new_ids=[m.feedback_id for m in new])
    return kind, ticket_id


async def _open(work: Pass, group: Group, cluster: Cluster) -> tuple[str, int] | None:
    """Open a ticket for a new problem, unless its complaints became another ticket's evidence meanwhile."""
    db = work.db
    async with db.writing(), db.sessions() as session, session.begin():
        if await _evidence_owners(session, await _tickets_of(session, group.key), cluster.ids):
            return None
        branch = await session.get_one(Branch, group.key[0])
        ticket = Ticket(
            branch_id=branch.id,
            category=group.key[1],
            cluster_key=cluster_key(branch.code, group.key[1], cluster.ids),
            title=_title(work, branch, group.key[1], len(cluster.members)),
            status=TicketStatus.OPEN,
            owner_department=work.departments.get(group.key[1]),
            feedback_count=0,
            trend={},
            opened_at=work.now,
            updated_at=work.now,
        )
        session.add(ticket)
        await session.flush()
        await _attach(session, work, group, ticket, cluster, new_ids=cluster.ids, others=set())
        _record(session, work, ticket, branch, "opened", new_ids=cluster.ids)
    return "opened", ticket.id


def cluster_key(branch_code: str, category: str, feedback_ids: Sequence[int]) -> str:
    """A stable name for a problem: branch, category and a short hash of the complaints that first made it."""
    digest = hashlib.sha256(",".join(str(i) for i in sorted(feedback_ids)).encode()).hexdigest()[:10]
    return f"{branch_code}:{category}:{digest}"


async def _attach(
    session: AsyncSession,
    work: Pass,
    group: Group,
    ticket: Ticket,
    cluster: Cluster,
    *,
    new_ids: list[int],
    others: set[int],
) -> None:
    """Add evidence rows, choose the quotes closest to the centroid, refresh the count and the trend."""
    quotes = set(representatives(cluster, count=work.rules.quotes, exclude=others))
    is_quote = case((TicketEvidence.feedback_id.in_(sorted(quotes)), true()), else_=false())
    await session.execute(
        update(TicketEvidence).where(TicketEvidence.ticket_id == ticket.id).values(is_representative=is_quote)
    )
    session.add_all(
        TicketEvidence(ticket_id=ticket.id, feedback_id=f, is_representative=f in quotes, added_at=work.now)
        for f in new_ids
    )
    await session.flush()
    count = select(func.count()).select_from(TicketEvidence).where(TicketEvidence.ticket_id == ticket.id)
    ticket.feedback_count = int(await session.scalar(count) or 0)
    ticket.trend = await _trend(session, work, group, ticket, len(cluster.members) - len(others & set(cluster.ids)))
    ticket.updated_at = work.now


async def _trend(session: AsyncSession, work: Pass, group: Group, ticket: Ticket, in_window: int) -> dict[str, Any]:
    """The ticket's numbers for the console: weekly complaints, this window against the last, the tests."""
    rules, now, counts = work.rules, work.now, group.counts
    first_week = now - timedelta(days=7 * len(group.weekly))
    spreading = (
        select(Branch.code)
        .join(Ticket, Ticket.branch_id == Branch.id)
        .where(Ticket.category == ticket.category, Ticket.status.in_(ACTIVE), Ticket.branch_id != ticket.branch_id)
        .distinct()
        .order_by(Branch.code)
    )
    return {
        "computed_at": now.isoformat(),
        "window_days": rules.window.days,
        "weeks": [
            {"start": (first_week + timedelta(days=7 * i)).isoformat(), "complaints": n}
            for i, n in enumerate(group.weekly)
        ],
        "current": {"start": (now - rules.window).isoformat(), "end": now.isoformat(),
                    "complaints": counts.complaints, "feedback": counts.feedback, "in_ticket": in_window},
        "previous": {"start": (now - 2 * rules.window).isoformat(), "end": (now - rules.window).isoformat(),
                     "complaints": counts.previous_complaints, "feedback": counts.previous_feedback},
        **group.assessment.as_json(),
        "other_branches": list(await session.scalars(spreading)),
    }  # fmt: skip


def _title(work: Pass, branch: Branch, category: str, complaints: int) -> str:
    name = work.names.get(category) or category.replace("_", " ").capitalize()
    days = work.rules.window.days
    span = f"{days // 7} weeks" if days % 7 == 0 else f"{days} days"
    noun = "complaint" if complaints == 1 else "complaints"
    return f"{name} at {branch.name_en}: {complaints} {noun} in {span}"[:TITLE_LIMIT]


def _record(
    session: AsyncSession, work: Pass, ticket: Ticket, branch: Branch, kind: str, *, new_ids: list[int]
) -> None:
    """The pass's history entry and webhook event (ids and counts only: quotes stay on the premises)."""
    data = {"feedback_ids": sorted(new_ids), "feedback_count": ticket.feedback_count,
            "triggers": ticket.trend.get("triggers", []), "status": ticket.status.value}  # fmt: skip
    session.add(TicketEvent(ticket_id=ticket.id, kind=kind, data=data, created_at=work.now))
    add_event(session, f"ticket.{kind}", ticket_payload(ticket, branch, work.now, new_feedback=len(new_ids)))


def ticket_payload(ticket: Ticket, branch: Branch, now: datetime, **extra: Any) -> dict[str, Any]:
    """A ticket's webhook payload: ids, branch code, category, counts; no customer text."""
    return {
        "ticket_id": ticket.id,
        "branch": branch.code,
        "category": ticket.category,
        "status": ticket.status.value,
        "owner_department": ticket.owner_department,
        "feedback_count": ticket.feedback_count,
        "reopened_count": ticket.reopened_count,
        "cluster_key": ticket.cluster_key,
        "at": now.isoformat(),
        **extra,
    }


async def lock_ticket(session: AsyncSession, db: Database, ticket_id: int) -> Ticket | None:
    """Read a ticket in the session's write transaction, locking its row on PostgreSQL."""
    query = select(Ticket).where(Ticket.id == ticket_id)
    if db.dialect == "postgresql":
        query = query.with_for_update()  # a staff action at the same moment waits for this change, or this for it
    return await session.scalar(query)
