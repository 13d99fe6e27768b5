"""The JSON API through the real app, real bearer tokens and real HTTP, on SQLite and PostgreSQL.

Branches MAIN (region central) and EAST (region east) come from config/branches.toml. Tokens are made with
store.staff's own functions or the real CLI; cases, tickets and feedback are seeded as rows.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner, Result
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from sqlalchemy import select, update
from test_console_auth import CHEAP, add_user, settings_for, sign_in
from test_console_cases import HOSTILE, add_case
from test_console_tickets import add_ticket
from test_tickets import add_feedback

from config.app import create_app, load_catalog
from config.staff_commands import staff
from store import Database
from store.models import (
    ActorKind,
    AuditEntry,
    Case,
    CaseStatus,
    LabelCorrection,
    ScopeKind,
    StaffRole,
    StaffUser,
    Ticket,
    TicketStatus,
    utcnow,
)
from store.staff import Actor, create_token, revoke_token
from web import passwords
from web.api import OPERATIONS, add_api_routes
from web.api_reports import METRICS
from web.keys import DATABASE

CLI = Actor(ActorKind.CLI)
PHONE = "13812345678"
ROUTE_PARAMETER = re.compile(r"\{(\w+):[^}]*\}\}?")  # {case_id:\d{1,9}} -> {case_id}
WEEK = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)  # a Wednesday: ISO week 2026-W10


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "HASHER", CHEAP)


@pytest.fixture
async def client(aiohttp_client, database_url, tmp_path):
    settings = settings_for(database_url, tmp_path)
    app = create_app(settings, load_catalog(settings))
    if METRICS not in app:  # until config/app.py registers the API itself
        add_api_routes(app)
    return await aiohttp_client(app)


@pytest.fixture
def db(client) -> Database:
    return client.app[DATABASE]


@pytest.fixture
async def users(db) -> dict[str, StaffUser]:
    return {
        "clerk": await add_user(db, "clerk", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "MAIN"), name="Clara"),
        "east": await add_user(db, "east", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "EAST"), name="Ed"),
        "boss": await add_user(db, "boss", scope=(ScopeKind.REGION, "central"), name="Bo"),
        "root": await add_user(db, "root", role=StaffRole.ADMIN, scope=(ScopeKind.ALL, None), name="Root"),
    }


@pytest.fixture
async def tokens(db, users) -> dict[str, str]:
    """A bearer header for each user."""
    headers = {}
    for name, user in users.items():
        issued = await create_token(db, user.id, f"{name} sync", now=utcnow(), expires_at=None, actor=CLI)
        headers[name] = issued.token
    return headers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get(client, path: str, token: str, status: int = 200) -> dict:
    response = await client.get(path, headers=bearer(token))
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def post(client, path: str, token: str, body: object = None, status: int = 200) -> dict:
    response = await client.post(path, headers=bearer(token), json=body)
    assert response.status == status, await response.text()
    return await response.json()


async def audit_of(db: Database, target_type: str) -> list[AuditEntry]:
    async with db.sessions() as session:
        statement = select(AuditEntry).where(AuditEntry.target_type == target_type).order_by(AuditEntry.id)
        return list(await session.scalars(statement))


async def case_status(db: Database, case_id: int) -> CaseStatus:
    async with db.sessions() as session:
        return (await session.get_one(Case, case_id)).status


# --- authentication ----------------------------------------------------------------------------------------------


async def test_requests_without_a_live_token_get_401_with_a_bearer_challenge(client, db, users, tokens):
    answer = await client.get("/api/v1/cases")
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="closeloop"'
    assert (await answer.json())["error"]["status"] == 401
    assert (await client.get("/api/v1/no-such-thing")).status == 401, "no route can be probed without a token"

    async def refused(headers: dict[str, str]) -> None:
        response = await client.get("/api/v1/cases", headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="closeloop", error="invalid_token"'
        assert response.headers["Cache-Control"] == "no-store"

    await refused(bearer("x" * 43))
    await refused({"Authorization": f"Basic {tokens['clerk']}"})
    await refused({"Authorization": tokens["clerk"]})
    assert (await client.get("/api/v1/cases", headers=bearer(tokens["clerk"]))).status == 200
    assert (await get(client, "/api/v1/no-such-thing", tokens["clerk"], status=404))["error"]["status"] == 404

    expired = await create_token(db, users["clerk"].id, "old", now=utcnow() - timedelta(days=2),
                                 expires_at=utcnow() - timedelta(seconds=1), actor=CLI)  # fmt: skip
    await refused(bearer(expired.token))
    revoked = await create_token(db, users["clerk"].id, "gone", now=utcnow(), expires_at=None, actor=CLI)
    assert await revoke_token(db, revoked.record.id, now=utcnow(), actor=CLI)
    await refused(bearer(revoked.token))
    async with db.sessions.begin() as session:
        await session.execute(update(StaffUser).where(StaffUser.id == users["east"].id).values(is_active=False))
    await refused(bearer(tokens["east"]))

    async with db.sessions() as session:
        stored = [row for row in await session.execute(select(AuditEntry.after).where(AuditEntry.action.like("api%")))]
    assert all(tokens["clerk"] not in json.dumps(after) for (after,) in stored), "the token is in no audit entry"


async def test_a_console_session_cookie_alone_does_not_authenticate_the_api(client, db, users):
    case_id = await add_case(db, "MAIN")
    landed = await sign_in(client, "clerk")
    assert landed.status == 200
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/console"))["closeloop_staff"].value
    page = await (await client.get(f"/console/cases/{case_id}")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    headers = {"Cookie": f"closeloop_staff={cookie}", "X-CSRF-Token": csrf}

    assert (await client.get("/api/v1/cases", headers=headers)).status == 401
    response = await client.post(f"/api/v1/cases/{case_id}/acknowledge", headers=headers, json={})
    assert response.status == 401
    assert await case_status(db, case_id) == CaseStatus.NEW


# --- scope -------------------------------------------------------------------------------------------------------


async def test_staff_of_one_branch_list_only_its_items_and_get_404_for_another_branchs(client, db, users, tokens):
    main, east = await add_case(db, "MAIN"), await add_case(db, "EAST")
    main_ticket, east_ticket = (
        await add_ticket(db, "MAIN", "waiting_time"),
        await add_ticket(db, "EAST", "fees_charges"),
    )
    clerk = tokens["clerk"]

    assert [c["id"] for c in (await get(client, "/api/v1/cases", clerk))["items"]] == [main]
    assert (await get(client, "/api/v1/cases?branch=EAST", clerk))["items"] == []
    assert [t["id"] for t in (await get(client, "/api/v1/tickets", clerk))["items"]] == [main_ticket]
    assert (await get(client, f"/api/v1/cases/{main}", clerk))["branch"]["code"] == "MAIN"

    missing = await get(client, "/api/v1/cases/999999", clerk, status=404)
    assert await get(client, f"/api/v1/cases/{east}", clerk, status=404) == missing, "ids cannot be probed"
    await get(client, f"/api/v1/tickets/{east_ticket}", clerk, status=404)
    await post(client, f"/api/v1/cases/{east}/acknowledge", clerk, {}, status=404)
    await post(client, f"/api/v1/tickets/{east_ticket}/start", clerk, {}, status=404)
    await get(client, "/api/v1/metrics?scope=branch:EAST", clerk, status=404)
    await get(client, "/api/v1/metrics?scope=all", clerk, status=404)
    await get(client, "/api/v1/feedback?branch=EAST", clerk, status=404)
    assert await case_status(db, east) == CaseStatus.NEW

    everything = await get(client, "/api/v1/cases?status=all", tokens["root"])
    assert sorted(c["id"] for c in everything["items"]) == [main, east]
    assert (await get(client, f"/api/v1/tickets/{east_ticket}", tokens["east"]))["status"] == "open"


async def test_lists_page_newest_first_with_a_cursor(client, db, users, tokens):
    ids = [await add_case(db, "MAIN") for _ in range(5)]
    first = await get(client, "/api/v1/cases?limit=2", tokens["clerk"])
    second = await get(client, f"/api/v1/cases?limit=2&cursor={first['next_cursor']}", tokens["clerk"])
    third = await get(client, f"/api/v1/cases?limit=2&cursor={second['next_cursor']}", tokens["clerk"])
    pages = [[c["id"] for c in page["items"]] for page in (first, second, third)]
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]
    assert third["next_cursor"] is None
    for bad in ("limit=0", "limit=201", "cursor=abc", "status=nonsense", "priority=huge"):
        error = await get(client, f"/api/v1/cases?{bad}", tokens["clerk"], status=400)
        assert error["error"]["message"] != "Bad Request", bad


# --- actions -----------------------------------------------------------------------------------------------------


async def test_case_actions_change_the_case_and_are_audited_as_the_tokens_user(client, db, users, tokens):
    case_id = await add_case(db, "MAIN")
    clerk, clerk_id, path = tokens["clerk"], users["clerk"].id, f"/api/v1/cases/{case_id}"

    assert (await post(client, f"{path}/acknowledge", clerk))["status"] == "acknowledged"
    conflict = await post(client, f"{path}/acknowledge", clerk, {}, status=409)
    assert "acknowledged already" in conflict["error"]["message"]
    assigned = await post(client, f"{path}/assign", clerk, {"assignee_id": clerk_id})
    assert (assigned["status"], assigned["assignee"]) == ("in_progress", {"id": clerk_id, "name": "Clara"})
    wrong = await post(client, f"{path}/assign", clerk, {"assignee_id": users["east"].id}, status=422)
    assert "not responsible for branch MAIN" in wrong["error"]["message"]
    noted = await post(client, f"{path}/notes", clerk, {"note": "Called back <b>twice</b>"})
    assert noted["events"][-1]["note"] == "Called back <b>twice</b>"
    labelled = await post(client, f"{path}/labels", clerk, {"sentiment": "neutral", "categories": ["waiting_time"]})
    assert labelled["label_correction"]["categories"] == ["waiting_time"]
    resolved = await post(client, f"{path}/resolve", clerk, {"code": "explained", "note": "apologised"})
    assert (resolved["status"], resolved["resolution_code"]) == ("resolved", "explained")
    assert resolved["resolved_at"].endswith("Z")
    await post(client, f"{path}/not-a-complaint", clerk, {}, status=409)

    entries = await audit_of(db, "case")
    assert [(e.action, e.actor_kind, e.actor_id) for e in entries] == [
        (f"case.{kind}", ActorKind.STAFF, clerk_id)
        for kind in ("acknowledged", "assigned", "note", "labels_corrected", "resolved")
    ]
    assert entries[-1].before["status"] == "in_progress"
    assert entries[-1].after["status"] == "resolved"
    assert entries[0].remote_addr == "127.0.0.1"
    async with db.sessions() as session:
        correction = await session.scalar(select(LabelCorrection))
    assert (correction.staff_user_id, correction.categories) == (clerk_id, ["waiting_time"])


async def test_a_bad_body_is_refused_with_a_reason_and_changes_nothing(client, db, users, tokens):
    case_id = await add_case(db, "MAIN")
    path, clerk = f"/api/v1/cases/{case_id}", tokens["clerk"]
    expectations = [
        ("resolve", {"code": "bribed"}, 422, "code must be one of"),
        ("resolve", {"note": "no code"}, 422, "lacks code"),
        ("notes", {"note": ""}, 422, "note must not be empty"),
        ("notes", {"note": "   "}, 422, "1 to 4000 characters"),
        ("notes", {"note": "x" * 4001}, 422, "at most 4000 characters"),
        ("notes", {"note": "hi", "extra": 1}, 422, "unknown field 'extra'"),
        ("assign", {"assignee_id": "7"}, 422, "assignee_id must be"),
        ("assign", {"assignee_id": True}, 422, "assignee_id must be"),
        ("labels", {"categories": ["no_such_category"]}, 422, "unknown category"),
        ("labels", {}, 422, "needs a sentiment or at least one category"),
        ("notes", [1, 2], 400, "must be a JSON object"),
    ]
    for action, body, status, message in expectations:
        error = await post(client, f"{path}/{action}", clerk, body, status=status)
        assert message in error["error"]["message"], (action, body, error)
    not_json = await client.post(f"{path}/notes", headers=bearer(clerk) | {"Content-Type": "application/json"},
                                 data=b"{not json")  # fmt: skip
    assert not_json.status == 400
    form = await client.post(f"{path}/notes", headers=bearer(clerk), data={"note": "a form"})
    assert form.status == 415
    assert await case_status(db, case_id) == CaseStatus.NEW
    assert await audit_of(db, "case") == []


async def test_ticket_actions_follow_the_ticket_rules_and_are_audited(client, db, users, tokens):
    ticket_id = await add_ticket(db, "MAIN", "waiting_time")
    path, clerk = f"/api/v1/tickets/{ticket_id}", tokens["clerk"]

    assert (await post(client, f"{path}/start", clerk))["status"] == "in_progress"
    await post(client, f"{path}/start", clerk, {}, status=409)
    commented = await post(client, f"{path}/comments", clerk, {"body": "New ticket machine <ordered>"})
    assert commented["events"][-1] | {"at": None, "id": None} == {
        "id": None, "kind": "comment", "at": None, "actor": {"id": users["clerk"].id, "name": "Clara"},
        "note": "New ticket machine <ordered>", "data": commented["events"][-1]["data"]}  # fmt: skip
    await post(client, f"{path}/comments", clerk, {"body": ""}, status=422)
    assert (await post(client, f"{path}/resolve", clerk, {"note": "fixed"}))["status"] == "resolved"
    refused = await post(client, f"{path}/verify", clerk, {}, status=403)
    assert "manager" in refused["error"]["message"]
    verified = await post(client, f"{path}/verify", tokens["boss"], {"note": "numbers are down"})
    assert (verified["status"], verified["verified_at"] is not None) == ("verified", True)

    entries = await audit_of(db, "ticket")
    assert [(e.action, e.actor_id) for e in entries] == [
        ("ticket.started", users["clerk"].id),
        ("ticket.commented", users["clerk"].id),
        ("ticket.resolved", users["clerk"].id),
        ("ticket.verified", users["boss"].id),
    ]
    async with db.sessions() as session:
        assert (await session.get_one(Ticket, ticket_id)).status == TicketStatus.VERIFIED


# --- customer text -----------------------------------------------------------------------------------------------


async def test_markup_in_comments_comes_back_as_masked_json_data_never_html(client, db, users, tokens):
    hostile = f"{HOSTILE}, call me on {PHONE}"
    case_id = await add_case(db, "MAIN", comment=hostile, phone=PHONE)
    await add_feedback(db, "MAIN", hostile, utcnow() - timedelta(hours=1))
    expected = hostile.replace(PHONE, "[PHONE]")

    for path in ("/api/v1/cases", f"/api/v1/cases/{case_id}", "/api/v1/feedback"):
        response = await client.get(path, headers=bearer(tokens["clerk"]))
        assert response.status == 200
        assert response.content_type == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        raw = await response.text()
        assert "<script>" not in raw, path
        assert "\\u003cscript\\u003e" in raw, path
        assert "&lt;" not in raw, "JSON-escaped, not HTML-escaped"
        assert PHONE not in raw.replace('"contact_phone":"13812345678"', ""), path
        body = json.loads(raw)
        comments = [item["comment"] for item in body["items"]] if "items" in body else [body["comment"]]
        assert expected in comments, path
    detail = await get(client, f"/api/v1/cases/{case_id}", tokens["clerk"])
    assert detail["feedback"]["contact_phone"] == PHONE, "given for a callback: shown as on the case page"
    assert detail["analysis"]["aspects"][0]["text"] == hostile.replace(PHONE, "[PHONE]")


# --- figures, feedback and the audit log -------------------------------------------------------------------------


async def test_metrics_show_figures_only_above_the_minimum_sample(client, db, users, tokens):
    for i in range(12):
        await add_feedback(db, "MAIN", f"fine {i}", WEEK + timedelta(minutes=i), csat=5 if i % 3 else 2)
    for i in range(3):
        await add_feedback(db, "EAST", f"slow {i}", WEEK + timedelta(minutes=i), csat=1)
    query = "from=2026-03-02&to=2026-03-15"

    mine = await get(client, f"/api/v1/metrics?{query}", tokens["clerk"])
    assert (mine["scope"], mine["period"]) == ({"kind": "branch", "value": "MAIN"}, "week")
    first, second = mine["periods"]
    assert (first["label"], first["start"], first["responses"]) == ("2026-W10", "2026-03-02T00:00:00Z", 12)
    assert first["figures"]["csat"] | {"interval": None} == {"kind": "share", "value": pytest.approx(800 / 12),
                                                             "n": 12, "interval": None}  # fmt: skip
    assert second["figures"]["csat"] == {"kind": "share", "value": None, "n": 0, "interval": None,
                                         "reason": "not enough responses"}  # fmt: skip

    east = await get(client, f"/api/v1/metrics?{query}&scope=branch:EAST&period=range", tokens["root"])
    [whole] = east["periods"]
    assert (whole["responses"], whole["figures"]["csat"]["value"], whole["figures"]["csat"]["n"]) == (3, None, 3)
    bank = await get(client, f"/api/v1/metrics?{query}&scope=all&period=range", tokens["root"])
    assert bank["periods"][0]["responses"] == 15
    for bad in ("from=2026-03-15&to=2026-03-02", "period=year", "scope=planet:earth", "from=yesterday"):
        await get(client, f"/api/v1/metrics?{bad}", tokens["root"], status=400)


async def test_feedback_has_the_consoles_filters_within_the_scope(client, db, users, tokens):
    at = utcnow() - timedelta(days=1)
    happy = await add_feedback(db, "MAIN", "lovely staff", at, category="staff_attitude", sentiment="positive", csat=5)
    slow = await add_feedback(db, "MAIN", "slow queue", at, csat=2)
    await add_feedback(db, "EAST", "far away", at)
    clerk = tokens["clerk"]

    assert [f["id"] for f in (await get(client, "/api/v1/feedback", clerk))["items"]] == [slow, happy]
    positive = await get(client, "/api/v1/feedback?sentiment=positive", clerk)
    assert [(f["id"], f["categories"], f["csat"]) for f in positive["items"]] == [(happy, ["staff_attitude"], 5)]
    assert [f["id"] for f in (await get(client, "/api/v1/feedback?csat=2", clerk))["items"]] == [slow]
    assert [f["id"] for f in (await get(client, "/api/v1/feedback?category=waiting_time", clerk))["items"]] == [slow]
    assert len((await get(client, "/api/v1/feedback", tokens["root"]))["items"]) == 3
    await get(client, "/api/v1/feedback?csat=9", clerk, status=400)


async def test_the_audit_log_is_for_administrators_only(client, db, users, tokens):
    case_id = await add_case(db, "MAIN")
    await post(client, f"/api/v1/cases/{case_id}/acknowledge", tokens["clerk"])
    for name in ("clerk", "boss"):
        refused = await get(client, "/api/v1/audit", tokens[name], status=403)
        assert refused["error"]["message"] == "the audit log is for administrators"
    log = await get(client, "/api/v1/audit?target_type=case", tokens["root"])
    [entry] = log["items"]
    assert (entry["action"], entry["actor"], entry["target_id"]) == ("case.acknowledged", "clerk", str(case_id))
    assert entry["after"]["status"] == "acknowledged"
    tokens_made = await get(client, "/api/v1/audit?action=api_token.created", tokens["root"])
    assert len(tokens_made["items"]) == 4


# --- the OpenAPI document ----------------------------------------------------------------------------------------


async def test_the_openapi_document_is_valid_and_describes_exactly_the_registered_routes(client, users, tokens, db):
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    validate_openapi(document)

    registered = {
        (route.method, ROUTE_PARAMETER.sub(r"{\1}", route.resource.canonical))
        for route in client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/") and route.method != "HEAD"
    }
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert registered == described
    assert {(op.method, op.path) for op in OPERATIONS} == described
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token>"}  # fmt: skip
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path.startswith("/api/v1/"):
                assert "401" in operation["responses"], (method, path)
                parameters = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
                assert parameters == set(re.findall(r"\{(\w+)\}", path)), (method, path)


async def test_real_answers_match_their_declared_schemas(client, db, users, tokens):
    case_id = await add_case(db, "MAIN", phone=PHONE, answers={"comment": "slow", "csat": 1})
    ticket_id = await add_ticket(db, "MAIN", "waiting_time", trend={"other_branches": ["EAST"], "window_days": 28})
    await add_feedback(db, "MAIN", "slow queue", utcnow() - timedelta(hours=2))
    root = tokens["root"]
    await post(client, f"/api/v1/cases/{case_id}/notes", root, {"note": "called"})
    await post(client, f"/api/v1/tickets/{ticket_id}/comments", root, {"body": "ordered a machine"})
    document = await (await client.get("/api/openapi.json")).json()

    clerk_ticket = await get(client, f"/api/v1/tickets/{ticket_id}", tokens["clerk"])
    assert clerk_ticket["trend"]["other_branches"] == [], "another branch's name stays outside the scope"
    checks = [
        ("/api/v1/cases", "/api/v1/cases?status=all", "get", 200, None),
        ("/api/v1/cases/{case_id}", f"/api/v1/cases/{case_id}", "get", 200, None),
        ("/api/v1/cases/{case_id}/acknowledge", f"/api/v1/cases/{case_id}/acknowledge", "post", 200, {}),
        ("/api/v1/tickets", "/api/v1/tickets", "get", 200, None),
        ("/api/v1/tickets/{ticket_id}", f"/api/v1/tickets/{ticket_id}", "get", 200, None),
        ("/api/v1/metrics", "/api/v1/metrics?period=day", "get", 200, None),
        ("/api/v1/feedback", "/api/v1/feedback", "get", 200, None),
        ("/api/v1/audit", "/api/v1/audit", "get", 200, None),
        ("/api/v1/cases/{case_id}", "/api/v1/cases/123456", "get", 404, None),
        ("/api/v1/cases/{case_id}/resolve", f"/api/v1/cases/{case_id}/resolve", "post", 422, {"code": "?"}),
    ]
    for template, path, method, status, body in checks:
        response = await client.request(method, path, headers=bearer(root), json=body)
        assert response.status == status, (path, await response.text())
        declared = document["paths"][template][method]["responses"][str(status)]
        if "$ref" in declared:
            declared = document["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
        schema = declared["content"]["application/json"]["schema"] | {"components": document["components"]}
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(await response.json())]
        assert errors == [], path
    unauthorized = await client.get("/api/v1/cases")
    schema = document["components"]["responses"]["Unauthorized"]["content"]["application/json"]["schema"]
    Draft202012Validator(schema | {"components": document["components"]}).validate(await unauthorized.json())


# --- closeloop staff token ... -----------------------------------------------------------------------------------

COMMANDS = click.Group("closeloop", commands=[staff])


async def run(settings, *args: str) -> Result:
    """Invoke the commands in a thread: they run their own event loop, as from a shell."""
    return await asyncio.to_thread(CliRunner().invoke, COMMANDS, list(args), obj=settings)


async def test_token_cli_prints_the_token_once_and_revoking_it_ends_access(client, db, users, database_url, tmp_path):
    settings = settings_for(database_url, tmp_path)
    created = await run(settings, "staff", "token", "create", "--username", "Clerk", "--name", "ticket sync",
                        "--days", "30")  # fmt: skip
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert created.output.count(token) == 1
    token_id = int(re.search(r"token (\d+) for clerk \(expires ", created.output).group(1))
    assert (await get(client, "/api/v1/cases", token))["items"] == []

    listing = await run(settings, "staff", "token", "list", "--username", "clerk")
    assert listing.exit_code == 0, listing.output
    assert token not in listing.output
    assert re.search(rf"^{token_id}\s+clerk\s+ticket sync\s+{re.escape(token[:8])}…\s+expires ", listing.output, re.M)

    revoked = await run(settings, "staff", "token", "revoke", str(token_id))
    assert (revoked.exit_code, revoked.output.strip()) == (0, f"token {token_id} revoked")
    assert (await client.get("/api/v1/cases", headers=bearer(token))).status == 401
    again = await run(settings, "staff", "token", "revoke", str(token_id))
    assert again.output.strip() == f"token {token_id} was revoked already"
    assert "revoked " in (await run(settings, "staff", "token", "list")).output
    missing = await run(settings, "staff", "token", "revoke", "999")
    assert (missing.exit_code, "no API token 999" in missing.output) == (2, True)
    nobody = await run(settings, "staff", "token", "create", "--username", "nobody", "--name", "x")
    assert (nobody.exit_code, "no staff user 'nobody'" in nobody.output) == (2, True)

    entries = await audit_of(db, "api_token")
    assert [(e.action, e.actor_kind, e.target_id) for e in entries] == [
        ("api_token.created", ActorKind.CLI, str(token_id)),
        ("api_token.revoked", ActorKind.CLI, str(token_id)),
    ]
    assert entries[0].after["prefix"] == token[:8]
    assert token not in json.dumps([e.after for e in entries])
