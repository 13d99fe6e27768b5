"""Managers bind their Telegram chat to a digest subscription with "/start mgr-<code>", end to end.

The whole product runs as in tests/test_telegram.py (create_app, real python-telegram-bot over real HTTP against
the Bot API stand-in, SQLite and PostgreSQL); the subscriptions are rows as `closeloop manager invite` writes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from test_digest_cli import COMMANDS
from test_telegram import Customer, Product, run_product

from bot.channels.invites import Invites
from config.settings import load_settings
from store import Database
from store.models import (
    Conversation,
    DeliveryChannel,
    InboundEvent,
    Respondent,
    ScopeKind,
    Subscription,
    SubscriptionPurpose,
)

WELCOME_MAIN = "Welcome! You will receive the weekly digest for branch MAIN here in this chat."
BRANCH_MAIN = (ScopeKind.BRANCH, "MAIN")
NOT_VALID = "This invite link is not valid or was already used; ask for a new one."


@pytest.fixture(params=["polling", "webhook"])
async def product(request, api, database_url, tmp_path) -> AsyncIterator[Product]:
    async for running in run_product(api, database_url, tmp_path, webhook=request.param == "webhook"):
        yield running


@pytest.fixture
async def webhook_product(api, database_url, tmp_path) -> AsyncIterator[Product]:
    async for running in run_product(api, database_url, tmp_path, webhook=True):
        yield running


@asynccontextmanager
async def opened(product: Product) -> AsyncIterator[Database]:
    """The product's database, through a connection of the test's own."""
    database = Database(product.database_url)
    try:
        yield database
    finally:
        await database.dispose()


async def invite(product: Product, code: str, *, scope: tuple[ScopeKind, str | None] = BRANCH_MAIN) -> int:
    async with opened(product) as database:
        return await add_invite(database, code, scope=scope)


async def add_invite(database: Database, code: str, *, scope: tuple[ScopeKind, str | None] = BRANCH_MAIN) -> int:
    """Add a Telegram digest subscription waiting for `code`, as `closeloop manager invite` does."""
    kind, value = scope
    async with database.sessions() as session, session.begin():
        row = Subscription(purpose=SubscriptionPurpose.DIGEST, channel=DeliveryChannel.TELEGRAM, address=None,
                           scope_kind=kind, scope_value=value, language="en", invite_code=code)  # fmt: skip
        session.add(row)
        await session.flush()
        return row.id


async def subscription(product: Product, subscription_id: int) -> Subscription:
    async with opened(product) as database, database.sessions() as session:
        return await session.get_one(Subscription, subscription_id)


async def addresses(product: Product) -> list[str | None]:
    async with opened(product) as database, database.sessions() as session:
        return list((await session.scalars(select(Subscription.address).order_by(Subscription.id))).all())


async def execute(product: Product, statement: str) -> None:
    async with opened(product) as database, database.sessions() as session, session.begin():
        await session.execute(text(statement))


async def test_a_valid_code_binds_the_chat_and_confirms(product):
    subscription_id = await invite(product, "Abc-123_x")
    manager = Customer(product.api, 601)

    [welcome] = await manager.says("/start mgr-Abc-123_x")

    assert welcome == WELCOME_MAIN
    assert manager.last[0].buttons == []
    row = await subscription(product, subscription_id)
    assert (row.address, row.invite_code, row.is_active) == ("601", None, True)
    assert await product.count(Conversation) == 0, "no survey started"
    assert await product.count(Respondent) == 0, "nothing kept about the manager as a customer"
    assert await product.count(InboundEvent, InboundEvent.payload.is_not(None)) == 0, "the update is not kept"


async def test_a_used_code_is_refused_from_a_second_chat(product):
    subscription_id = await invite(product, "once")
    await Customer(product.api, 602).says("/start mgr-once")

    [refusal] = await Customer(product.api, 603).says("/start mgr-once")

    assert refusal == NOT_VALID
    assert (await subscription(product, subscription_id)).address == "602"


async def test_a_garbage_code_is_refused_and_starts_nothing(product):
    await invite(product, "real-code")
    [refusal] = await Customer(product.api, 604).says("/start mgr-made-up")
    assert refusal == NOT_VALID
    assert await product.count(Subscription, Subscription.address.is_not(None)) == 0
    assert await product.count(Conversation) == 0


async def test_a_chinese_manager_is_answered_in_chinese(product):
    await invite(product, "east-code", scope=(ScopeKind.REGION, "east"))
    wang = Customer(product.api, 605, language="zh-hans")

    [welcome] = await wang.says("/start mgr-east-code")
    [refusal] = await wang.says("/start mgr-east-code")

    assert welcome == "欢迎！您将在此对话中收到区域「east」的每周简报。"
    assert refusal == "此邀请链接无效或已被使用，请重新申请一个。"


async def test_the_whole_bank_scope_is_named(product):
    await invite(product, "bank-code", scope=(ScopeKind.ALL, None))
    [welcome] = await Customer(product.api, 606).says("/start mgr-bank-code")
    assert welcome == "Welcome! You will receive the weekly digest for the whole bank here in this chat."


async def test_a_redelivered_invite_is_redeemed_once_and_answered_once(webhook_product):
    api = webhook_product.api
    subscription_id = await invite(webhook_product, "twice")
    manager = Customer(api, 607)
    update = await api.user_sends_text(607, "/start mgr-twice")
    assert await manager._await_replies(1) == [WELCOME_MAIN]

    assert await api.deliver_again(update) == 200
    assert await api.deliver_again(update) == 200
    [help_text] = await manager.says("/help")

    assert help_text.startswith("I collect feedback")
    assert len(api.sent) == manager.seen, "the redeliveries sent nothing"
    assert (await subscription(webhook_product, subscription_id)).address == "607"


async def test_after_redeeming_a_plain_start_begins_a_survey(product):
    await invite(product, "then-survey")
    manager = Customer(product.api, 608)
    await manager.says("/start mgr-then-survey")

    [choose] = await manager.says("/start")
    [consent] = await manager.says("/start MAIN")

    assert choose == "Which branch did you visit? (Scanning the QR code there takes you straight in.)"
    assert consent.startswith("Hi! We'd love to hear about your visit")


async def test_a_digest_invite_in_a_group_is_refused_and_kept_for_a_private_chat(product):
    subscription_id = await invite(product, "group-code")
    await product.api.user_sends_text(609, "/start@closeloop_test_bot mgr-group-code", chat_type="group")
    [reply] = await product.api.wait_for_messages(-609, 1)
    assert reply.text.startswith("A digest invite works in a private chat only")
    assert (await subscription(product, subscription_id)).invite_code == "group-code"

    [welcome] = await Customer(product.api, 609).says("/start mgr-group-code")

    assert welcome == WELCOME_MAIN
    assert (await subscription(product, subscription_id)).address == "609"


async def test_a_database_failure_asks_to_try_again_and_keeps_the_code(product):
    subscription_id = await invite(product, "retry-code")
    manager = Customer(product.api, 610)
    await execute(product, "ALTER TABLE subscriptions RENAME TO subscriptions_away")
    try:
        [sorry] = await manager.says("/start mgr-retry-code")
    finally:
        await execute(product, "ALTER TABLE subscriptions_away RENAME TO subscriptions")

    [welcome] = await manager.says("/start mgr-retry-code")

    assert sorry == "Sorry, something went wrong on our side. Please open the invite link again in a minute."
    assert welcome == WELCOME_MAIN
    assert (await subscription(product, subscription_id)).address == "610"


async def test_the_link_printed_by_manager_invite_works(webhook_product, tmp_path):
    environ = {"CLOSELOOP_DATABASE_URL": webhook_product.database_url, "CLOSELOOP_DATA_DIR": str(tmp_path / "cli"),
               "CLOSELOOP_TELEGRAM_USERNAME": "closeloop_test_bot"}  # fmt: skip
    args = ["manager", "invite", "--scope", "branch:MAIN"]
    result = await asyncio.to_thread(CliRunner().invoke, COMMANDS, args, obj=load_settings(environ))
    assert result.exit_code == 0, result.output
    link = result.output.strip()
    assert link.startswith("https://t.me/closeloop_test_bot?start=mgr-")

    [welcome] = await Customer(webhook_product.api, 611).says("/start " + link.partition("?start=")[2])

    assert welcome == WELCOME_MAIN
    assert await addresses(webhook_product) == ["611"]


async def test_an_update_handled_before_is_not_answered_again(db):
    """A replayed update (another process, a restart) finds its claim: no second reply, no "already used"."""
    await add_invite(db, "replayed")
    invites = Invites(db, "telegram")

    first = await invites.redeem("mgr-replayed", event_id="42", chat=612, language="en")
    again = await invites.redeem("mgr-replayed", event_id="42", chat=612, language="en")

    assert [r.text for r in first] == [WELCOME_MAIN]
    assert again == []
