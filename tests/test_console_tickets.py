"""The ticket board and ticket page through the real app and real sign-in, on SQLite and PostgreSQL.

The app is config.app.create_app with the shipped branches (MAIN in region central, EAST in east) and taxonomy.
Tickets come either straight from rows (for the board's filters, order and scope) or from a real grouping pass
over seeded complaints (for the page: its quotes, weekly trend and sources), with tests/test_tickets.py's
hashing bag-of-words embedder standing in for the model. Argon2 runs with tiny cost parameters.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update
from test_tickets import QUEUE, add_feedback, embed

from config.app import create_app, load_catalog
from config.settings import load_settings
from reporting.complaints import TicketRules
from reporting.tickets import run_grouping
from store import Database
from store.models import (
    ActorKind,
    AuditEntry,
    Branch,
    Case,
    ScopeKind,
    StaffRole,
    Ticket,
    TicketEvent,
    TicketEvidence,
    TicketStatus,
)
from store.staff import Actor, NewUser, create_user
from web import passwords
from web.keys import DATABASE

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CARD_TITLE = re.compile(r'<a class="ticket-title" href="/console/tickets/(\d+)">')
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DEPARTMENTS = {"waiting_time": "branch_operations", "staff_attitude": "service_quality", "fees_charges": "pricing"}
SCRIPT = "<script>alert(1)</script>"
PHONE = "13812345678"
USERS = {  # username -> role, scope
    "root": (StaffRole.ADMIN, ScopeKind.ALL, None),
    "central": (StaffRole.MANAGER, ScopeKind.REGION, "central"),
    "clerk": (StaffRole.STAFF, ScopeKind.BRANCH, "MAIN"),
    "eastie": (StaffRole.STAFF, ScopeKind.BRANCH, "EAST"),
}


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
async def client(aiohttp_client, database_url, tmp_path: Path):
    environ = {"CLOSELOOP_DATABASE_URL": database_url, "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
               "CLOSELOOP_NLP_WORKER": "false"}  # fmt: skip
    settings = load_settings(environ)
    return await aiohttp_client(create_app(settings, load_catalog(settings)))


@pytest.fixture
async def db(client) -> Database:
    return client.app[DATABASE]


@pytest.fixture
async def users(db: Database) -> dict[str, int]:
    ids = {}
    for username, (role, kind, value) in USERS.items():
        new = NewUser(username, username.title(), role, kind, value, passwords.hash_password(PASSWORD))
        ids[username] = (await create_user(db, new, actor=Actor(ActorKind.CLI))).id
    return ids


async def sign_in_as(client, username: str) -> None:
    """Sign in through the real form, in a fresh cookie jar (one browser per user)."""
    client.session.cookie_jar.clear()
    form = await client.get("/console/login")
    token = CSRF.search(await form.text()).group(1)
    fields = {"csrf": token, "username": username, "password": PASSWORD}
    response = await client.post("/console/login", data=fields, allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/console")


async def page(client, path: str, status: int = 200, headers: dict[str, str] | None = None) -> str:
    response = await client.get(path, headers=headers)
    assert response.status == status, path
    return await response.text()


async def act(client, ticket_id: int, action: str, **fields: str):
    """Post an action form from the ticket page, with the page's own CSRF token; the 303 is not followed."""
    token = CSRF.search(await page(client, f"/console/tickets/{ticket_id}")).group(1)
    return await client.post(f"/console/tickets/{ticket_id}/{action}", data={"csrf": token, **fields},
                             allow_redirects=False)  # fmt: skip


async def add_ticket(db: Database, branch: str, category: str, *, status=TicketStatus.OPEN, count: int = 5,
                     title: str | None = None, updated: datetime = NOW, trend: dict | None = None) -> int:  # fmt: skip
    async with db.sessions() as session, session.begin():
        branch_id = await session.scalar(select(Branch.id).where(Branch.code == branch))
        ticket = Ticket(branch_id=branch_id, category=category, cluster_key=f"{branch}:{category}:{count}",
                        title=title or f"{category} at {branch}", status=status,
                        owner_department=DEPARTMENTS[category], feedback_count=count, trend=trend or {},
                        opened_at=updated - timedelta(days=3), updated_at=updated)  # fmt: skip
        session.add(ticket)
        await session.flush()
        return ticket.id


async def grouped_ticket(db: Database) -> tuple[int, int]:
    """Six queue complaints at MAIN, all with markup, one with a phone number and a case: one ticket by a real pass.

    Returns the ticket's id and the case's id.
    """
    texts = [f"{SCRIPT}{QUEUE[0]}", f"<b>{QUEUE[1]}</b> call me on {PHONE}", *(f"<b>{q}</b>" for q in QUEUE[2:6])]
    ids = [await add_feedback(db, "MAIN", text, NOW - timedelta(hours=6 - i)) for i, text in enumerate(texts)]
    for days in (10, 17):  # older complaints give the weekly chart more than one bar
        await add_feedback(db, "MAIN", "<b>The queue was long, waited and waited</b>", NOW - timedelta(days=days))
    result = await run_grouping(db, DEPARTMENTS, embed, now=NOW, rules=TicketRules(cluster_distance=0.9))
    assert result.opened == 1
    async with db.sessions() as session, session.begin():
        case = Case(feedback_id=ids[1], branch_id=await session.scalar(select(Branch.id).where(Branch.code == "MAIN")))
        session.add(case)
        await session.flush()
        return result.ticket_ids[0], case.id


async def ticket_state(db: Database, ticket_id: int) -> tuple[TicketStatus, list[tuple[str, int | None, str | None]]]:
    async with db.sessions() as session:
        status = await session.scalar(select(Ticket.status).where(Ticket.id == ticket_id))
        events = await session.execute(
            select(TicketEvent.kind, TicketEvent.actor_id, TicketEvent.body)
            .where(TicketEvent.ticket_id == ticket_id, TicketEvent.actor_id.is_not(None))
            .order_by(TicketEvent.id)
        )
        return status, [tuple(row) for row in events]


async def ticket_audit(db: Database) -> list[AuditEntry]:
    async with db.sessions() as session:
        query = select(AuditEntry).where(AuditEntry.target_type == "ticket").order_by(AuditEntry.id)
        return list(await session.scalars(query))


def card_ids(html: str) -> list[int]:
    return [int(i) for i in CARD_TITLE.findall(html)]


async def test_staff_see_only_their_branchs_tickets_and_another_branchs_ticket_is_404(client, db, users):
    main = await add_ticket(db, "MAIN", "waiting_time", title="Queues at Main", trend={"other_branches": ["EAST"]})
    east = await add_ticket(db, "EAST", "fees_charges", title="Fees at East")

    await sign_in_as(client, "clerk")
    assert card_ids(await page(client, "/console/tickets")) == [main]
    assert card_ids(await page(client, "/console/tickets?branch=EAST")) == []  # a filter cannot widen the scope
    assert "Fees at East" not in await page(client, f"/console/tickets/{east}", status=404)
    own = await page(client, f"/console/tickets/{main}")
    assert "Queues at Main" in own
    assert "East Lake Branch" not in own  # the same problem elsewhere is named only within the scope
    await page(client, "/console/tickets/999999", status=404)  # the same answer as for a ticket out of scope
    token = CSRF.search(await page(client, f"/console/tickets/{main}")).group(1)  # a real token, aimed elsewhere
    for action in ("start", "resolve", "comment"):
        response = await client.post(f"/console/tickets/{east}/{action}", data={"csrf": token, "body": "x"})
        assert response.status == 404
    assert await ticket_state(db, east) == (TicketStatus.OPEN, [])

    await sign_in_as(client, "central")
    assert card_ids(await page(client, "/console/tickets")) == [main]
    await page(client, f"/console/tickets/{east}", status=404)
    await sign_in_as(client, "root")
    assert sorted(card_ids(await page(client, "/console/tickets"))) == sorted([main, east])
    assert "Also open at: East Lake Branch" in await page(client, f"/console/tickets/{main}")


async def test_board_puts_open_work_first_biggest_first_and_filters_by_status_branch_category_owner(client, db, users):
    verified = await add_ticket(db, "EAST", "waiting_time", status=TicketStatus.VERIFIED, count=40)
    resolved = await add_ticket(db, "EAST", "fees_charges", status=TicketStatus.RESOLVED, count=30)
    small = await add_ticket(db, "MAIN", "waiting_time", count=5)
    big = await add_ticket(db, "MAIN", "staff_attitude", count=12)
    started = await add_ticket(db, "MAIN", "fees_charges", status=TicketStatus.IN_PROGRESS, count=50)
    await sign_in_as(client, "root")

    board = await page(client, "/console/tickets")
    assert card_ids(board) == [big, small, started, resolved, verified]
    assert re.search(r"In progress <span class=\"count\">1</span>", board)
    assert card_ids(await page(client, "/console/tickets?status=resolved")) == [resolved]
    assert card_ids(await page(client, "/console/tickets?branch=EAST")) == [resolved, verified]
    assert card_ids(await page(client, "/console/tickets?category=waiting_time")) == [small, verified]
    assert card_ids(await page(client, "/console/tickets?owner=pricing")) == [started, resolved]
    assert card_ids(await page(client, "/console/tickets?owner=pricing&branch=MAIN&status=in_progress")) == [started]
    assert card_ids(await page(client, "/console/tickets?status=<b>&page=-3")) == card_ids(board)  # nonsense ignored


async def test_cards_show_branch_category_owner_trend_and_status_in_the_users_language(client, db, users):
    trend = {"window_days": 28, "current": {"complaints": 9}, "previous": {"complaints": 2},
             "rate_test": {"direction": "up", "beyond_noise": True}}  # fmt: skip
    await add_ticket(db, "MAIN", "waiting_time", count=11, trend=trend)
    await sign_in_as(client, "clerk")

    english = await page(client, "/console/tickets")
    for text in ("Main Street Branch", "Waiting time", "Branch operations", "Rising", "9 in the last 28 days",
                 "(beyond noise)", "11 in all", "Open", "Updated 2026-03-02 09:00"):  # fmt: skip
        assert text in english, text
    chinese = await page(client, "/console/tickets", headers=ZH)
    for text in ("中央大街支行", "等候时间", "上升", "近 28 天 9 条", "待处理"):
        assert text in chinese, text


async def test_board_pages_through_many_tickets(client, db, users):
    ids = [await add_ticket(db, "MAIN", "waiting_time", count=100 - n) for n in range(27)]
    await sign_in_as(client, "clerk")

    first = await page(client, "/console/tickets")
    assert card_ids(first) == ids[:25]
    assert 'href="/console/tickets?page=2" rel="next"' in first
    second = await page(client, "/console/tickets?page=2")
    assert card_ids(second) == ids[25:]
    assert 'rel="next"' not in second
    assert card_ids(await page(client, "/console/tickets?page=99999")) == []  # capped, not an error


async def test_ticket_page_shows_escaped_masked_quotes_a_weekly_chart_and_the_source_feedback(client, db, users):
    ticket_id, case_id = await grouped_ticket(db)
    await sign_in_as(client, "clerk")

    html = await page(client, f"/console/tickets/{ticket_id}")

    assert "Waiting time at Main Street Branch: 8 complaints in 4 weeks" in html
    assert "<script>alert" not in html
    assert "<b>" not in html
    quotes = html.split("What customers said")[1].split("Actions")[0]
    assert quotes.count("<blockquote>") == 5
    assert quotes.count("&lt;b&gt;") >= 4
    assert PHONE not in html
    assert "[PHONE]" in html
    chart = re.search(r'<svg class="ticket-chart".*?</svg>', html, re.S).group(0)
    bars = re.findall(r"<title>Week of ([0-9-]+): (\d+)</title>", chart)
    assert len(bars) == 8
    assert sum(int(n) for _, n in bars) == 8  # every complaint of the last eight weeks, in its week
    assert bars[-1][1] == "6"
    assert f'href="/console/cases/{case_id}"' in html
    sources = html.split("Source feedback")[1]
    assert sources.count("<li>") == 8
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sources
    assert "Opened with 8 complaints" in html


async def test_start_comment_resolve_verify_leave_ticket_events_and_audit_entries(client, db, users):
    ticket_id, _ = await grouped_ticket(db)
    await sign_in_as(client, "clerk")

    started = await act(client, ticket_id, "start")
    assert (started.status, started.headers["Location"]) == (303, f"/console/tickets/{ticket_id}?done=start")
    assert "The ticket is in progress." in await page(client, started.headers["Location"])
    await act(client, ticket_id, "comment", body="<img src=x onerror=alert(1)> asked the rota team")
    await act(client, ticket_id, "resolve", note="Second counter opened at lunchtime")
    assert (await act(client, ticket_id, "verify")).status == 403  # staff may not verify
    html = await page(client, f"/console/tickets/{ticket_id}")
    assert "&lt;img src=x onerror=alert(1)&gt; asked the rota team" in html
    assert "<img" not in html
    assert "/verify" not in html  # no verify form for staff either

    await sign_in_as(client, "central")
    verified = await act(client, ticket_id, "verify", note="Queues gone in the March figures")
    assert verified.headers["Location"].endswith("?done=verify")

    clerk, central = users["clerk"], users["central"]
    status, events = await ticket_state(db, ticket_id)
    assert status == TicketStatus.VERIFIED
    assert events == [
        ("started", clerk, None),
        ("comment", clerk, "<img src=x onerror=alert(1)> asked the rota team"),
        ("resolved", clerk, "Second counter opened at lunchtime"),
        ("verified", central, "Queues gone in the March figures"),
    ]
    entries = await ticket_audit(db)
    assert [(e.action, e.actor_kind, e.actor_id, e.target_id) for e in entries] == [
        ("ticket.started", ActorKind.STAFF, clerk, str(ticket_id)),
        ("ticket.commented", ActorKind.STAFF, clerk, str(ticket_id)),
        ("ticket.resolved", ActorKind.STAFF, clerk, str(ticket_id)),
        ("ticket.verified", ActorKind.STAFF, central, str(ticket_id)),
    ]
    assert {e.remote_addr for e in entries} == {
        "127.0.0.1"
    }  # the request's address, recorded in the action's transaction
    assert [(e.before["status"], e.after["status"]) for e in entries] == [
        ("open", "in_progress"), ("in_progress", "in_progress"), ("in_progress", "resolved"), ("resolved", "verified")
    ]  # fmt: skip
    history = (await page(client, f"/console/tickets/{ticket_id}")).split("<h2>History</h2>")[1].split("</ol>")[0]
    lines = [item.split("<p")[0].split("</li>")[0].strip() for item in history.split("<li>")[1:]]
    assert [line.split(" · ")[1:] for line in lines] == [
        ["Closeloop", "Opened with 8 complaints"], ["Clerk", "Started"], ["Clerk", "Comment"], ["Clerk", "Resolved"],
        ["Central", "Verified"],
    ]  # fmt: skip


async def test_an_invalid_transition_or_an_empty_comment_says_why_and_changes_nothing(client, db, users):
    ticket_id = await add_ticket(db, "MAIN", "waiting_time", status=TicketStatus.RESOLVED)
    await sign_in_as(client, "central")

    refused = await act(client, ticket_id, "start")
    assert refused.headers["Location"] == f"/console/tickets/{ticket_id}?refused=start"
    message = await page(client, refused.headers["Location"])
    assert "The ticket was not started: it is Resolved, and only an open ticket can be started." in message
    empty = await act(client, ticket_id, "comment", body="   ")
    assert "a comment needs 1 to 4,000 characters" in await page(client, empty.headers["Location"])
    chinese = await page(client, f"/console/tickets/{ticket_id}?refused=resolve", headers=ZH)
    assert "只有待处理或处理中的工单可以标记为已解决" in chinese

    assert await ticket_state(db, ticket_id) == (TicketStatus.RESOLVED, [])
    assert await ticket_audit(db) == []
    still_open = await add_ticket(db, "MAIN", "fees_charges")
    assert "was not started" not in await page(client, f"/console/tickets/{still_open}?refused=start")  # a stale link


async def test_an_action_without_its_csrf_token_is_refused_and_changes_nothing(client, db, users):
    ticket_id = await add_ticket(db, "MAIN", "waiting_time")
    await sign_in_as(client, "clerk")

    for data in ({}, {"csrf": "x" * 43}):
        response = await client.post(f"/console/tickets/{ticket_id}/start", data=data, allow_redirects=False)
        assert response.status == 403
    assert await ticket_state(db, ticket_id) == (TicketStatus.OPEN, [])
    assert await ticket_audit(db) == []


async def test_a_representative_quote_shows_only_once_its_evidence_is_marked(client, db, users):
    ticket_id, _ = await grouped_ticket(db)
    async with db.sessions() as session, session.begin():
        await session.execute(update(TicketEvidence).values(is_representative=False))
    await sign_in_as(client, "clerk")

    html = await page(client, f"/console/tickets/{ticket_id}")

    assert "What customers said" not in html
    assert "Source feedback" in html


async def test_history_explains_the_check_by_the_numbers_in_both_languages(client, db, users):
    ticket_id = await add_ticket(db, "MAIN", "waiting_time", status=TicketStatus.VERIFIED)
    async with db.sessions() as session, session.begin():
        data = {"improved": True, "before": {"complaints": 12}, "after": {"complaints": 3}}
        session.add(TicketEvent(ticket_id=ticket_id, kind="verification", data=data, created_at=NOW))
    await sign_in_as(client, "clerk")

    english = await page(client, f"/console/tickets/{ticket_id}")
    chinese = await page(client, f"/console/tickets/{ticket_id}", headers=ZH)

    assert "Closeloop · Verified by the numbers: 12 complaints before, 3 after" in english
    assert "数据验证通过：解决前 12 条投诉，解决后 3 条" in chinese
