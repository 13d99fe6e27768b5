"""The dashboard, its drill-down feedback list and the audit log, through the real app on SQLite and PostgreSQL.

Seeded by hand (Asia/Shanghai, so local days are not UTC days): 2026-W44..W47 is the window, W40..W43 the one
before. MAIN has 24 answers in the window: 12 at counter C1 (CSAT 5 x9, 2 x3; NPS 10), 3 at C2 (CSAT 5, 5, 1),
5 at the branch itself late on Sunday 22 Nov local (CSAT 4, NPS 3), all in W47, and 4 in W45 (CSAT 5, NPS 9).
So CSAT is 20/24 = 83%, NPS (16 - 5)/21 = 52, CES has no answers; W40..W43 has 10 answers, CSAT 50%. The 20 W47
comments are analysed: waiting time 6 (30%), staff attitude 14 (70%), fees 3 (15%); negative 3, neutral 3,
positive 14. One C1 comment was analysed twice: only its latest analysis counts. A visit at 00:30 on Monday
23 Nov local (still 22 Nov in UTC) belongs to W48 and must be counted nowhere. EAST has 13 answers, CSAT 1.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from argon2 import PasswordHasher
from markupsafe import escape
from sqlalchemy import select

from config.app import create_app, load_catalog
from config.settings import load_settings
from store import Database
from store.models import (
    ActorKind,
    Analysis,
    AuditEntry,
    Branch,
    Case,
    Conversation,
    Counter,
    Feedback,
    ScopeKind,
    StaffRole,
)
from store.staff import Actor, NewUser, create_user
from web import passwords
from web.dashboard import FIGURES, warm_dashboards
from web.keys import DATABASE
from web.shared_results import SharedResults
from web.svg import Mark, bar_chart, line_chart

TZ = ZoneInfo("Asia/Shanghai")
WINDOW = "week=2026-W47&weeks=4"
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
EVIL = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
PHONE = "13812345678"
USERS = {  # username -> role, scope kind, scope value
    "root": (StaffRole.ADMIN, ScopeKind.ALL, None),
    "central": (StaffRole.MANAGER, ScopeKind.REGION, "central"),
    "clerk": (StaffRole.STAFF, ScopeKind.BRANCH, "MAIN"),
}
WAITING, STAFF, FEES, ATM = (["waiting_time", 0.9], ["staff_attitude", 0.8], ["fees_charges", 0.6], ["card_atm", 0.9])


def local(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TZ)


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
async def client(aiohttp_client, database_url, tmp_path: Path):
    environ = {"CLOSELOOP_DATABASE_URL": database_url, "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
               "CLOSELOOP_NLP_WORKER": "false", "CLOSELOOP_TIMEZONE": "Asia/Shanghai",
               "CLOSELOOP_REPORTING_MIN_RESPONSES": "10"}  # fmt: skip
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


@pytest.fixture
async def seeded(db: Database, users) -> dict[str, int]:
    """The visits of the module docstring; returns the ids of the case and of the markup comment's feedback."""
    async with db.writing(), db.sessions() as session, session.begin():
        branches = {b.code: b.id for b in await session.scalars(select(Branch))}
        counters = {(c.branch_id, c.code): c.id for c in await session.scalars(select(Counter))}
        main, east = branches["MAIN"], branches["EAST"]
        c1, c2 = counters[(main, "C1")], counters[(main, "C2")]
        visits = []  # (branch, counter, when, csat, nps, comment, analyses as (sentiment, categories) oldest first)
        for n in range(12):
            happy = n >= 3
            comment = EVIL if n == 0 else f"Call me on {PHONE}" if n == 1 else f"c1 visit {n}"
            analyses = [("positive", [STAFF])] if happy else [("negative", [WAITING])]
            if n == 2:
                analyses = [("negative", [FEES]), *analyses]  # re-analysed: the fees reading no longer counts
            visits.append((main, c1, local(11, 17, 10, n), 5 if happy else 2, 10, comment, analyses))
        for n, csat in enumerate((5, 5, 1)):
            visits.append((main, c2, local(11, 18, 11, n), csat, None, f"c2 visit {n}", [("neutral", [WAITING, FEES])]))
        for n in range(5):
            visits.append((main, None, local(11, 22, 23, 30 + n), 4, 3, f"late {n}", [("positive", [STAFF])]))
        visits.append((main, None, local(11, 23, 0, 30), 1, 0, "next week", [("negative", [WAITING])]))
        visits += [(main, None, local(11, 3), 5, 9, None, []) for _ in range(4)]
        visits += [(main, c1, local(10, 14), 5 if n < 5 else 1, None, f"old {n}", []) for n in range(10)]
        visits += [(east, None, local(11, 19), 1, 0, f"east only {n}", [("negative", [ATM])]) for n in range(13)]
        feedback = [await _visit(session, *visit) for visit in visits]
        case = Case(feedback_id=feedback[0].id, branch_id=main, created_at=local(11, 17, 12))
        session.add(case)
        await session.flush()
        return {"case": case.id, "evil": feedback[0].id}


async def _visit(session, branch_id, counter_id, when, csat, nps, comment, analyses) -> Feedback:
    conversation = Conversation(channel="web", branch_id=branch_id, counter_id=counter_id, source="qr", step="done",
                                state={}, status="completed", started_at=when, completed_at=when)  # fmt: skip
    session.add(conversation)
    await session.flush()
    row = Feedback(conversation_id=conversation.id, branch_id=branch_id, counter_id=counter_id, language="en",
                   csat=csat, nps=nps, comment=comment, submitted_at=when)  # fmt: skip
    session.add(row)
    await session.flush()
    for version, (sentiment, categories) in enumerate(analyses):
        session.add(Analysis(feedback_id=row.id, model_version=f"v{version}", language="en", sentiment=sentiment,
                             categories=categories))  # fmt: skip
        await session.flush()  # ids in order: the later analysis is the latest
    return row


async def sign_in_as(client, username: str) -> None:
    client.session.cookie_jar.clear()
    form = await client.get("/console/login")
    token = CSRF.search(await form.text()).group(1)
    fields = {"csrf": token, "username": username, "password": PASSWORD}
    response = await client.post("/console/login", data=fields, allow_redirects=False)
    assert response.status == 303


async def page(client, path: str, status: int = 200) -> str:
    response = await client.get(path)
    assert response.status == status, path
    return await response.text()


def chart_link(body: str, title: str) -> tuple[str, str]:
    """The link and caption of the chart mark whose tooltip starts with `title`."""
    match = re.search(r'<a href="([^"]+)"><(?:rect|circle) [^>]*><title>' + re.escape(title) + r": ([^<]*)</title>",
                      body)  # fmt: skip
    assert match, title
    return html.unescape(match.group(1)), html.unescape(match.group(2))


def row_link(body: str, code: str) -> tuple[str, int]:
    """The link and responses of a table row, by its code."""
    match = re.search(
        r'<td class="num"><a href="([^"]+)">(\d+)</a></td>', body[body.index(f'<span class="muted">{code}</span>') :]
    )
    assert match, code
    return html.unescape(match.group(1)), int(match.group(2))


def listed(body: str) -> int:
    return int(re.search(r'id="feedback-count" data-count="(\d+)"', body).group(1))


def tile(body: str, label: str, *, markup: bool = False) -> str:
    """A headline tile from its label to the end of its box: its text, or its markup."""
    start = body.index(f"<h2>{label}</h2>")
    box = body[start : body.index("</div>", start)]
    return box if markup else re.sub(r"<[^>]+>", " ", box)


async def test_headline_figures_match_the_seeded_visits_and_hide_what_has_too_few_answers(client, seeded):
    await sign_in_as(client, "clerk")
    body = await page(client, f"/console/dashboard?{WINDOW}")

    assert "Dashboard: Main Street Branch (MAIN)" in body
    assert "24" in tile(body, "Responses")
    assert "+14 vs previous 4 weeks" in tile(body, "Responses")
    csat = tile(body, "CSAT")
    assert "83%" in csat
    assert "n = 24" in csat
    assert "+33 pts vs previous 4 weeks" in csat
    assert "52" in tile(body, "NPS")
    assert "n = 21" in tile(body, "NPS")
    assert "not enough responses" in tile(body, "Effort (CES, 1-7)")
    assert "<a " not in tile(body, "Effort (CES, 1-7)", markup=True)  # nothing to drill into
    assert "no comparison" in tile(body, "Effort (CES, 1-7)")


async def test_a_small_counter_shows_no_figures_only_its_count(client, seeded):
    await sign_in_as(client, "clerk")
    body = await page(client, f"/console/dashboard?{WINDOW}")
    table = body[body.index("By counter") :]

    c1 = table[table.index(">C1<") : table.index("</tr>", table.index(">C1<"))]
    c2 = table[table.index(">C2<") : table.index("</tr>", table.index(">C2<"))]
    assert "75%" in c1
    assert ">12<" in c1
    assert c2.count("not enough responses") == 3
    assert ">3<" in c2
    assert "67%" not in c2
    assert "%" not in c2
    assert ">VIP<" not in table  # no visits there
    response = await client.get(f"/console/dashboard?{WINDOW}", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    chinese = await response.text()
    c2 = chinese[chinese.index(">C2<") : chinese.index("</tr>", chinese.index(">C2<"))]
    assert c2.count("样本不足") == 3
    assert "2号窗口" in chinese


async def test_every_chart_number_equals_the_count_of_the_feedback_it_links_to(client, seeded):
    await sign_in_as(client, "clerk")
    body = await page(client, f"/console/dashboard?{WINDOW}")

    marks = {
        "Waiting time": 6, "Staff attitude": 14, "Fees and charges": 3,  # categories: fees from the latest only
        "negative": 3, "neutral": 3, "positive": 14,  # sentiment
    }  # fmt: skip
    for title, count in marks.items():
        href, caption = chart_link(body, title)
        assert f"({count} comments)" in caption, title
        assert listed(await page(client, href)) == count, title
    volume_href, volume = chart_link(body[body.index("Responses by week") :], "2026-W47")
    assert volume == "20"
    assert listed(await page(client, volume_href)) == 20  # the 00:30 Monday visit is in W48, though 22 Nov in UTC
    csat_href, csat = chart_link(body, "2026-W47")
    assert csat == "80% (n=20)"
    assert listed(await page(client, csat_href)) == 20
    for code, count in (("C1", 12), ("C2", 3)):
        href, responses = row_link(body, code)
        assert responses == count
        assert listed(await page(client, href)) == count
    tile_href = re.search(r'<h2>CSAT</h2>\s*<p class="dash-value"><a href="([^"]+)">', body).group(1)
    assert listed(await page(client, html.unescape(tile_href))) == 24


async def test_a_week_with_too_few_answers_has_no_point_and_no_link(client, seeded):
    await sign_in_as(client, "clerk")
    body = await page(client, f"/console/dashboard?{WINDOW}")
    trend = body[body.index("CSAT by week") : body.index("NPS by week")]

    assert "<title>2026-W45: not enough responses</title>" not in trend  # hidden weeks draw no mark at all
    assert ">W45</text>" in trend  # but keep their label on the axis
    assert trend.count("<circle") == 1


async def test_staff_cannot_see_another_branch_by_changing_the_query(client, seeded):
    await sign_in_as(client, "clerk")

    await page(client, f"/console/dashboard?{WINDOW}&scope=branch:EAST", status=404)
    await page(client, f"/console/dashboard?{WINDOW}&scope=all", status=404)
    await page(client, f"/console/dashboard?{WINDOW}&scope=region:east", status=404)
    await page(client, "/console/feedback?branch=EAST", status=404)
    await page(client, "/console/feedback?region=east", status=404)
    await page(client, "/console/feedback?branch=NOPE", status=404)  # the same answer as for a branch not there
    everything = await page(client, "/console/feedback?from=2026-01-01&to=2026-12-31")
    assert listed(everything) == 24 + 10 + 1  # MAIN's window, the window before, and the W48 visit
    assert "east only" not in everything
    dashboard = await page(client, f"/console/dashboard?{WINDOW}")
    assert "scope=branch:EAST" not in dashboard.replace("%3A", ":")
    assert "East Lake" not in dashboard


async def test_a_region_manager_picks_a_branch_inside_the_region_only(client, seeded):
    await sign_in_as(client, "central")

    region = await page(client, f"/console/dashboard?{WINDOW}")
    assert "Dashboard: region central" in region
    assert "By branch" in region
    branch = await page(client, f"/console/dashboard?{WINDOW}&scope=branch:MAIN")
    assert "By counter" in branch
    await page(client, f"/console/dashboard?{WINDOW}&scope=branch:EAST", status=404)


async def test_an_admin_sees_the_whole_bank_and_each_branch(client, seeded):
    await sign_in_as(client, "root")
    body = await page(client, f"/console/dashboard?{WINDOW}&scope=all")

    assert "37" in tile(body, "Responses")  # 24 at MAIN and 13 at EAST
    href, responses = row_link(body, "EAST")
    assert responses == 13
    east = await page(client, href)
    assert listed(east) == 13
    assert "east only" in east
    assert listed(await page(client, "/console/feedback?region=east&csat=1")) == 13


async def test_comments_are_masked_and_their_markup_is_inert(client, seeded):
    await sign_in_as(client, "clerk")
    body = await page(client, "/console/feedback?branch=MAIN&counter=C1&from=2026-11-17&to=2026-11-17")

    assert listed(body) == 12
    assert "<script>alert" not in body
    assert "<img src=x" not in body
    assert str(escape(EVIL)) in body  # shown as text, every character of it
    assert PHONE not in body
    assert "Call me on [PHONE]" in body
    assert f'href="/console/cases/{seeded["case"]}"' in body
    assert "Waiting time" in body  # category names, in the reader's language


async def test_the_feedback_list_pages_and_refuses_malformed_filters(client, seeded):
    await sign_in_as(client, "root")
    first = await page(client, "/console/feedback?from=2026-09-01&to=2026-12-31")
    assert listed(first) == 48
    assert first.count('class="fb-item"') == 48

    await page(client, "/console/feedback?from=2026-13-01", status=400)
    await page(client, "/console/feedback?from=2026-11-02&to=2026-11-01", status=400)
    await page(client, "/console/feedback?csat=9", status=400)
    await page(client, "/console/feedback?counter=C1", status=400)
    await page(client, "/console/feedback?page=0", status=400)


async def test_the_audit_log_is_for_admins_only(client, seeded):
    for username in ("clerk", "central"):
        await sign_in_as(client, username)
        await page(client, "/console/audit", status=403)
        await page(client, "/console/audit.csv", status=403)
    await sign_in_as(client, "root")
    body = await page(client, "/console/audit")
    assert "staff.created" in body
    assert "staff.sign_in" in body


async def add_entries(db: Database, users: dict[str, int]) -> None:
    async with db.writing(), db.sessions() as session, session.begin():
        session.add_all([
            AuditEntry(at=local(11, 17, 9), actor_kind=ActorKind.STAFF, actor_id=users["clerk"], action="case.note",
                       target_type="case", target_id="=1+2", before={"status": "new"},
                       after={"status": "acknowledged", "note": EVIL}, remote_addr="127.0.0.1"),
            AuditEntry(at=local(11, 18, 9), actor_kind=ActorKind.STAFF, actor_id=users["central"],
                       action="ticket.resolved", target_type="ticket", target_id="7", before={"status": "open"},
                       after={"status": "resolved"}),
            AuditEntry(at=local(10, 1, 9), actor_kind=ActorKind.STAFF, actor_id=users["clerk"], action="case.resolved",
                       target_type="case", target_id="3", before={"status": "new"}, after={"status": "resolved"}),
        ])  # fmt: skip


async def test_audit_filters_show_who_did_what_with_before_and_after(client, db, users, seeded):
    await add_entries(db, users)
    await sign_in_as(client, "root")

    by_clerk = await page(client, "/console/audit?actor=Clerk&action=case.")
    assert by_clerk.count('<tr id="audit-') == 2
    assert "case.note" in by_clerk
    assert "case.resolved" in by_clerk
    assert "ticket.resolved" not in by_clerk
    assert "&lt;script&gt;" in by_clerk
    assert "<script>alert" not in by_clerk
    assert re.search(r'<tr class="changed"><th scope="row">status</th><td><code>&#34;new&#34;</code></td>'
                     r'<td><code>&#34;acknowledged&#34;</code>', by_clerk)  # fmt: skip
    in_november = await page(client, "/console/audit?from=2026-11-01&to=2026-11-30&target_type=case")
    assert in_november.count('<tr id="audit-') == 1
    assert "case.note" in in_november
    by_cli = await page(client, "/console/audit?kind=cli&action=staff.created")
    assert by_cli.count('<tr id="audit-') == 3


async def test_audit_export_holds_the_filtered_rows_with_formulas_neutralised(client, db, users, seeded):
    await add_entries(db, users)
    await sign_in_as(client, "root")

    response = await client.get("/console/audit.csv?target_type=case&actor=clerk")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "attachment" in response.headers["Content-Disposition"]
    text = (await response.read()).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["action"] for row in rows] == ["case.note", "case.resolved"]  # newest first
    note = rows[0]
    assert note["actor"] == "clerk"
    assert note["target_id"] == "'=1+2"
    assert note["at"] == "2026-11-17T09:00:00+08:00"
    assert '"note": "<script>' in note["after"]  # the file is data, not HTML: kept as written, but not as formula
    empty = await client.get("/console/audit.csv?actor=nobody")
    assert (await empty.read()).decode("utf-8-sig").strip() == (
        "id,at,actor_kind,actor,actor_id,action,target_type,target_id,before,after,remote_addr"
    )

    exports = list(csv.DictReader(io.StringIO((await (await client.get("/console/audit.csv?action=audit.")).read())
                                              .decode("utf-8-sig"))))  # fmt: skip
    assert [(row["actor"], row["action"]) for row in exports] == [("root", "audit.exported")] * 3  # this one too
    assert json.loads(exports[-1]["after"]) == {"filters": {"actor": "clerk", "target_type": "case"}}
    assert json.loads(exports[0]["after"]) == {"filters": {"action": "audit."}}


async def test_concurrent_requests_share_one_computation_until_it_is_stale():
    now = [0.0]
    results = SharedResults(ttl=300, size=2, clock=lambda: now[0])
    calls = []

    async def compute():
        calls.append(now[0])
        await asyncio.sleep(0.01)
        return len(calls)

    together = await asyncio.gather(*(results.get("MAIN", compute) for _ in range(5)))
    assert [value for value, _ in together] == [1] * 5
    assert len(calls) == 1
    now[0] = 299.0
    assert (await results.get("MAIN", compute))[0] == 1
    now[0] = 300.0
    assert (await results.get("MAIN", compute))[0] == 2
    await results.get("EAST", compute)
    await results.get("WEST", compute)  # a third key pushes out the oldest
    assert (await results.get("MAIN", compute))[0] == 5


async def test_warming_computes_ahead_of_requests_and_renews_behind_the_old_result():
    now = [0.0]
    results = SharedResults(ttl=300, size=4, stale_for=600, clock=lambda: now[0])
    calls = []

    async def compute():
        calls.append(now[0])
        await asyncio.sleep(0.01)
        return len(calls)

    await results.warm("MAIN", compute)
    await results.warm("MAIN", compute)  # fresh: left alone
    assert calls == [0.0]
    assert (await results.get("MAIN", compute))[0] == 1
    now[0] = 400.0  # stale, still servable: renewed, and the request after it gets the new one without waiting
    await results.warm("MAIN", compute)
    assert (await results.get("MAIN", compute))[0] == 2
    now[0] = 2000.0  # too old to show: computed again
    await results.warm("MAIN", compute)
    assert calls == [0.0, 400.0, 2000.0]
    assert len(results) == 1


async def test_each_active_users_default_dashboard_is_warmed_once_and_reused(client, seeded):
    figures = client.app[FIGURES]
    assert await warm_dashboards(client.app) == 3  # the bank, the central region, the MAIN branch
    assert len(figures) == 3
    await warm_dashboards(client.app)
    assert len(figures) == 3
    for username in USERS:
        await sign_in_as(client, username)
        await page(client, "/console/dashboard")
        assert len(figures) == 3  # the page used the warmed figures
    await sign_in_as(client, "root")
    await page(client, "/console/dashboard?scope=branch:EAST")  # a scope that is nobody's default
    assert len(figures) == 4


async def test_a_failed_computation_is_not_kept():
    results = SharedResults(ttl=300, size=2)
    attempts = []

    async def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("database went away")
        return "figures"

    with pytest.raises(ConnectionError):
        await results.get("MAIN", flaky)
    assert (await results.get("MAIN", flaky))[0] == "figures"


def test_chart_labels_and_links_are_escaped():
    svg = str(bar_chart([Mark("<b>Queue</b>", 40.0, "40% & more", "/console/feedback?category=a&page=2")], title="<x>"))
    assert "<b>" not in svg
    assert "&lt;b&gt;Queue&lt;/b&gt;" in svg
    assert "40% &amp; more" in svg
    assert 'href="/console/feedback?category=a&amp;page=2"' in svg
    assert "<title>&lt;x&gt;</title>" in svg
    line = str(line_chart([Mark("W1", 50.0, "50%", "/a"), Mark("W2", None, "hidden"), Mark("W3", 70.0, "70%", "/b")],
                          title="t", low=0.0, high=100.0))  # fmt: skip
    assert line.count("<circle") == 2
    assert "<polyline" not in line
