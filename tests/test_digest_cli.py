"""`closeloop digest` and `closeloop manager ...`: files on demand, subscriptions, exit code 2 for bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from digest_data import TZ, seed_digest_data
from sqlalchemy import select

from config.digest_commands import digest, manager
from config.settings import Settings, load_settings
from store import Database
from store.models import DeliveryChannel, ScopeKind, Subscription, SubscriptionPurpose
from store.subscriptions import redeem_invite

COMMANDS = click.Group("closeloop", commands=[digest, manager])


def settings_for(database_url: str, tmp_path: Path, **extra: str) -> Settings:
    environ = {"CLOSELOOP_DATABASE_URL": database_url, "CLOSELOOP_TIMEZONE": TZ,
               "CLOSELOOP_DATA_DIR": str(tmp_path / "data")} | extra  # fmt: skip
    return load_settings(environ)


async def run(settings: Settings, *args: str) -> Result:
    """Invoke the commands in a thread: they run their own event loop, as from a shell."""
    return await asyncio.to_thread(CliRunner().invoke, COMMANDS, list(args), obj=settings)


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed_digest_data(db)
    return db


async def subscriptions(db: Database) -> list[Subscription]:
    async with db.sessions() as session:
        return list((await session.scalars(select(Subscription).order_by(Subscription.id))).all())


async def test_digest_writes_the_html_charts_pdf_and_telegram_text(seeded, database_url, tmp_path):
    out = tmp_path / "out"
    result = await run(settings_for(database_url, tmp_path), "digest", "--week", "2026-W47", "--branch", "MAIN",
                 "--language", "zh", "--out", str(out))  # fmt: skip

    assert result.exit_code == 0, result.output
    stem = "digest-MAIN-2026-W47-zh"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            f"{stem}.html",
            f"{stem}.txt",
            f"{stem}.pdf",
            f"{stem}-telegram.html",
            f"{stem}-trend.png",
            f"{stem}-categories.png",
        ]
    )
    page = (out / f"{stem}.html").read_text(encoding="utf-8")
    assert f'src="{stem}-trend.png"' in page
    assert "cid:" not in page
    assert "等候时间" in page  # the taxonomy's Chinese name
    assert (out / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    assert "30 responses" in result.output


async def test_digest_of_a_region_and_of_an_empty_week(seeded, database_url, tmp_path):
    settings = settings_for(database_url, tmp_path)
    region = await run(settings, "digest", "--week", "2026-W47", "--region", "North", "--out", str(tmp_path))
    assert region.exit_code == 0, region.output
    result = await run(settings, "digest", "--week", "2020-W10", "--out", str(tmp_path / "empty"))

    assert result.exit_code == 0, result.output
    text = (tmp_path / "empty" / "digest-all-2020-W10-en.txt").read_text(encoding="utf-8")
    assert "No feedback was received this week." in text
    assert not list((tmp_path / "empty").glob("*.png"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--week", "2026-47"], "not an ISO week: '2026-47'"),
        (["--week", "2026-W54"], "2026 has no ISO week 54"),
        (["--week", "2026-W47", "--branch", "NOPE"], "unknown branch 'NOPE'"),
        (["--week", "2026-W47", "--region", "Atlantis"], "unknown region 'Atlantis'"),
        (["--week", "2026-W47", "--branch", "MAIN", "--region", "North"], "not both"),
    ],
)
async def test_digest_refuses_bad_input_with_exit_code_2(seeded, database_url, tmp_path, args, message):
    result = await run(settings_for(database_url, tmp_path), "digest", *args, "--out", str(tmp_path / "out"))

    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()


async def test_manager_invite_prints_the_deep_link_and_redeeming_binds_the_chat(seeded, database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, CLOSELOOP_TELEGRAM_USERNAME="@closeloop_bot")
    result = await run(settings, "manager", "invite", "--scope", "branch:MAIN", "--language", "zh")

    assert result.exit_code == 0, result.output
    link = result.output.strip()
    assert link.startswith("https://t.me/closeloop_bot?start=mgr-")
    [row] = await subscriptions(seeded)
    assert (row.purpose, row.channel, row.scope_kind, row.scope_value) == (
        SubscriptionPurpose.DIGEST, DeliveryChannel.TELEGRAM, ScopeKind.BRANCH, "MAIN")  # fmt: skip
    assert (row.language, row.address, row.source) == ("zh", None, "invite")
    assert row.invite_code == link.rpartition("mgr-")[2]

    redeemed = await redeem_invite(seeded, link.rpartition("=")[2], 4242)
    assert redeemed is not None
    assert redeemed.address == "4242"
    assert redeemed.invite_code is None
    assert await redeem_invite(seeded, link.rpartition("=")[2], 5555) is None  # single use


async def test_manager_invite_without_a_bot_username_prints_the_start_command(seeded, database_url, tmp_path):
    result = await run(settings_for(database_url, tmp_path), "manager", "invite", "--scope", "all")

    assert result.exit_code == 0, result.output
    assert "the manager sends the bot, in a private chat: /start mgr-" in result.output
    [row] = await subscriptions(seeded)
    assert (row.scope_kind, row.scope_value) == (ScopeKind.ALL, None)


async def test_manager_add_email_subscribes_an_address(seeded, database_url, tmp_path):
    settings = settings_for(database_url, tmp_path)
    result = await run(
        settings, "manager", "add-email", "--scope", "region:North", "--email", "a@b.cn", "--language", "en"
    )

    assert result.exit_code == 0, result.output
    [row] = await subscriptions(seeded)
    assert (row.channel, row.address, row.scope_kind, row.scope_value) == (
        DeliveryChannel.EMAIL, "a@b.cn", ScopeKind.REGION, "North")  # fmt: skip
    assert (row.purpose, row.source, row.is_active, row.invite_code) == (SubscriptionPurpose.DIGEST, "cli", True, None)
    assert result.output.strip() == f"subscription {row.id}: a@b.cn gets the weekly digest of region:North"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "branch:NOPE", "--email", "a@b.cn"], "unknown branch 'NOPE'"),
        (["--scope", "region:Atlantis", "--email", "a@b.cn"], "unknown region 'Atlantis'"),
        (["--scope", "country:X", "--email", "a@b.cn"], "expected branch:CODE, region:NAME or all"),
        (["--scope", "all", "--email", "not-an-address"], "not an e-mail address"),
    ],
)
async def test_manager_add_email_refuses_bad_input_with_exit_code_2(seeded, database_url, tmp_path, args, message):
    result = await run(settings_for(database_url, tmp_path), "manager", "add-email", *args)

    assert result.exit_code == 2
    assert message in result.output
    assert await subscriptions(seeded) == []
