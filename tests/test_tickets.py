"""Improvement tickets on both databases: complaints grouped into problems, opened, updated, reopened, verified.

Rows go in directly (branch, conversation, feedback, analysis). The encoder is replaced by a hashing
bag-of-words embedder: a deterministic stand-in for an external model, close enough that texts sharing words
are near and texts sharing none are orthogonal. The taxonomy is the shipped config/taxonomy.toml.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from config.files import parse_file
from config.settings import PACKAGE_DIR
from nlp.taxonomy import Taxonomy
from reporting.complaints import TicketRules, rate_change
from reporting.tickets import (
    TicketAccessError,
    TicketInputError,
    TicketNotFoundError,
    TicketStateError,
    comment,
    resolve,
    run_grouping,
    start,
    verify,
    verify_resolved,
)
from store import Database
from store.models import (
    Analysis,
    Branch,
    Conversation,
    Feedback,
    OutboxMessage,
    ScopeKind,
    StaffRole,
    StaffUser,
    Ticket,
    TicketEvent,
    TicketEvidence,
    TicketStatus,
)

TAXONOMY = parse_file(Taxonomy, PACKAGE_DIR / "taxonomy.toml")
DEPARTMENTS = {c.id: c.department for c in TAXONOMY.categories}
NAMES = {c.id: c.name.en for c in TAXONOMY.categories}
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# Thresholds for the bag-of-words stand-in, whose cosines spread far wider than a sentence encoder's.
RULES = TicketRules(cluster_distance=0.9)

QUEUE = [
    "The queue was long and I waited 40 minutes",
    "Waited in the queue for an hour, only one counter open",
    "Such a long queue, only one counter open again",
    "Long queue at the counter, waited forever",
    "The queue never moved, waited 50 minutes",
    "Queue far too long, one counter open",
    "Waited 30 minutes in a long queue",
    "Another long queue, waited and waited",
]
AIR = [
    "The air conditioning was broken, hot and stuffy inside",
    "Air conditioning not working, far too hot",
    "So hot inside, air conditioning off",
    "No air conditioning in the hall, stuffy and hot",
    "Air conditioning broken again, hot hall",
]
STOP = {"the", "and", "i", "a", "an", "in", "at", "was", "for", "too", "far", "so", "no", "not", "again", "of"}


def embed(texts: Sequence[str]) -> np.ndarray:
    """Hash each word into one of 4096 buckets; unit rows (the encoder's contract)."""
    rows = np.zeros((len(texts), 4096))
    for i, text in enumerate(texts):
        for word in re.findall(r"\w+", text.casefold()):
            if word not in STOP:
                rows[i, zlib.crc32(word.encode()) % 4096] += 1.0
        if not rows[i].any():
            rows[i, 0] = 1.0
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def add_feedback(
    db: Database,
    branch: str,
    comment_text: str,
    at: datetime,
    *,
    category: str = "waiting_time",
    sentiment: str = "negative",
    csat: int | None = 2,
) -> int:
    """A completed visit with one analysis; returns the feedback id."""
    async with db.sessions() as session, session.begin():
        branch_id = await session.scalar(select(Branch.id).where(Branch.code == branch))
        conversation = Conversation(channel="web", branch_id=branch_id, source="qr", step="done", state={},
                                    status="completed", started_at=at, completed_at=at)  # fmt: skip
        session.add(conversation)
        await session.flush()
        feedback = Feedback(conversation_id=conversation.id, branch_id=branch_id, language="en", csat=csat,
                            comment=comment_text, submitted_at=at)  # fmt: skip
        session.add(feedback)
        await session.flush()
        session.add(Analysis(feedback_id=feedback.id, model_version="m1", language="en", sentiment=sentiment,
                             categories=[[category, 0.9]]))  # fmt: skip
        return feedback.id


async def add_burst(db: Database, texts: Sequence[str], end: datetime, *, branch: str = "MAIN", **kw) -> list[int]:
    """One complaint per text, an hour apart, the last an hour before `end`."""
    return [await add_feedback(db, branch, t, end - timedelta(hours=len(texts) - i), **kw) for i, t in enumerate(texts)]


@pytest.fixture
async def staff(db: Database) -> dict[str, int]:
    async with db.sessions() as session, session.begin():
        session.add_all(
            [
                Branch(code="MAIN", name_en="Main Street", name_zh="主街支行", region="EAST"),
                Branch(code="WEST1", name_en="West One", name_zh="西一支行", region="WEST"),
            ]
        )
        users = {
            "clerk": StaffUser(username="clerk", display_name="Clerk", role=StaffRole.STAFF,
                               scope_kind=ScopeKind.BRANCH, scope_value="MAIN", password_hash="x"),
            "outsider": StaffUser(username="outsider", display_name="Outsider", role=StaffRole.STAFF,
                                  scope_kind=ScopeKind.BRANCH, scope_value="WEST1", password_hash="x"),
        }  # fmt: skip
        session.add_all(users.values())
        await session.flush()
        return {name: user.id for name, user in users.items()}


async def group(db: Database, now: datetime = NOW, rules: TicketRules = RULES):
    return await run_grouping(db, DEPARTMENTS, embed, now=now, rules=rules, category_names=NAMES)


async def tickets(db: Database) -> list[Ticket]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Ticket).order_by(Ticket.id)))


async def evidence(db: Database, ticket_id: int) -> list[tuple[int, bool, str]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(TicketEvidence.feedback_id, TicketEvidence.is_representative, Feedback.comment)
            .join(Feedback, Feedback.id == TicketEvidence.feedback_id)
            .where(TicketEvidence.ticket_id == ticket_id)
            .order_by(TicketEvidence.feedback_id)
        )
        return [tuple(row) for row in rows]


async def events(db: Database, ticket_id: int) -> list[TicketEvent]:
    async with db.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)
        return list(await session.scalars(query))


async def outbox(db: Database) -> list[tuple[str, dict]]:
    async with db.sessions() as session:
        rows = await session.execute(select(OutboxMessage.topic, OutboxMessage.payload).order_by(OutboxMessage.id))
        return [tuple(row) for row in rows]


async def row_counts(db: Database) -> dict[str, int]:
    async with db.sessions() as session:
        return {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model))
            for model in (Ticket, TicketEvidence, TicketEvent, OutboxMessage)
        }


async def test_a_burst_of_similar_complaints_opens_one_ticket_with_evidence_and_quotes(db, staff):
    ids = await add_burst(db, QUEUE[:6], NOW)
    await add_burst(db, ["Quick and friendly, no wait at all"] * 2, NOW, sentiment="positive", csat=5)

    result = await group(db)

    assert (result.opened, result.updated, result.reopened) == (1, 0, 0)
    [ticket] = await tickets(db)
    assert (ticket.status, ticket.category, ticket.owner_department) == (
        TicketStatus.OPEN,
        "waiting_time",
        "branch_operations",
    )
    assert ticket.title == "Waiting time at Main Street: 6 complaints in 4 weeks"
    assert ticket.cluster_key.startswith("MAIN:waiting_time:")
    assert ticket.feedback_count == 6
    rows = await evidence(db, ticket.id)
    assert [r[0] for r in rows] == ids
    quotes = [text for _, is_quote, text in rows if is_quote]
    assert 3 <= len(quotes) <= 5
    assert set(quotes) <= set(QUEUE[:6])
    assert len(ticket.trend["weeks"]) == 8
    assert sum(w["complaints"] for w in ticket.trend["weeks"]) == 6
    assert ticket.trend["current"] | {"start": None, "end": None} == {
        "start": None, "end": None, "complaints": 6, "feedback": 8, "in_ticket": 6}  # fmt: skip
    assert "volume" in ticket.trend["triggers"]
    assert ticket.trend["other_branches"] == []
    assert [e.kind for e in await events(db, ticket.id)] == ["opened"]
    [(topic, payload)] = await outbox(db)
    assert topic == "ticket.opened"
    assert payload | {"at": None} == {
        "ticket_id": ticket.id, "branch": "MAIN", "category": "waiting_time", "status": "open",
        "owner_department": "branch_operations", "feedback_count": 6, "reopened_count": 0,
        "cluster_key": ticket.cluster_key, "new_feedback": 6, "at": None,
    }  # fmt: skip
    assert not any(word in json.dumps(payload) for word in ("queue", "waited", "counter"))


async def test_a_second_pass_at_the_same_time_changes_nothing(db, staff):
    await add_burst(db, QUEUE[:6], NOW)
    await group(db)
    before, [ticket] = await row_counts(db), await tickets(db)

    again = await group(db)

    assert (again.opened, again.updated, again.reopened) == (0, 0, 0)
    assert await row_counts(db) == before
    [same] = await tickets(db)
    assert (same.updated_at, same.trend, same.title) == (ticket.updated_at, ticket.trend, ticket.title)


async def test_later_complaints_update_the_same_ticket(db, staff):
    first = await add_burst(db, QUEUE[:5], NOW)
    await group(db)
    later = NOW + timedelta(days=3)
    more = await add_burst(db, QUEUE[5:8], later)

    result = await group(db, later)

    assert (result.opened, result.updated, result.reopened) == (0, 1, 0)
    [ticket] = await tickets(db)
    assert ticket.feedback_count == 8
    assert [r[0] for r in await evidence(db, ticket.id)] == first + more
    assert ticket.title == "Waiting time at Main Street: 8 complaints in 4 weeks"
    assert ticket.updated_at == later
    [opened, updated] = await events(db, ticket.id)
    assert (opened.kind, updated.kind, updated.data["feedback_ids"]) == ("opened", "updated", more)
    assert [topic for topic, _ in await outbox(db)] == ["ticket.opened", "ticket.updated"]


async def test_two_problems_in_one_category_become_two_tickets(db, staff):
    queue = await add_burst(db, QUEUE[:6], NOW)
    air = await add_burst(db, AIR, NOW - timedelta(days=1))

    result = await group(db)

    assert result.opened == 2
    found = {tuple(r[0] for r in await evidence(db, t.id)) for t in await tickets(db)}
    assert found == {tuple(queue), tuple(air)}
    assert len({t.cluster_key for t in await tickets(db)}) == 2


async def test_a_few_complaints_open_nothing(db, staff):
    await add_burst(db, QUEUE[:4], NOW)
    await add_burst(db, [f"Fine visit number {i}" for i in range(10)], NOW, sentiment="positive", csat=5)

    result = await group(db)

    assert (result.opened, result.ticket_ids) == (0, ())
    assert await tickets(db) == []
    assert await outbox(db) == []


async def test_a_high_negative_share_opens_a_ticket_below_the_volume(db, staff):
    await add_burst(db, QUEUE[:4], NOW)
    await add_burst(db, [f"Fine visit number {i}" for i in range(6)], NOW, sentiment="positive", csat=5)

    result = await group(db)

    assert result.opened == 1
    [ticket] = await tickets(db)
    assert ticket.trend["triggers"] == ["share"]
    assert ticket.trend["share_test"]["current_pct"] == 40.0


async def test_only_the_latest_analysis_and_the_window_count(db, staff):
    ids = await add_burst(db, QUEUE[:6], NOW)
    await add_burst(db, QUEUE[:3], NOW - timedelta(days=40))  # before the window
    async with db.sessions() as session, session.begin():
        for fid in ids[:2]:  # re-analysed: no longer negative, and CSAT 4
            session.add(Analysis(feedback_id=fid, model_version="m2", language="en", sentiment="neutral",
                                 categories=[["waiting_time", 0.8]]))  # fmt: skip
            (await session.get_one(Feedback, fid)).csat = 4

    assert (await group(db)).opened == 0  # four complaints left in the window


async def test_markup_in_comments_is_kept_verbatim(db, staff):
    hostile = [f"<script>alert({i})</script> long queue & <b>waited</b> {i}0 minutes" for i in range(5)]
    await add_burst(db, hostile, NOW)

    await group(db)

    [ticket] = await tickets(db)
    quotes = [text for _, is_quote, text in await evidence(db, ticket.id) if is_quote]
    assert quotes
    assert set(quotes) <= set(hostile)
    assert all("<script>" not in json.dumps(payload) for _, payload in await outbox(db))


async def test_a_resolved_problem_that_returns_reopens_its_ticket(db, staff):
    await add_burst(db, QUEUE[:5], NOW)
    await group(db)
    [ticket] = await tickets(db)
    await resolve(db, ticket.id, actor_id=staff["clerk"], note="Opened a second counter", now=NOW + timedelta(hours=1))

    # The old complaints are still in the window: they alone do not reopen it.
    assert (await group(db, NOW + timedelta(days=1))).reopened == 0
    later = NOW + timedelta(days=10)
    await add_burst(db, QUEUE[3:8], later)
    result = await group(db, later)

    assert (result.opened, result.updated, result.reopened) == (0, 0, 1)
    [again] = await tickets(db)
    assert (again.id, again.status, again.reopened_count, again.resolved_at) == (ticket.id, TicketStatus.OPEN, 1, None)
    assert again.feedback_count == 10
    assert [e.kind for e in await events(db, ticket.id)] == ["opened", "resolved", "reopened"]
    assert [t for t, _ in await outbox(db)] == ["ticket.opened", "ticket.resolved", "ticket.reopened"]
    assert (await outbox(db))[-1][1]["reopened_count"] == 1


async def test_a_problem_back_after_the_window_finds_its_ticket_by_meaning(db, staff):
    await add_burst(db, QUEUE[:5], NOW)
    await group(db)
    [ticket] = await tickets(db)
    await resolve(db, ticket.id, actor_id=staff["clerk"], now=NOW + timedelta(days=1))
    later = NOW + timedelta(days=40)  # the first burst has left the window: no shared evidence
    await add_burst(db, QUEUE[3:8], later)
    await add_burst(db, AIR, later)

    result = await group(db, later)

    assert (result.opened, result.reopened) == (1, 1)
    reopened, new = await tickets(db)
    assert (reopened.id, reopened.status, reopened.reopened_count) == (ticket.id, TicketStatus.OPEN, 1)
    assert {text for _, _, text in await evidence(db, new.id)} == set(AIR)


async def test_a_problem_at_another_branch_is_listed_as_spreading(db, staff):
    await add_burst(db, QUEUE[:5], NOW, branch="WEST1")
    await add_burst(db, QUEUE[3:8], NOW)

    assert (await group(db)).opened == 2

    main, west = await tickets(db)  # MAIN is grouped first: only the later ticket sees the earlier one
    assert (main.cluster_key[:5], main.trend["other_branches"], west.trend["other_branches"]) == ("MAIN:", [], ["MAIN"])
    assert west.title == "Waiting time at West One: 5 complaints in 4 weeks"


async def test_verification_marks_a_ticket_whose_complaints_fell(db, staff):
    await add_burst(db, QUEUE, NOW)
    await group(db)
    [ticket] = await tickets(db)
    await resolve(db, ticket.id, actor_id=staff["clerk"], now=NOW)

    assert await verify_resolved(db, NOW + timedelta(days=27), RULES) == []  # not a window yet
    [checked] = await verify_resolved(db, NOW + timedelta(days=29), RULES)

    assert (checked.ticket_id, checked.improved) == (ticket.id, True)
    assert (checked.data["before"]["complaints"], checked.data["after"]["complaints"]) == (8, 0)
    [verified] = await tickets(db)
    assert (verified.status, verified.verified_at) == (TicketStatus.VERIFIED, NOW + timedelta(days=29))
    assert (await events(db, ticket.id))[-1].kind == "verification"
    assert (await outbox(db))[-1][0] == "ticket.verified"
    assert await verify_resolved(db, NOW + timedelta(days=30), RULES) == []


async def test_verification_keeps_a_ticket_whose_complaints_went_on(db, staff):
    await add_burst(db, QUEUE[:6], NOW)
    await group(db)
    [ticket] = await tickets(db)
    await resolve(db, ticket.id, actor_id=staff["clerk"], now=NOW)
    await add_burst(db, QUEUE[:6], NOW + timedelta(days=20))

    [checked] = await verify_resolved(db, NOW + timedelta(days=29), RULES)

    assert checked.improved is False
    assert checked.data["after"]["complaints"] == 6
    assert (await tickets(db))[0].status == TicketStatus.RESOLVED
    assert await verify_resolved(db, NOW + timedelta(days=30), RULES) == []  # checked once per resolution


async def test_staff_actions_record_who_and_the_state_before_and_after(db, staff):
    await add_burst(db, QUEUE[:5], NOW)
    await group(db)
    [ticket] = await tickets(db)
    clerk = staff["clerk"]

    await start(db, ticket.id, actor_id=clerk, now=NOW)
    await comment(db, ticket.id, "  Asked for a second counter <b>now</b> ", actor_id=clerk, now=NOW)
    await resolve(db, ticket.id, actor_id=clerk, now=NOW + timedelta(hours=2))
    done = await verify(db, ticket.id, actor_id=clerk, now=NOW + timedelta(days=30))

    assert done.status == TicketStatus.VERIFIED
    history = (await events(db, ticket.id))[1:]
    assert [(e.kind, e.actor_id) for e in history] == [
        (k, clerk) for k in ("started", "comment", "resolved", "verified")
    ]
    steps = [("open", "in_progress"), ("in_progress", "in_progress"), ("in_progress", "resolved"),
             ("resolved", "verified")]  # fmt: skip
    assert [(e.data["before"]["status"], e.data["after"]["status"]) for e in history] == steps
    assert history[1].body == "Asked for a second counter <b>now</b>"
    topics = [t for t, _ in await outbox(db)]
    assert topics == ["ticket.opened", "ticket.updated", "ticket.updated", "ticket.resolved", "ticket.verified"]


async def test_invalid_actions_raise_clear_errors(db, staff):
    await add_burst(db, QUEUE[:5], NOW)
    await group(db)
    [ticket] = await tickets(db)
    clerk = staff["clerk"]

    with pytest.raises(TicketStateError, match=r"is open: it can be verified only when resolved"):
        await verify(db, ticket.id, actor_id=clerk)
    await resolve(db, ticket.id, actor_id=clerk)
    with pytest.raises(TicketStateError, match=r"is resolved: it can be started only when open"):
        await start(db, ticket.id, actor_id=clerk)
    with pytest.raises(TicketStateError, match=r"it can be resolved only when open or in_progress"):
        await resolve(db, ticket.id, actor_id=clerk)
    with pytest.raises(TicketAccessError, match="not responsible for branch MAIN"):
        await comment(db, ticket.id, "hello", actor_id=staff["outsider"])
    with pytest.raises(TicketInputError, match="1 to 4000 characters"):
        await comment(db, ticket.id, "   ", actor_id=clerk)
    with pytest.raises(TicketNotFoundError, match="no ticket 999"):
        await start(db, 999, actor_id=clerk)
    assert [e.kind for e in await events(db, ticket.id)] == ["opened", "resolved"]


async def test_two_passes_at_once_open_one_ticket(db, staff):
    await add_burst(db, QUEUE[:6], NOW)

    results = await asyncio.gather(group(db), group(db))

    assert sum(r.opened for r in results) == 1
    assert len(await tickets(db)) == 1
    assert len(await outbox(db)) == 1


def test_rate_change_is_the_exact_conditional_test():
    assert rate_change(8, 0, confidence=0.95).is_beyond_noise  # p = 2 / 256
    assert not rate_change(5, 0, confidence=0.95).is_beyond_noise  # p = 2 / 32
    assert rate_change(3, 3, confidence=0.95).p_value == 1.0
    assert rate_change(0, 0, confidence=0.95).direction == "flat"


def test_rules_refuse_nonsense():
    with pytest.raises(ValueError, match="negative_share"):
        TicketRules(negative_share=0)
    with pytest.raises(ValueError, match="window"):
        TicketRules(window=timedelta(0))
