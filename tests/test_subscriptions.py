"""Who receives case alerts and digests: CLI invites (a staff group too), e-mail from the CLI or the subscriptions file.

The product runs as in tests/test_telegram.py (create_app, real python-telegram-bot against the Bot API stand-in),
alerts go through the real AlertDispatcher and Notifier to that stand-in and to aiosmtpd on loopback, and the CLI
runs as `closeloop manager ...` does; SQLite and PostgreSQL both.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import Result
from sqlalchemy import select
from support.server import CLOSELOOP, free_port, server_env
from test_cases import dispatcher, open_case
from test_delivery_mail import Inbox, smtp_server
from test_digest_cli import run
from test_telegram import TOKEN, Customer, Product, run_product

from config.app import branch_specs, create_app, load_catalog
from config.branches import load_branches
from config.errors import ConfigError
from config.settings import PACKAGE_DIR, Settings, load_settings
from config.subscriptions import load_subscriptions, sync_subscriptions
from reporting.delivery import TelegramSender
from store import Database, sync_branches
from store.models import AuditEntry, Subscription, SubscriptionPurpose
from store.subscriptions import redeem_invite

BRANCHES = load_branches(PACKAGE_DIR / "branches.toml")  # MAIN in region "central", EAST in region "east"
ALERTS, DIGEST = SubscriptionPurpose.CASE_ALERT, SubscriptionPurpose.DIGEST
CALL_ME = "Someone scammed me at the ATM, call me on 13800138000"


@pytest.fixture(params=["polling", "webhook"])
async def product(request, api, database_url, tmp_path) -> AsyncIterator[Product]:
    async for running in run_product(api, database_url, tmp_path, webhook=request.param == "webhook"):
        yield running


@pytest.fixture
async def branches(db: Database) -> Database:
    """The database with the packaged branches file synchronised, as `closeloop run` leaves it."""
    await sync_branches(db, branch_specs(BRANCHES))
    return db


def cli_settings(database_url: str, tmp_path: Path, **extra: str) -> Settings:
    environ = {"CLOSELOOP_DATABASE_URL": database_url, "CLOSELOOP_DATA_DIR": str(tmp_path / "cli"),
               "CLOSELOOP_TELEGRAM_USERNAME": "closeloop_test_bot"} | extra  # fmt: skip
    return load_settings(environ)


async def manager(settings: Settings, *args: str) -> Result:
    return await run(settings, "manager", *args)


async def subscriptions(database_url: str) -> list[Subscription]:
    database = Database(database_url)
    try:
        async with database.sessions() as session:
            return list(await session.scalars(select(Subscription).order_by(Subscription.id)))
    finally:
        await database.dispose()


# Telegram invites


async def test_an_alerts_invite_redeemed_in_the_staff_group_brings_new_cases_there(product, tmp_path):
    settings = cli_settings(product.database_url, tmp_path)
    result = await manager(settings, "invite", "--scope", "branch:MAIN", "--purpose", "alerts")
    assert result.exit_code == 0, result.output
    link, group_line = result.output.splitlines()
    payload = link.partition("?start=")[2]
    assert payload.startswith("mgr-")
    assert f"https://t.me/closeloop_test_bot?startgroup={payload}" in group_line

    await product.api.user_sends_text(620, f"/start@closeloop_test_bot {payload}", chat_type="group")
    [welcome] = await product.api.wait_for_messages(-620, 1)

    assert welcome.text == "Done! New-case alerts for branch MAIN will arrive here in this chat."
    [row] = await subscriptions(product.database_url)
    assert (row.purpose, row.address, row.invite_code, row.source) == (ALERTS, "-620", None, "invite")
    database = Database(product.database_url)
    try:
        case_id = await open_case(database)
        # The product's own case jobs send alerts every few seconds; a dispatcher here sends it now. Either one
        # claims the alert, never both.
        async with TelegramSender(TOKEN, api_url=product.api.base_url) as telegram:
            await dispatcher(database, telegram=telegram).dispatch_once()
    finally:
        await database.dispose()
    _, alert = await product.api.wait_for_messages(-620, 2, timeout=10)
    assert f"New case #{case_id}" in alert.text
    assert "Main Street Branch (MAIN)" in alert.text


async def test_an_alerts_invite_in_a_private_chat_is_confirmed_in_chinese(product, tmp_path):
    settings = cli_settings(product.database_url, tmp_path, CLOSELOOP_TELEGRAM_USERNAME="")
    result = await manager(settings, "invite", "--scope", "region:east", "--purpose", "alerts", "--language", "zh")
    assert result.exit_code == 0, result.output
    assert "in a private chat or the staff group: /start mgr-" in result.output
    code = result.output.split("/start ")[1].split()[0]

    [welcome] = await Customer(product.api, 621, language="zh-hans").says(f"/start {code}")

    assert welcome == "设置完成！区域「east」的新工单提醒将发送到此对话。"
    [row] = await subscriptions(product.database_url)
    assert (row.purpose, row.address, row.language) == (ALERTS, "621", "zh")


async def test_a_digest_invite_is_refused_in_a_group_and_an_unknown_code_is_invalid(product, tmp_path):
    result = await manager(cli_settings(product.database_url, tmp_path), "invite", "--scope", "all")
    payload = result.output.strip().partition("?start=")[2]

    await product.api.user_sends_text(622, f"/start {payload}", chat_type="group")
    [refusal] = await product.api.wait_for_messages(-622, 1)
    await product.api.user_sends_text(622, "/start mgr-no-such-code", chat_type="group")
    _, invalid = await product.api.wait_for_messages(-622, 2)

    assert refusal.text == (
        "A digest invite works in a private chat only: please open the link in a private chat with me. "
        "(Group chats can take case-alert invites.)"
    )
    assert invalid.text == "This invite link is not valid or was already used; ask for a new one."
    [row] = await subscriptions(product.database_url)
    assert (row.purpose, row.address, row.invite_code) == (DIGEST, None, payload.removeprefix("mgr-"))


# e-mail from the CLI


async def test_an_email_added_for_alerts_gets_the_new_case_mail_and_a_digest_address_does_not(
    branches, database_url, tmp_path
):
    settings = cli_settings(database_url, tmp_path)
    alerts = await manager(settings, "add-email", "--scope", "region:central", "--email", "ops@bank.example",
                           "--purpose", "alerts", "--language", "zh")  # fmt: skip
    digest = await manager(settings, "add-email", "--scope", "branch:MAIN", "--email", "boss@bank.example")
    assert alerts.exit_code == digest.exit_code == 0, alerts.output + digest.output
    assert alerts.output.strip().endswith("ops@bank.example gets case alerts of region:central")
    case_id = await open_case(branches, CALL_ME)
    inbox = Inbox()

    async with smtp_server(inbox) as port:
        assert await dispatcher(branches, smtp_port=port).dispatch_once() == 1

    [mail] = inbox.messages()
    assert mail["To"] == "ops@bank.example"
    assert f"新工单 #{case_id}" in mail["Subject"]
    body = mail.get_body(("plain",)).get_content()
    assert "Someone scammed me at the ATM" in body
    assert "13800138000" not in body, "the phone number is masked before it leaves"


# the subscriptions file


def write_file(path: Path, *entries: str) -> Path:
    path.write_text("# subscriptions\n" + "".join(f"\n[[email]]\n{entry}\n" for entry in entries), encoding="utf-8")
    return path


def entry(address: str, scope: str, purpose: str, language: str = "en") -> str:
    return f'address = "{address}"\nscope = "{scope}"\npurpose = "{purpose}"\nlanguage = "{language}"'


async def start_and_stop(settings: Settings) -> None:
    """Start the product once (the subscriptions file is synchronised at start), then stop it."""
    runner = web.AppRunner(create_app(settings, load_catalog(settings)), access_log=None)
    await runner.setup()
    await runner.cleanup()


def state(rows: list[Subscription]) -> list[tuple]:
    return [(r.id, r.address, str(r.purpose), f"{r.scope_kind}:{r.scope_value}", r.language, r.is_active, r.source)
            for r in rows]  # fmt: skip


async def test_the_file_is_synchronised_at_start_and_never_touches_cli_rows(database_url, tmp_path):
    path = tmp_path / "subscriptions.toml"
    settings = cli_settings(database_url, tmp_path, CLOSELOOP_FILES_SUBSCRIPTIONS=str(path),
                            CLOSELOOP_NLP_WORKER="false")  # fmt: skip
    north = entry("North@bank.example", "region:east", "digest")
    main = entry("main@bank.example", "branch:MAIN", "alerts")
    write_file(path, north, main)
    await start_and_stop(settings)
    cli = await manager(settings, "add-email", "--scope", "branch:MAIN", "--email", "main@bank.example",
                        "--purpose", "alerts")  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert state(await subscriptions(database_url)) == [
        (1, "North@bank.example", "digest", "region:east", "en", True, "file"),
        (2, "main@bank.example", "case_alert", "branch:MAIN", "en", True, "file"),
        (3, "main@bank.example", "case_alert", "branch:MAIN", "en", True, "cli"),
    ]

    write_file(path, entry("north@bank.example", "region:east", "digest", "zh"), entry("all@bank.example", "all",
               "alerts"))  # fmt: skip
    await start_and_stop(settings)
    assert state(await subscriptions(database_url)) == [
        (1, "north@bank.example", "digest", "region:east", "zh", True, "file"),
        (2, "main@bank.example", "case_alert", "branch:MAIN", "en", False, "file"),
        (3, "main@bank.example", "case_alert", "branch:MAIN", "en", True, "cli"),
        (4, "all@bank.example", "case_alert", "all:None", "en", True, "file"),
    ]

    write_file(path, main)
    await start_and_stop(settings)
    assert [(r.id, r.is_active) for r in await subscriptions(database_url)] == [
        (1, False),
        (2, True),  # the same row back, not a new one
        (3, True),
        (4, False),
    ]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("not-an-address", "all", "digest")], "key email[0].address: not an e-mail address: 'not-an-address'"),
        ([entry("a@b.cn, c@d.cn", "all", "digest")], "key email[0].address: not an e-mail address"),
        ([entry("a@b.cn", "country:CN", "digest")], "key email[0].scope: 'country:CN': expected branch:CODE"),
        ([entry("a@b.cn", "all", "weekly")], "key email[0].purpose: Input should be 'digest' or 'alerts'"),
        ([entry("a@b.cn", "all", "digest", "fr")], "key email[0].language: Input should be 'en' or 'zh'"),
        (['adress = "a@b.cn"\nscope = "all"\npurpose = "digest"'], "key email[0].adress: unknown key"),
        (
            [entry("a@b.cn", "branch:MAIN", "alerts"), entry("A@b.cn", "branch: MAIN", "alerts", "zh")],
            "duplicate e-mail subscriptions: a@b.cn (alerts, branch:MAIN)",
        ),
        (
            [entry("a@b.cn", "all", "digest"), entry("a@b.cn", "branch:main", "alerts")],
            "key email[1] (a@b.cn).scope: unknown branch 'main' (the branches file has: EAST, MAIN)",
        ),
        (
            [entry("a@b.cn", "region:West", "digest")],
            "key email[0] (a@b.cn).scope: unknown region 'West' (the branches file has: central, east)",
        ),
    ],
)
def test_a_wrong_entry_is_named_with_its_file(tmp_path, entries, message):
    path = write_file(tmp_path / "subscriptions.toml", *entries)
    with pytest.raises(ConfigError) as error:
        load_subscriptions(path, BRANCHES)
    assert f"{path}: {message}" in str(error.value)


def test_the_packaged_file_holds_examples_only():
    assert load_subscriptions(PACKAGE_DIR / "subscriptions.toml", BRANCHES).email == ()
    assert '# address = "main.branch@bank.example"' in (PACKAGE_DIR / "subscriptions.toml").read_text()


def test_a_wrong_file_stops_closeloop_run_with_exit_2_before_the_database(tmp_path):
    path = write_file(tmp_path / "subscriptions.toml", entry("a@b.cn", "region:Atlantis", "alerts"))
    env = server_env(tmp_path, free_port()) | {"CLOSELOOP_FILES_SUBSCRIPTIONS": str(path)}

    done = subprocess.run([CLOSELOOP, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert done.returncode == 2, done.stderr
    assert f"closeloop: {path}: key email[0] (a@b.cn).scope: unknown region 'Atlantis'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "closeloop.db").exists()


def test_a_wrong_file_fails_closeloop_config_check_with_exit_2(tmp_path):
    path = write_file(tmp_path / "subscriptions.toml", entry("a@b.cn", "all", "alerts"), entry("a@b.cn", "all",
                      "alerts"))  # fmt: skip
    env = server_env(tmp_path, free_port()) | {"CLOSELOOP_FILES_SUBSCRIPTIONS": str(path)}

    done = subprocess.run([CLOSELOOP, "config", "check"], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 2, done.stdout
    assert f"closeloop: {path}: duplicate e-mail subscriptions: a@b.cn (alerts, all)" in done.stderr


# listing and removing


async def test_manager_list_shows_where_each_subscription_goes_and_remove_deactivates_with_an_audit_entry(
    branches, database_url, tmp_path
):
    settings = cli_settings(database_url, tmp_path, CLOSELOOP_FILES_SUBSCRIPTIONS=str(tmp_path / "subs.toml"))
    group_invite = await manager(settings, "invite", "--scope", "branch:MAIN", "--purpose", "alerts")
    await manager(settings, "invite", "--scope", "all", "--language", "zh")
    await manager(settings, "add-email", "--scope", "region:east", "--email", "east@bank.example")
    await redeem_invite(branches, group_invite.output.splitlines()[0].partition("?start=")[2], -4242)
    path = write_file(tmp_path / "subs.toml", entry("file@bank.example", "all", "alerts"))
    await sync_subscriptions(branches, load_subscriptions(path, BRANCHES), path)

    listing = await manager(settings, "list")

    assert listing.exit_code == 0, listing.output
    assert [line.split() for line in listing.output.splitlines()] == [
        ["ID", "PURPOSE", "CHANNEL", "ADDRESS", "SCOPE", "LANG", "STATE", "SOURCE"],
        ["1", "alerts", "telegram", "-4242", "(group)", "branch:MAIN", "en", "active", "invite"],
        ["2", "digest", "telegram", "(invite", "pending)", "all", "zh", "pending", "invite"],
        ["3", "digest", "email", "east@bank.example", "region:east", "en", "active", "cli"],
        ["4", "alerts", "email", "file@bank.example", "all", "en", "active", "file"],
    ]

    removed = await manager(settings, "remove", "3")
    pending_removed = await manager(settings, "remove", "2")
    again = await manager(settings, "remove", "3")
    from_file = await manager(settings, "remove", "4")
    unknown = await manager(settings, "remove", "99")

    assert (removed.exit_code, removed.output.strip()) == (0, "subscription 3 removed")
    assert (pending_removed.exit_code, again.output.strip()) == (0, "subscription 3 was inactive already")
    assert from_file.exit_code == unknown.exit_code == 2
    assert f"subscription 4 comes from {tmp_path / 'subs.toml'}: remove its entry there" in from_file.output
    assert "no subscription 99" in unknown.output
    rows = await subscriptions(database_url)
    assert [(r.id, r.is_active, r.invite_code) for r in rows] == [
        (1, True, None),
        (2, False, None),  # the link stops working
        (3, False, None),
        (4, True, None),
    ]
    async with branches.sessions() as session:
        audit = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "subscription.removed")))
    assert [(a.actor_kind, a.target_id, a.before["is_active"], a.after["is_active"]) for a in audit] == [
        ("cli", "3", True, False),
        ("cli", "2", True, False),
    ]
    assert audit[1].before["invite_pending"] is True
    assert "invite_code" not in audit[1].before, "an invite code is a credential: never in the audit log"


async def test_manager_list_on_an_empty_database_says_how_to_subscribe(branches, database_url, tmp_path):
    result = await manager(cli_settings(database_url, tmp_path), "list")
    assert result.exit_code == 0
    assert result.output.startswith("no subscriptions yet")
