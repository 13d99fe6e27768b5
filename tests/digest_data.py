"""Seeded data for the digest tests: two branches in region North, two weeks of feedback, cases and tickets.

2026-W47 in Europe/London is Monday 16 Nov to Sunday 22 Nov 2026 (GMT, so local time is UTC). MAIN has 30
answers in W47 (CSAT 27 of 30 top-box) against 30 in W46 (12 of 30): a change well beyond noise. Waiting time
goes from 3 comments to 15 (staff stays near 100%); its two latest comments hold markup that must stay inert
and a phone number that must be masked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from store import Database
from store.models import Analysis, Branch, Case, Conversation, Feedback, Ticket

TZ = "Europe/London"
WEEK = "2026-W47"
EVIL = '<script>alert("pwned")</script><b>bold</b> & more'
PHONE_COMMENT = "Waited an hour, call me on 13812345678"


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


async def seed_digest_data(db: Database) -> dict[str, int]:
    """Insert branches MAIN and EAST (North), QUIET (South, no feedback), the visits, three cases and a ticket."""
    async with db.writing(), db.sessions() as session, session.begin():
        branches = [
            Branch(code="MAIN", name_en="Main Street", name_zh="总行营业部", region="North"),
            Branch(code="EAST", name_en="East Gate", name_zh="东门支行", region="North"),
            Branch(code="QUIET", name_en="Quiet Lane", name_zh="静巷支行", region="South"),
        ]
        session.add_all(branches)
        await session.flush()
        ids = {b.code: b.id for b in branches}
        feedback = []
        for n in range(30):  # W47: 27 happy, 3 unhappy; waiting time mentioned 15 times
            csat = 5 if n >= 3 else 1
            comment = EVIL if n == 13 else PHONE_COMMENT if n == 6 else f"visit {n}"  # the latest two
            categories = [["waiting_time", 0.9], ["staff", 0.5]] if n < 15 else [["staff", 0.8]]
            sentiment = "negative" if n < 15 else "positive"
            feedback.append(await _visit(session, ids["MAIN"], at(16 + n % 7, 9, n), csat, 9, 6, comment,
                                         sentiment, categories))  # fmt: skip
        for n in range(30):  # W46: 12 happy of 30; waiting time 3 times
            csat = 4 if n < 12 else 2
            categories = [["waiting_time", 0.9]] if n < 3 else [["staff", 0.8]]
            await _visit(session, ids["MAIN"], at(9 + n % 7, 9, n), csat, 7, 4, f"old {n}", "neutral", categories)
        for n in range(12):  # EAST, W47 only
            await _visit(session, ids["EAST"], at(17, 11, n), 4, 8, 5, f"east {n}", "positive", [["fees", 0.7]])
        session.add_all([
            Case(feedback_id=feedback[0].id, branch_id=ids["MAIN"], created_at=at(17), sla_due_at=at(18)),
            Case(feedback_id=feedback[1].id, branch_id=ids["MAIN"], created_at=at(17), sla_due_at=at(20),
                 first_response_at=at(18), resolved_at=at(19)),
            Case(feedback_id=feedback[2].id, branch_id=ids["MAIN"], created_at=at(10), sla_due_at=at(11)),
            Ticket(branch_id=ids["MAIN"], category="waiting_time", cluster_key="MAIN:waiting_time",
                   title="Queues at lunchtime", opened_at=at(18)),
        ])  # fmt: skip
    return ids


async def _visit(session, branch_id, when, csat, nps, ces, comment, sentiment, categories) -> Feedback:
    started = when - timedelta(minutes=3)
    conversation = Conversation(channel="web", branch_id=branch_id, source="qr", step="done", state={},
                                status="completed", started_at=started, completed_at=when)  # fmt: skip
    session.add(conversation)
    await session.flush()
    row = Feedback(conversation_id=conversation.id, branch_id=branch_id, language="en", csat=csat, nps=nps, ces=ces,
                   comment=comment, submitted_at=when)  # fmt: skip
    session.add(row)
    await session.flush()
    session.add(Analysis(feedback_id=row.id, model_version="v1", language="en", sentiment=sentiment,
                         categories=categories))  # fmt: skip
    return row
