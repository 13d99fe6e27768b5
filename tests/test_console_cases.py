"""The case queue and the case page through the real app, real sign-in and real HTTP, on SQLite and PostgreSQL.

Branches MAIN (region central) and EAST (region east) come from config/branches.toml; NORTH (central) is added
here. Cases are seeded as rows; every action goes through the page's own forms, CSRF token included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, timedelta

import pytest
from sqlalchemy import func, select
from test_console_auth import CHEAP, CSRF, add_user, settings_for, sign_in

from config.app import create_app, load_catalog
from store import Database
from store.models import (
    Analysis,
    Answer,
    AuditEntry,
    Branch,
    Case,
    CaseEvent,
    CasePriority,
    CaseStatus,
    Conversation,
    Feedback,
    LabelCorrection,
    ScopeKind,
    StaffRole,
    utcnow,
)
from web import passwords
from web.case_queue import PAGE_SIZE
from web.keys import DATABASE

HOSTILE = "It was a scam <script>alert(1)</script> & <b>nobody</b> helped"
INERT = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;nobody&lt;/b&gt;"
CASE_LINK = re.compile(r'href="/console/cases/(\d+)"')
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
ASPECT = {"category": "fraud_security", "category_score": 0.9, "sentiment": "negative",
          "sentiment_scores": {"negative": 0.77, "neutral": 0.2, "positive": 0.03}}  # fmt: skip


@dataclass
class Staff:
    clerk: int  # staff at MAIN
    east_clerk: int  # staff at EAST
    boss: int  # manager of region central: MAIN and NORTH
    root: int  # admin


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "HASHER", CHEAP)


@pytest.fixture
async def client(aiohttp_client, database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, CLOSELOOP_TIMEZONE="Asia/Shanghai")
    return await aiohttp_client(create_app(settings, load_catalog(settings)))


@pytest.fixture
async def db(client) -> Database:
    database = client.app[DATABASE]
    async with database.writing(), database.sessions() as session, session.begin():
        session.add(Branch(code="NORTH", name_en="North Gate", name_zh="北门支行", region="central"))
    return database


@pytest.fixture
async def staff(db) -> Staff:
    return Staff(
        clerk=(await add_user(db, "clerk", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "MAIN"), name="Clara")).id,
        east_clerk=(await add_user(db, "east", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "EAST"), name="Ed")).id,
        boss=(await add_user(db, "boss", scope=(ScopeKind.REGION, "central"), name="Bo")).id,
        root=(await add_user(db, "root", role=StaffRole.ADMIN, scope=(ScopeKind.ALL, None), name="Root")).id,
    )


async def add_case(
    db: Database,
    branch: str = "MAIN",
    *,
    comment: str = "The queue was long",
    priority: CasePriority = CasePriority.NORMAL,
    status: CaseStatus = CaseStatus.NEW,
    due_in: timedelta = timedelta(hours=24),
    phone: str | None = None,
    answers: dict[str, object] | None = None,
) -> int:
    """A case as the analysis would open it: the feedback, its conversation, an analysis and the opening event."""
    now = utcnow()
    async with db.writing(), db.sessions() as session, session.begin():
        branch_id = await session.scalar(select(Branch.id).where(Branch.code == branch))
        conversation = Conversation(channel="web", branch_id=branch_id, source="qr", step="done", state={})
        session.add(conversation)
        await session.flush()
        session.add_all(Answer(conversation_id=conversation.id, step=k, value=v) for k, v in (answers or {}).items())
        feedback = Feedback(conversation_id=conversation.id, branch_id=branch_id, language="en", csat=1, nps=2, ces=6,
                            comment=comment, callback_requested=phone is not None, contact_phone=phone)  # fmt: skip
        session.add(feedback)
        await session.flush()
        session.add(analysis_of(feedback.id, comment))
        case = Case(feedback_id=feedback.id, branch_id=branch_id, priority=priority, status=status,
                    reason="fraud_security: keyword scam", sla_due_at=now + due_in, created_at=now)  # fmt: skip
        session.add(case)
        await session.flush()
        session.add(CaseEvent(case_id=case.id, kind="opened", data={"priority": priority.value}))
        return case.id


def analysis_of(feedback_id: int, comment: str) -> Analysis:
    return Analysis(
        feedback_id=feedback_id,
        model_version="v7",
        language="en",
        sentiment="negative",
        sentiment_scores={"negative": 0.81, "neutral": 0.12, "positive": 0.07},
        categories=[["fraud_security", 0.82], ["waiting_time", 0.4]],
        aspects=[ASPECT | {"text": comment}],
        is_flagged=True,
        flag_reasons=[{"id": "fraud_security", "priority": "urgent", "sla_hours": 4, "reason": "keyword: scam"}],
    )


async def queue_ids(client, query: str = "") -> list[int]:
    response = await client.get(f"/console/cases{query}")
    assert response.status == 200
    return [int(i) for i in CASE_LINK.findall(await response.text())]


async def case_page(client, case_id: int) -> tuple[str, str]:
    """The page's HTML and its CSRF token."""
    response = await client.get(f"/console/cases/{case_id}")
    assert response.status == 200
    html = await response.text()
    return html, CSRF.search(html).group(1)


async def act(client, case_id: int, action: str, **fields: str):
    """Post one of the page's forms with the page's own token; return the page the redirect lands on."""
    _, token = await case_page(client, case_id)
    response = await client.post(f"/console/cases/{case_id}/{action}", data={"csrf": token, **fields},
                                 allow_redirects=False)  # fmt: skip
    assert response.status == 303
    assert response.headers["Location"].startswith(f"/console/cases/{case_id}?")
    landed = await client.get(response.headers["Location"])
    return await landed.text()


async def reload(db: Database, case_id: int) -> Case:
    async with db.sessions() as session:
        return await session.get(Case, case_id)


async def case_events(db: Database, case_id: int) -> list[CaseEvent]:
    async with db.sessions() as session:
        statement = select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.actor_id.is_not(None))
        return list(await session.scalars(statement.order_by(CaseEvent.id)))


async def case_audit(db: Database, case_id: int) -> list[AuditEntry]:
    async with db.sessions() as session:
        statement = select(AuditEntry).where(AuditEntry.target_type == "case", AuditEntry.target_id == str(case_id))
        return list(await session.scalars(statement.order_by(AuditEntry.id)))


async def test_the_console_opens_on_the_queue_of_the_users_own_branch(client, db, staff):
    main = await add_case(db, "MAIN")
    north = await add_case(db, "NORTH")
    east = await add_case(db, "EAST")
    closed = await add_case(db, "MAIN", status=CaseStatus.RESOLVED)

    landed = await sign_in(client, "clerk")
    assert landed.url.path == "/console/cases"
    page = await landed.text()
    assert "Signed in as Clara (staff, branch MAIN)" in page
    assert [int(i) for i in CASE_LINK.findall(page)] == [main]
    assert await queue_ids(client, "?status=all") == [main, closed]
    assert await queue_ids(client, "?status=all&branch=EAST") == [], "a branch outside the scope finds nothing"
    assert re.search(r"Open <span class=\"case-count\">1</span>", page)
    assert re.search(r"Resolved <span class=\"case-count\">1</span>", page)

    await sign_in(client, "boss")
    assert sorted(await queue_ids(client)) == [main, north]
    assert await queue_ids(client, "?branch=NORTH") == [north]
    await sign_in(client, "root")
    assert sorted(await queue_ids(client)) == [main, north, east]
    await sign_in(client, "east")
    assert await queue_ids(client, "?status=all") == [east]


async def test_the_queue_puts_urgent_then_soonest_due_first_and_marks_what_is_overdue(client, db, staff):
    resolved_urgent = await add_case(db, priority=CasePriority.URGENT, status=CaseStatus.RESOLVED)
    normal_soon = await add_case(db, priority=CasePriority.NORMAL, due_in=timedelta(minutes=30))
    urgent_later = await add_case(db, priority=CasePriority.URGENT, due_in=timedelta(hours=3))
    high_overdue = await add_case(db, priority=CasePriority.HIGH, due_in=-timedelta(hours=5),
                                  status=CaseStatus.ACKNOWLEDGED)  # fmt: skip
    urgent_sooner = await add_case(db, priority=CasePriority.URGENT, due_in=timedelta(hours=1, minutes=10))
    await sign_in(client, "clerk")

    expected = [urgent_sooner, urgent_later, high_overdue, normal_soon]
    assert await queue_ids(client) == expected
    assert await queue_ids(client, "?status=all") == [*expected, resolved_urgent]
    assert await queue_ids(client, "?priority=urgent") == [urgent_sooner, urgent_later]
    assert await queue_ids(client, "?status=acknowledged") == [high_overdue]
    assert await queue_ids(client, "?status=closed") == [resolved_urgent]

    page = await (await client.get("/console/cases")).text()
    rows = re.findall(r'<tr class="case-row( case-overdue)?">\s*<td[^>]*><a href="/console/cases/(\d+)"', page)
    assert [(int(i), bool(mark)) for mark, i in rows] == [(i, i == high_overdue) for i in expected]
    assert "overdue by 5 h" in page
    assert "in 1 h" in page
    async with db.sessions() as session:
        due = await session.scalar(select(Case.sla_due_at).where(Case.id == urgent_sooner))
    shanghai = (due.astimezone(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    assert f'<time class="muted">{shanghai}</time>' in page, "due times are local (CLOSELOOP_TIMEZONE)"
    closed = await (await client.get("/console/cases?status=closed")).text()
    assert '<span class="case-due">closed; was due</span>' in closed  # a closed case is neither due nor overdue
    assert '<span class="case-due">in ' not in closed


async def test_the_queue_pages_through_many_cases_without_repeating_one(client, db, staff):
    ids = [await add_case(db, due_in=timedelta(hours=1, minutes=n)) for n in range(PAGE_SIZE + 5)]
    await sign_in(client, "clerk")

    first, second = await queue_ids(client), await queue_ids(client, "?page=2")
    assert first == ids[:PAGE_SIZE]
    assert second == ids[PAGE_SIZE:]
    page = await (await client.get("/console/cases")).text()
    assert "Page 1 of 2" in page
    assert 'href="/console/cases?status=open&amp;page=2" rel="next"' in page
    assert await queue_ids(client, "?page=999999") == [], "past the last page: an empty page, not an error"


async def test_another_branchs_case_is_not_found_by_id_and_cannot_be_acted_on(client, db, staff):
    east = await add_case(db, "EAST")
    mine = await add_case(db, "MAIN")
    await sign_in(client, "clerk")
    _, token = await case_page(client, mine)

    missing = await client.get("/console/cases/999999")
    hidden = await client.get(f"/console/cases/{east}")
    assert (hidden.status, missing.status) == (404, 404)
    same = (await hidden.text()).replace(f"%2F{east}", "%2F999999") == await missing.text()
    assert same, "another branch's case looks exactly like no case (but for the language link's address)"
    for action, fields in [("acknowledge", {}), ("note", {"note": "peek"}), ("resolve", {"code": "fixed"})]:
        response = await client.post(f"/console/cases/{east}/{action}", data={"csrf": token, **fields},
                                     allow_redirects=False)  # fmt: skip
        assert response.status == 404
    assert (await reload(db, east)).status == CaseStatus.NEW
    assert await case_events(db, east) == []
    assert await case_audit(db, east) == []


async def test_the_case_page_shows_the_feedback_transcript_analysis_and_history(client, db, staff):
    answers = {"csat": 1, "comment": "call me on 13987654321 please", "topics": ["waiting_time"], "ces": None}
    case_id = await add_case(db, comment="Awful wait", phone="+86 138 1234 5678", answers=answers)
    await sign_in(client, "clerk")
    page, _ = await case_page(client, case_id)

    assert "Case #" in page
    assert "Awful wait" in page
    assert "+86 138 1234 5678" in page, "the phone the customer shared for the callback is shown to staff"
    assert 'href="tel:+8613812345678"' in page
    assert "13987654321" not in page, "numbers in the transcript are masked"
    assert "call me on [PHONE] please" in page
    assert "(skipped)" in page
    assert "Negative</strong>" in page
    assert "81%" in page
    assert "Fraud or security" in page, "categories and flags by their operator names"
    assert "keyword: scam" in page
    assert "confidence 77%" in page
    assert "Main Street Branch (MAIN)" in page
    assert "opened the case" in page
    no_phone = await add_case(db, comment="Slow")
    assert "Phone shared for the callback" not in (await case_page(client, no_phone))[0]

    chinese = await (await client.get(f"/console/cases/{case_id}", headers=ZH)).text()
    assert "个案 #" in chinese
    assert "中央大街支行" in chinese


async def test_each_action_changes_the_case_and_appears_in_its_history_and_the_audit_log(client, db, staff):
    case_id = await add_case(db)
    await sign_in(client, "clerk")

    assert "The case is acknowledged." in await act(client, case_id, "acknowledge")
    assert "The assignment is saved." in await act(client, case_id, "assign", assignee=str(staff.clerk))
    assert "The note is added." in await act(client, case_id, "note", note="Called the customer <b>back</b>")
    page = await act(client, case_id, "resolve", code="explained", note="Explained the fee")
    assert "The case is resolved." in page
    assert "resolved it: Explained to the customer" in page
    assert "Called the customer &lt;b&gt;back&lt;/b&gt;" in page

    case = await reload(db, case_id)
    assert (case.status, case.assignee_id, case.resolution_code) == (CaseStatus.RESOLVED, staff.clerk, "explained")
    events = await case_events(db, case_id)
    assert [(e.kind, e.actor_id) for e in events] == [
        ("acknowledged", staff.clerk),
        ("assigned", staff.clerk),
        ("note", staff.clerk),
        ("resolved", staff.clerk),
    ]
    audit = await case_audit(db, case_id)
    assert [(a.action, a.actor_id, str(a.actor_kind)) for a in audit] == [
        ("case.acknowledged", staff.clerk, "staff"),
        ("case.assigned", staff.clerk, "staff"),
        ("case.note", staff.clerk, "staff"),
        ("case.resolved", staff.clerk, "staff"),
    ]
    assert (audit[0].before["status"], audit[0].after["status"]) == ("new", "acknowledged")
    assert (audit[1].before["assignee_id"], audit[1].after["assignee_id"]) == (None, staff.clerk)
    assert audit[3].after["resolution_code"] == "explained"
    assert all(a.remote_addr == "127.0.0.1" for a in audit)


async def test_invalid_transitions_and_inputs_get_a_clear_message_and_change_nothing(client, db, staff):
    case_id = await add_case(db)
    await sign_in(client, "boss")
    await act(client, case_id, "acknowledge")
    assert "This case was already acknowledged." in await act(client, case_id, "acknowledge")
    assert "Choose a resolution from the list." in await act(client, case_id, "resolve", code="bribed")
    assert "A note needs 1 to 4,000 characters." in await act(client, case_id, "note", note="   ")
    outsider = await act(client, case_id, "assign", assignee=str(staff.east_clerk))
    assert "That person cannot take this case" in outsider
    assert (await reload(db, case_id)).assignee_id is None

    assert "The case is closed as not a complaint." in await act(client, case_id, "not_a_complaint")
    for action, fields in [("resolve", {"code": "fixed"}), ("not_a_complaint", {}), ("acknowledge", {})]:
        assert "This case is already closed, so that cannot be done." in await act(client, case_id, action, **fields)
    case = await reload(db, case_id)
    assert (case.status, case.resolution_code) == (CaseStatus.NOT_A_COMPLAINT, "not_a_complaint")
    assert [a.action for a in await case_audit(db, case_id)] == ["case.acknowledged", "case.not_a_complaint"]
    assert "The note is added." in await act(client, case_id, "note", note="Customer called again")


async def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(client, db, staff):
    case_id = await add_case(db)
    await sign_in(client, "clerk")
    forms = {"acknowledge": {}, "assign": {"assignee": str(staff.clerk)}, "note": {"note": "x"},
             "resolve": {"code": "fixed"}, "not_a_complaint": {}, "labels": {"sentiment": "positive"}}  # fmt: skip
    for action, fields in forms.items():
        for token in ({}, {"csrf": "forged-" + "x" * 36}):
            response = await client.post(f"/console/cases/{case_id}/{action}", data=fields | token,
                                         allow_redirects=False)  # fmt: skip
            assert response.status == 403, action
    assert (await reload(db, case_id)).status == CaseStatus.NEW
    assert await case_events(db, case_id) == []
    assert await case_audit(db, case_id) == []
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LabelCorrection)) == 0


async def test_markup_in_a_comment_renders_inert_in_the_queue_and_on_the_case_page(client, db, staff):
    case_id = await add_case(db, comment=HOSTILE, answers={"comment": HOSTILE})
    await sign_in(client, "clerk")
    queue = await (await client.get("/console/cases")).text()
    page, _ = await case_page(client, case_id)
    for html in (queue, page):
        assert INERT in html
        assert "<script" not in html
        assert "<b>" not in html
    assert page.count(INERT) >= 3, "the comment, the transcript and the clause"


async def test_corrected_labels_are_stored_for_training_and_audited(client, db, staff):
    case_id = await add_case(db)
    await sign_in(client, "clerk")
    assert "Choose a sentiment or at least one category" in await act(client, case_id, "labels", sentiment="")
    assert "Choose a sentiment or at least one category" in await act(client, case_id, "labels", sentiment="angry")

    fields = {"sentiment": "neutral", "category.waiting_time": "on", "category.not_a_category": "on"}
    page = await act(client, case_id, "labels", **fields)
    assert "the corrected labels are saved" in page
    assert "Labels corrected by Clara" in page
    assert "corrected the labels" in page
    async with db.sessions() as session:
        stored = list(await session.scalars(select(LabelCorrection)))
        feedback_id = await session.scalar(select(Case.feedback_id).where(Case.id == case_id))
    assert [(c.feedback_id, c.staff_user_id, str(c.sentiment), c.categories) for c in stored] == [
        (feedback_id, staff.clerk, "neutral", ["waiting_time"])
    ]
    audit = await case_audit(db, case_id)
    assert [a.action for a in audit] == ["case.labels_corrected"]
    assert audit[0].before == {"sentiment": "negative", "categories": ["fraud_security", "waiting_time"]}
    assert audit[0].after == {"sentiment": "neutral", "categories": ["waiting_time"]}
    assert (await reload(db, case_id)).status == CaseStatus.NEW, "a correction leaves the case as it was"


async def test_a_crafted_notice_in_the_address_shows_nothing(client, db, staff):
    case_id = await add_case(db)
    await sign_in(client, "clerk")
    page = await (await client.get(f"/console/cases/{case_id}?done=<script>&error=title")).text()
    assert 'role="status"' not in page
    assert 'role="alert"' not in page
    assert (await client.get("/console/cases/12345678901")).status == 404, "an id past 32 bits is no case"
