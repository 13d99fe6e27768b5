"""Console sign-in through the real app factory: sessions, CSRF, lock-out, audit, CLI; SQLite and PostgreSQL.

The app is config.app.create_app with web.console.add_console_routes called on it, as config/app.py will do.
Argon2 runs with tiny cost parameters here (the `cheap_hashing` fixture): the parameters are the only thing changed.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import click
import pytest
from aiohttp import web
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from sqlalchemy import delete, func, select, update
from yarl import URL

from config.app import create_app, load_catalog
from config.settings import Settings, load_settings
from config.staff_commands import staff
from store import Database
from store.models import ActorKind, AuditEntry, Branch, ScopeKind, StaffRole, StaffSession, StaffUser, utcnow
from store.staff import (
    Actor,
    NewUser,
    count_users,
    create_user,
    end_user_sessions,
    find_session,
    find_user,
    hash_token,
    start_session,
)
from web import passwords
from web.auth import SECURE_COOKIES, ensure_first_admin, require_branch, require_role
from web.console import add_console_routes
from web.keys import DATABASE

PASSWORD = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
WRONG = "Wrong username or password."
LATER = "try again later"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "HASHER", CHEAP)


def settings_for(database_url: str, tmp_path: Path, **extra: str) -> Settings:
    environ = {"CLOSELOOP_DATABASE_URL": database_url, "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
               "CLOSELOOP_NLP_WORKER": "false"} | extra  # fmt: skip
    return load_settings(environ)


async def admin_only(request):
    return web.Response(text=f"hello {require_role(request, StaffRole.ADMIN).username}")


async def east_branch(request):
    async with request.app[DATABASE].sessions() as session:
        branch = await session.scalar(select(Branch).where(Branch.code == "EAST"))
    return web.Response(text=f"east for {require_branch(request, branch).username}")


def console_app(settings: Settings):
    app = create_app(settings, load_catalog(settings))
    if SECURE_COOKIES not in app:  # until config/app.py registers the console itself
        add_console_routes(app, secure_cookies=settings.public_url.startswith("https://"))
    # Two pages a later console page would be: they exercise the role and scope guards through the real middleware.
    app.router.add_get("/console/test/admin", admin_only)
    app.router.add_get("/console/test/east", east_branch)
    return app


@pytest.fixture
async def client(aiohttp_client, database_url, tmp_path):
    return await aiohttp_client(console_app(settings_for(database_url, tmp_path)))


@pytest.fixture
def db(client) -> Database:
    """The app's own database: migrated, with the branches of config/branches.toml (MAIN in central, EAST in east)."""
    return client.app[DATABASE]


async def add_user(db: Database, username: str = "alice", *, role=StaffRole.MANAGER,
                   scope=(ScopeKind.REGION, "central"), name="Alice Li", password=PASSWORD) -> StaffUser:  # fmt: skip
    new = NewUser(username, name, role, scope[0], scope[1], passwords.hash_password(password))
    return await create_user(db, new, actor=Actor(ActorKind.CLI))


async def login_form(client, path: str = "/console/login", headers=None) -> str:
    response = await client.get(path, headers=headers)
    assert response.status == 200
    return CSRF.search(await response.text()).group(1)


async def sign_in(client, username="alice", password=PASSWORD, *, next_path=None, follow=True):
    fields = {"csrf": await login_form(client), "username": username, "password": password}
    if next_path is not None:
        fields["next"] = next_path
    return await client.post("/console/login", data=fields, allow_redirects=follow)


def session_token(client) -> str | None:
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/console")).get("closeloop_staff")
    return cookie.value if cookie else None


async def home_csrf(client) -> str:
    response = await client.get("/console")
    return CSRF.search(await response.text()).group(1)


async def audit(db: Database) -> list[AuditEntry]:
    async with db.sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def reload(db: Database, user_id: int) -> StaffUser:
    async with db.sessions() as session:
        return await session.get(StaffUser, user_id)


async def test_sign_in_shows_who_is_signed_in_and_sign_out_ends_the_session(client, db):
    alice = await add_user(db)
    response = await sign_in(client)

    assert response.status == 200
    assert str(response.url.path) == "/console/cases"  # the console opens on the case queue
    assert "Signed in as Alice Li (manager, region central)" in await response.text()
    token = session_token(client)
    assert token
    assert await find_session(db, token, now=utcnow(), idle=timedelta(hours=1))
    assert (await reload(db, alice.id)).last_login_at is not None

    out = await client.post("/console/logout", data={"csrf": await home_csrf(client)})
    assert str(out.url.path) == "/console/login"
    assert "You have signed out." in await out.text()
    assert session_token(client) is None
    assert await find_session(db, token, now=utcnow(), idle=timedelta(hours=1)) is None
    home = await client.get("/console", allow_redirects=False)
    assert (home.status, home.headers["Location"]) == (303, "/console/login")
    entries = [(e.action, e.actor_kind, e.actor_id, e.target_id, e.remote_addr) for e in await audit(db)]
    assert entries[-2:] == [
        ("staff.sign_in", ActorKind.STAFF, alice.id, str(alice.id), "127.0.0.1"),
        ("staff.sign_out", ActorKind.STAFF, alice.id, str(alice.id), "127.0.0.1"),
    ]


async def test_wrong_password_and_unknown_user_get_the_same_answer_and_are_audited(client, db):
    alice = await add_user(db)
    wrong = await sign_in(client, password="not the password")
    unknown = await sign_in(client, username="mallory", password="hunter2hunter2")

    for response in (wrong, unknown):
        page = await response.text()
        assert response.status == 200
        assert WRONG in page
        assert LATER not in page
        assert session_token(client) is None
    assert (await reload(db, alice.id)).failed_logins == 1
    failed = [(e.action, e.actor_kind, e.target_id, e.after) for e in await audit(db)][-2:]
    assert failed == [
        ("staff.sign_in_failed", ActorKind.SYSTEM, str(alice.id), {"reason": "wrong_password"}),
        ("staff.sign_in_failed", ActorKind.SYSTEM, None, {"reason": "unknown_user"}),
    ]
    trail = repr([(e.before, e.after, e.target_id) for e in await audit(db)])
    assert "not the password" not in trail
    assert "hunter2" not in trail
    assert "mallory" not in trail


async def test_five_wrong_passwords_lock_the_account_until_the_lock_ends(client, db):
    alice = await add_user(db)
    for attempt in range(1, 6):
        page = await (await sign_in(client, password=f"wrong password {attempt}")).text()
        assert WRONG in page
        assert (LATER in page) is (attempt == 5)

    locked = await reload(db, alice.id)
    assert locked.locked_until - utcnow() > timedelta(minutes=14)
    refused = await (await sign_in(client)).text()
    assert WRONG in refused
    assert LATER in refused
    assert session_token(client) is None
    actions = [e.action for e in await audit(db)]
    assert actions.count("staff.locked_out") == 1
    assert actions[-1] == "staff.sign_in_failed"

    async with db.sessions.begin() as session:  # fifteen minutes later
        await session.execute(update(StaffUser).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert "Signed in as Alice Li" in await (await sign_in(client)).text()
    after = await reload(db, alice.id)
    assert (after.failed_logins, after.locked_until) == (0, None)


async def test_a_successful_sign_in_resets_the_count_of_failures(client, db):
    alice = await add_user(db)
    for _ in range(4):
        await sign_in(client, password="wrong password")
    await sign_in(client)
    assert (await reload(db, alice.id)).failed_logins == 0
    await client.post("/console/logout", data={"csrf": await home_csrf(client)})
    for _ in range(4):
        page = await (await sign_in(client, password="wrong password")).text()
    assert LATER not in page
    assert (await reload(db, alice.id)).locked_until is None


async def test_forms_without_their_csrf_token_get_403(client, db):
    await add_user(db)
    good = await login_form(client)
    for fields in ({}, {"csrf": "x" * 43}, {"csrf": ""}):
        response = await client.post("/console/login", data={"username": "alice", "password": PASSWORD, **fields})
        assert response.status == 403
        assert "This form has expired" in await response.text()
    assert session_token(client) is None
    client.session.cookie_jar.clear()  # the right token, but not the cookie it must match
    response = await client.post("/console/login", data={"csrf": good, "username": "alice", "password": PASSWORD})
    assert response.status == 403

    before = await login_form(client)
    await sign_in(client)
    token = session_token(client)
    # The sign-in form's pre-session token does not stand in for the session's own, even with its cookie back.
    client.session.cookie_jar.update_cookies({"closeloop_staff_csrf": before}, client.make_url("/console"))
    for fields in ({}, {"csrf": "x" * 43}, {"csrf": before}):
        response = await client.post("/console/logout", data=fields, allow_redirects=False)
        assert response.status == 403
    assert session_token(client) == token
    assert (await client.get("/console")).status == 200
    response = await client.post("/console/logout", headers={"X-CSRF-Token": await home_csrf(client)})
    assert str(response.url.path) == "/console/login"
    assert session_token(client) is None


async def test_a_session_id_does_not_survive_sign_in(client, db):
    await add_user(db)
    await add_user(db, "bob", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "EAST"), name="Bob")
    planted = "A" * 43  # what an attacker could have put into the victim's browser
    client.session.cookie_jar.update_cookies({"closeloop_staff": planted}, client.make_url("/console"))
    await sign_in(client)
    first = session_token(client)
    assert first not in (None, planted)

    await sign_in(client, "bob")  # signing in again (another user), with a live session in the browser
    second = session_token(client)
    assert second not in (None, first)
    assert await find_session(db, first, now=utcnow(), idle=timedelta(hours=1)) is None
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(StaffSession)) == 1
        assert await session.scalar(select(StaffSession.id)) == hash_token(second)


async def test_session_cookie_flags(client, db):
    await add_user(db)
    response = await sign_in(client, follow=False)
    assert (response.status, response.headers["Location"]) == (303, "/console")
    morsel = response.cookies["closeloop_staff"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/console"
    assert int(morsel["max-age"]) == 12 * 3600
    assert not morsel["secure"], "the public URL is plain http here"
    assert len(morsel.value) == 43


async def test_cookies_are_secure_behind_an_https_public_url(aiohttp_client, database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, CLOSELOOP_HTTP_PUBLIC_URL="https://feedback.example-bank.cn")
    client = await aiohttp_client(console_app(settings))
    await add_user(client.app[DATABASE])
    page = await client.get("/console/login")
    assert page.cookies["closeloop_staff_csrf"]["secure"] is True
    csrf = CSRF.search(await page.text()).group(1)
    # The jar holds the secure cookie back over plain http, as a browser would; send it by hand.
    client.session.cookie_jar.clear()
    response = await client.post("/console/login", data={"csrf": csrf, "username": "alice", "password": PASSWORD},
                                 headers={"Cookie": f"closeloop_staff_csrf={csrf}"}, allow_redirects=False)  # fmt: skip
    assert response.status == 303
    assert response.cookies["closeloop_staff"]["secure"] is True


async def test_markup_in_a_display_name_renders_inert(client, db):
    await add_user(db, name='<script>alert("x")</script><b>Eve</b>')
    page = await (await sign_in(client)).text()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;Eve&lt;/b&gt;" in page
    assert "<script" not in page
    assert "<b>" not in page


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example/console", "/\\evil.example", "///evil.example", "/console/../x",
     "javascript:alert(1)", "/c/MAIN", "/console/login", "/console\r\nSet-Cookie: a=b"],
)  # fmt: skip
async def test_an_unsafe_next_goes_to_the_console_home(client, db, target):
    await add_user(db)
    response = await sign_in(client, next_path=target, follow=False)
    assert (response.status, response.headers["Location"]) == (303, "/console")


async def test_a_signed_out_visit_returns_to_the_page_after_sign_in(client, db):
    await add_user(db)
    response = await client.get("/console/cases?status=new", allow_redirects=False)
    assert response.status == 303
    location = URL(response.headers["Location"])
    assert (location.path, location.query["next"]) == ("/console/login", "/console/cases?status=new")
    page = await (await client.get(response.headers["Location"])).text()
    assert 'name="next" value="/console/cases?status=new"' in page
    signed_in = await sign_in(client, next_path="/console/cases?status=new", follow=False)
    assert signed_in.headers["Location"] == "/console/cases?status=new"
    assert (await client.get("/console/cases")).status == 200  # signed in now


async def test_a_deactivated_or_deleted_users_session_stops_working(client, db):
    alice = await add_user(db)
    await sign_in(client)
    async with db.sessions.begin() as session:
        await session.execute(update(StaffUser).where(StaffUser.id == alice.id).values(is_active=False))
    response = await client.get("/console", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/console/login")
    assert WRONG in await (await sign_in(client)).text()  # and it cannot sign in again
    assert [e.after for e in await audit(db)][-1] == {"reason": "inactive"}

    bob = await add_user(db, "bob")
    await sign_in(client, "bob")
    async with db.sessions.begin() as session:
        await session.execute(delete(StaffUser).where(StaffUser.id == bob.id))
    assert (await client.get("/console", allow_redirects=False)).status == 303
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(StaffSession)) == 0


async def test_every_console_answer_carries_the_security_headers(client, db):
    await add_user(db)
    answers = [await client.get("/console/login"), await client.get("/console", allow_redirects=False),
               await client.post("/console/logout", allow_redirects=False)]  # fmt: skip
    await sign_in(client)
    answers.append(await client.get("/console"))
    assert [a.status for a in answers] == [200, 303, 403, 200]
    for answer in answers:
        csp = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Cache-Control"] == "no-store"
    css = await client.get("/console/static/console.css")
    assert (css.status, css.content_type) == (200, "text/css")
    assert (await client.get("/console/static/..%2Fauth.py")).status == 404


async def test_chinese_from_the_browser_and_from_the_language_switch(client, db):
    await add_user(db)
    page = await (await client.get("/console/login", headers=ZH)).text()
    assert '<html lang="zh-CN">' in page
    assert "登录" in page
    assert "Sign in" in await (await client.get("/console/login")).text()

    switched = await client.get("/console/language?set=zh&next=%2Fconsole%2Flogin%3Fnext%3D%252Fconsole%252Fx")
    assert switched.url.path == "/console/login"
    assert switched.url.query["next"] == "/console/x"
    assert "用户名" in await switched.text()
    assert "用户名或密码错误。" in await (await sign_in(client, password="wrong password")).text()
    home = await (await sign_in(client)).text()
    assert "当前用户：Alice Li（经理，central 区域）" in home
    assert "退出登录" in home


async def test_roles_and_scopes_guard_later_pages(client, db):
    await add_user(db, "root", role=StaffRole.ADMIN, scope=(ScopeKind.ALL, None), name="Root")
    await add_user(db)  # a manager of region central: MAIN, not EAST
    await sign_in(client)
    for path in ("/console/test/admin", "/console/test/east"):
        response = await client.get(path)
        assert response.status == 403
        assert "Your role does not give access to this page." in await response.text()
    await sign_in(client, "root")
    assert await (await client.get("/console/test/admin")).text() == "hello root"
    assert await (await client.get("/console/test/east")).text() == "east for root"


async def test_an_old_hash_is_replaced_at_sign_in(client, db):
    old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash(PASSWORD)
    alice = await create_user(db, NewUser("alice", "Alice", StaffRole.STAFF, ScopeKind.BRANCH, "MAIN", old),
                              actor=Actor(ActorKind.CLI))  # fmt: skip
    await sign_in(client)
    renewed = (await reload(db, alice.id)).password_hash
    assert renewed != old
    assert "$m=8,t=1,p=1$" in renewed
    assert [e.after for e in await audit(db) if e.action == "staff.sign_in"] == [{"rehashed": True}]


async def test_sessions_end_when_idle_at_their_absolute_end_and_all_at_once(client, db):
    alice = await add_user(db)
    now, idle, day = utcnow(), timedelta(hours=1), timedelta(hours=12)
    issued = await start_session(db, alice.id, now=now, lifetime=day, idle=idle, remote_addr=None)
    assert await find_session(db, issued.token, now=now + timedelta(minutes=50), idle=idle)
    assert await find_session(db, issued.token, now=now + timedelta(minutes=100), idle=idle), "use slides the end"
    assert await find_session(db, issued.token, now=now + timedelta(minutes=161), idle=idle) is None

    busy = await start_session(db, alice.id, now=now, lifetime=day, idle=idle, remote_addr=None)
    for minutes in range(50, 12 * 60, 50):
        assert await find_session(db, busy.token, now=now + timedelta(minutes=minutes), idle=idle)
    assert await find_session(db, busy.token, now=now + day, idle=idle) is None

    tokens = [(await start_session(db, alice.id, now=now, lifetime=day, idle=idle, remote_addr=None)).token
              for _ in range(2)]  # fmt: skip
    assert await end_user_sessions(db, alice.id) == 2
    assert [await find_session(db, t, now=now, idle=idle) for t in tokens] == [None, None]


async def test_first_admin_is_created_once_and_can_sign_in(client, db):
    first, second = await asyncio.gather(ensure_first_admin(db), ensure_first_admin(db))
    passwords_made = [p for p in (first, second) if p]
    assert len(passwords_made) == 1, "two processes starting at once make one admin"
    assert len(passwords_made[0]) == 16
    assert await ensure_first_admin(db) is None
    assert await count_users(db) == 1
    admin = await find_user(db, "admin")
    assert (admin.role, admin.scope_kind, admin.scope_value) == (StaffRole.ADMIN, ScopeKind.ALL, None)
    assert (
        "Signed in as Administrator (administrator, all branches)"
        in await (await sign_in(client, "admin", passwords_made[0])).text()
    )


# --- closeloop staff ... ---

COMMANDS = click.Group("closeloop", commands=[staff])


@pytest.fixture
def cli_settings(db, database_url, tmp_path) -> Settings:
    return settings_for(database_url, tmp_path)


async def run(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    """Invoke the commands in a thread: they run their own event loop, as from a shell."""
    return await asyncio.to_thread(CliRunner().invoke, COMMANDS, list(args), obj=settings, input=stdin)


async def test_staff_add_reads_the_password_from_stdin_and_audits(cli_settings, db):
    result = await run(cli_settings, "staff", "add", "--username", "Wang.Li", "--role", "manager", "--scope",
                       "region:central", "--name", "王丽", "--password-stdin", stdin=f"{PASSWORD}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "added wang.li (manager, region central)" in result.output
    user = await find_user(db, "wang.li")
    assert (user.display_name, user.role, user.scope_kind, user.scope_value) == (
        "王丽", StaffRole.MANAGER, ScopeKind.REGION, "central")  # fmt: skip
    assert user.password_hash.startswith("$argon2id$")
    assert passwords.check_password(user.password_hash, PASSWORD).is_match
    [entry] = await audit(db)
    assert (entry.action, entry.actor_kind, entry.target_id) == ("staff.created", ActorKind.CLI, str(user.id))
    assert PASSWORD not in repr(entry.after)
    assert "argon2" not in repr(entry.after)


async def test_staff_add_prompts_twice_without_echo(cli_settings, db):
    result = await run(cli_settings, "staff", "add", "--username", "bob", "--role", "staff", "--scope", "branch:EAST",
                       stdin=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "Repeat for confirmation" in result.output
    assert (await find_user(db, "bob")).display_name == "bob"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--scope", "branch:NOWHERE"], PASSWORD, "unknown branch 'NOWHERE'"),
        (["--scope", "region:west"], PASSWORD, "unknown region 'west'"),
        (["--scope", "somewhere"], PASSWORD, "expected branch:CODE"),
        (["--scope", "branch:MAIN", "--role", "admin"], PASSWORD, "role admin needs scope all"),
        (["--scope", "region:central", "--role", "staff"], PASSWORD, "role staff needs scope branch"),
        (["--scope", "branch:MAIN"], "too short", "at least 10 characters"),
        (["--scope", "branch:MAIN"], " " * 12, "must not be blank"),
        (["--scope", "branch:MAIN", "--username", "no spaces"], PASSWORD, "use 1-64 letters"),
    ],
)
async def test_staff_add_refuses_bad_input_with_exit_2(cli_settings, db, args, stdin, message):
    options = {"--username": "carol", "--role": "staff"}
    for name, value in zip(args[::2], args[1::2], strict=True):
        options[name] = value
    result = await run(cli_settings, "staff", "add", *[x for pair in options.items() for x in pair],
                       "--password-stdin", stdin=stdin + "\n")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert await count_users(db) == 0


async def test_staff_add_refuses_a_taken_username_whatever_its_case(cli_settings, db):
    await add_user(db, "carol")
    result = await run(cli_settings, "staff", "add", "--username", "Carol", "--role", "admin", "--scope", "all",
                       "--password-stdin", stdin=PASSWORD)  # fmt: skip
    assert result.exit_code == 2
    assert "username 'carol' is taken" in result.output


async def test_staff_list_and_reset_password_which_unlocks_and_signs_out(cli_settings, db):
    alice = await add_user(db, name="Alice \x1b[31mLi")
    now = utcnow()
    await start_session(db, alice.id, now=now, lifetime=timedelta(hours=1), idle=timedelta(hours=1),
                        remote_addr=None)  # fmt: skip
    async with db.sessions.begin() as session:
        until = utcnow() + timedelta(minutes=10)
        await session.execute(update(StaffUser).values(failed_logins=3, locked_until=until))
    listing = await run(cli_settings, "staff", "list")
    assert listing.exit_code == 0
    assert listing.output.startswith("alice\tmanager\tregion:central\tlocked until ")
    assert "\x1b" not in listing.output

    result = await run(cli_settings, "staff", "reset-password", "--username", "ALICE", "--password-stdin",
                       stdin="a brand new password\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    after = await reload(db, alice.id)
    assert (after.failed_logins, after.locked_until) == (0, None)
    assert passwords.check_password(after.password_hash, "a brand new password").is_match
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(StaffSession)) == 0
    entry = (await audit(db))[-1]
    assert (entry.action, entry.actor_kind, entry.after["sessions_ended"]) == ("staff.password_reset", ActorKind.CLI, 1)
    assert (await run(cli_settings, "staff", "list")).output.endswith(
        "\tactive\t" + f"{now:%Y-%m-%d %H:%M} UTC\tAlice Li\n"
    )


async def test_reset_password_of_an_unknown_user_exits_2(cli_settings):
    result = await run(cli_settings, "staff", "reset-password", "--username", "nobody", "--password-stdin",
                       stdin=PASSWORD)  # fmt: skip
    assert result.exit_code == 2
    assert "no staff user 'nobody'" in result.output
