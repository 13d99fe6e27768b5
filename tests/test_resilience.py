"""Nothing lost: a server killed mid-conversation resumes at the same step; two servers share one PostgreSQL.

The servers are real `closeloop run` processes in webhook mode; the Bot API stand-in runs in the test, and the
test itself plays Telegram's part of delivering each update to a server (and, for the second test, to both).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select
from support.botapi import BotApiStandIn
from support.server import Server, free_port, server_env, start, stop_async, wait_healthy_async

from config.app import WEBHOOK_PATH
from store import Database
from store.models import Answer, Feedback

TOKEN = "123456:TEST-token"
SECRET = "resilience-secret"


@pytest.fixture
async def api(monkeypatch) -> AsyncIterator[BotApiStandIn]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    async with BotApiStandIn(auto_deliver=False) as standin:
        yield standin


def bot_env(tmp_path: Path, port: int, database_url: str, api: BotApiStandIn) -> dict[str, str]:
    return server_env(tmp_path, port, database_url) | {
        "CLOSELOOP_TELEGRAM_TOKEN": TOKEN,
        "CLOSELOOP_TELEGRAM_API_URL": api.base_url,
        "CLOSELOOP_TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
        "CLOSELOOP_TELEGRAM_WEBHOOK_SECRET": SECRET,
        "CLOSELOOP_PRIVACY_SALT": "shared-by-every-process",
        "PTB_TIMEDELTA": "true",
    }


async def launch(env: dict[str, str], port: int, cwd: Path) -> Server:
    server = start(env, cwd)
    await wait_healthy_async(server, port)
    return server


async def deliver(session: aiohttp.ClientSession, port: int, update: dict) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with session.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", json=update, headers=headers) as response:
        return response.status


async def count(database_url: str, statement) -> int:
    database = Database(database_url)
    try:
        async with database.sessions() as session:
            return await session.scalar(statement)
    finally:
        await database.dispose()


async def test_a_server_killed_mid_conversation_resumes_at_the_same_step(api, database_url, tmp_path):
    port = free_port()
    env = bot_env(tmp_path, port, database_url, api)
    server = await launch(env, port, tmp_path)
    async with aiohttp.ClientSession() as session:

        async def press(message, index: int) -> None:
            update = await api.user_presses_button(77, message, message.buttons[index]["callback_data"])
            assert await deliver(session, port, update) == 200

        try:
            assert await deliver(session, port, await api.user_sends_text(77, "/start MAIN")) == 200
            [consent] = await api.wait_for_messages(77, 1)
            await press(consent, 0)  # Yes
            rating = (await api.wait_for_messages(77, 2))[-1]
            await press(rating, 2)  # 3 of 5
            await api.wait_for_messages(77, 3)
        finally:
            server.send_signal(signal.SIGKILL)  # no clean shutdown: whatever was not committed is gone
            server.wait()
            server.log()
        server = await launch(env, port, tmp_path)
        try:
            assert await deliver(session, port, await api.user_sends_text(77, "The queue took forty minutes")) == 200
            messages = await api.wait_for_messages(77, 4)
        finally:
            await stop_async(server)
    assert messages[2].text == "Sorry it wasn't better. What went wrong?"
    assert messages[3].text.startswith("Thank you!"), "the restarted server continued at the comment step"
    assert await count(database_url, select(func.count()).select_from(Feedback)) == 1
    assert await count(database_url, select(Feedback.csat)) == 3


@pytest.mark.postgres
async def test_two_servers_on_one_postgresql_lose_and_duplicate_nothing(api, database_url, tmp_path):
    ports = [free_port(), free_port()]
    servers = [await launch(bot_env(tmp_path, p, database_url, api), p, tmp_path) for p in ports]
    customers = range(9001, 9021)
    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(survey_through_both(api, session, ports, user) for user in customers))
    finally:
        logs = [await stop_async(s) for s in servers]
    assert all("Traceback" not in log for log in logs), logs
    assert await count(database_url, select(func.count()).select_from(Feedback)) == len(customers)
    assert await count(database_url, select(func.count()).select_from(Answer)) == 4 * len(customers)
    for user in customers:
        assert [m.text[:12] for m in api.sent if m.chat_id == user] == [
            "Hi! We'd lov",
            "Overall, how",
            "Great to hea",
            "Thank you! Y",
        ], f"customer {user} got each reply exactly once"


async def survey_through_both(api: BotApiStandIn, session: aiohttp.ClientSession, ports: list[int], user: int) -> None:
    """Every update goes to both servers at once, as a load balancer retrying on a slow answer might do."""

    async def both(update: dict) -> None:
        statuses = await asyncio.gather(*(deliver(session, port, update) for port in ports))
        assert statuses == [200, 200]

    await both(await api.user_sends_text(user, "/start MAIN"))
    [consent] = await api.wait_for_messages(user, 1, timeout=15)
    await both(await api.user_presses_button(user, consent, consent.buttons[0]["callback_data"]))
    rating = (await api.wait_for_messages(user, 2, timeout=15))[-1]
    await both(await api.user_presses_button(user, rating, rating.buttons[4]["callback_data"]))
    await api.wait_for_messages(user, 3, timeout=15)
    await both(await api.user_sends_text(user, "Friendly teller and the queue was short"))
    await api.wait_for_messages(user, 4, timeout=15)
