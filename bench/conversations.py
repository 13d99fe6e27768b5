"""Benchmark: simulated customers through the Telegram webhook, against a local Bot API stand-in.

Runs `closeloop run` (webhook mode) on SQLite and on PostgreSQL, and a bare python-telegram-bot echo bot
(bench/echo_bot.py), each as its own process, and drives each with the same load: N conversations, C customers
at once, four updates per conversation (/start, two button presses, a comment). Prints updates per second, the
p50/p99 time from sending a webhook request to its acknowledgement and to the bot's reply, and for Closeloop
that every answer was stored exactly once.

    .venv/bin/python bench/conversations.py [--conversations 5000] [--concurrency 200]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]   # default: $CLOSELOOP_TEST_DATABASE_URL
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.botapi import BotApiStandIn  # noqa: E402 - needs the path above
from support.server import free_port  # noqa: E402

from store import Database, normalize_url  # noqa: E402
from store.models import Answer, Feedback  # noqa: E402

SECRET = "bench-secret"  # noqa: S105 - a test value for a local stand-in
COMMENT = "The teller was friendly and the queue was short"


class TimedStandIn(BotApiStandIn):
    """The stand-in, resolving a future per chat when the bot's next message arrives (no scanning)."""

    def __init__(self) -> None:
        super().__init__(auto_deliver=False)
        self.waiting: dict[int, asyncio.Future[tuple[float, dict[str, Any]]]] = {}

    async def _send_message(self, params: Any) -> dict[str, Any]:
        message = await super()._send_message(params)
        future = self.waiting.pop(message["chat"]["id"], None)
        if future is not None and not future.done():
            future.set_result((time.perf_counter(), message))
        return message

    def expect_reply(self, chat_id: int) -> asyncio.Future[tuple[float, dict[str, Any]]]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[chat_id] = future
        return future


@dataclass
class Figures:
    name: str
    updates: int = 0
    seconds: float = 0.0
    ack_ms: list[float] = field(default_factory=list)
    reply_ms: list[float] = field(default_factory=list)
    failures: int = 0
    checks: str = ""

    @property
    def rate(self) -> float:
        return self.updates / self.seconds if self.seconds else 0.0


async def converse(api: TimedStandIn, session: aiohttp.ClientSession, url: str, user: int, figures: Figures) -> None:
    """One customer: /start, press the first button, press a 5, write a comment; one reply awaited per step."""
    last: dict[str, Any] | None = None
    for step in range(4):
        if step == 0:
            update = await api.user_sends_text(user, "/start MAIN")
        elif step == 3:
            update = await api.user_sends_text(user, COMMENT)
        else:
            buttons = [b for row in (last or {}).get("reply_markup", {}).get("inline_keyboard", []) for b in row]
            data = buttons[0 if step == 1 else 4]["callback_data"] if buttons else "press"
            update = await api.user_presses_button(user, last["message_id"], data)
        reply = api.expect_reply(user)
        started = time.perf_counter()
        async with session.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as response:
            await response.read()
            acknowledged = time.perf_counter()
        if response.status != 200:
            figures.failures += 1
            return
        try:
            replied, last = await asyncio.wait_for(reply, timeout=30)
        except TimeoutError:
            figures.failures += 1
            return
        figures.ack_ms.append((acknowledged - started) * 1000)
        figures.reply_ms.append((replied - started) * 1000)
        figures.updates += 1


async def drive(api: TimedStandIn, port: int, figures: Figures, *, conversations: int, concurrency: int) -> None:
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(user: int) -> None:
            async with gate:
                await converse(api, session, url, user, figures)

        started = time.perf_counter()
        await asyncio.gather(*(one(100_000 + n) for n in range(conversations)))
        figures.seconds = time.perf_counter() - started


async def start_process(argv: list[str], env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
    process = await asyncio.create_subprocess_exec(*argv, env=env, stdout=log, stderr=log, cwd=ROOT)
    process.log = log  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    log.seek(0)
    raise SystemExit(f"{argv[0]} did not start:\n{log.read().decode(errors='replace')}")


async def stop_process(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    await process.wait()
    process.log.close()  # type: ignore[attr-defined]


async def run_closeloop(name: str, database_url: str, args: argparse.Namespace, data_dir: Path) -> Figures:
    port = free_port()
    figures = Figures(name)
    async with TimedStandIn() as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")} | {
            "CLOSELOOP_DATABASE_URL": database_url,
            "CLOSELOOP_DATA_DIR": str(data_dir),
            "CLOSELOOP_HTTP_PORT": str(port),
            "CLOSELOOP_LOG_LEVEL": "WARNING",
            "CLOSELOOP_TELEGRAM_TOKEN": "123456:BENCH-token",
            "CLOSELOOP_TELEGRAM_API_URL": api.base_url,
            "CLOSELOOP_TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram/webhook",
            "CLOSELOOP_TELEGRAM_WEBHOOK_SECRET": SECRET,
            # The stand-in has no flood limits; Telegram's 30/s would measure Telegram, not Closeloop.
            "CLOSELOOP_TELEGRAM_MAX_MESSAGES_PER_SECOND": "0",
            # The conversation alone: text analysis runs in `closeloop worker` processes beside it in production.
            "CLOSELOOP_NLP_WORKER": "false",
            "PTB_TIMEDELTA": "true",
        }
        process = await start_process([str(Path(sys.executable).parent / "closeloop"), "run"], env, port)
        try:
            await drive(api, port, figures, conversations=args.conversations, concurrency=args.concurrency)
        finally:
            await stop_process(process)
    figures.checks = await count_stored(database_url, args.conversations)
    return figures


async def run_echo(args: argparse.Namespace) -> Figures:
    port = free_port()
    figures = Figures("python-telegram-bot echo bot")
    async with TimedStandIn() as api:
        env = dict(os.environ) | {"PTB_TIMEDELTA": "true"}
        process = await start_process(
            [sys.executable, str(ROOT / "bench" / "echo_bot.py"), str(port), api.base_url], env, port
        )
        try:
            await drive(api, port, figures, conversations=args.conversations, concurrency=args.concurrency)
        finally:
            await stop_process(process)
    return figures


async def count_stored(database_url: str, conversations: int) -> str:
    database = Database(database_url)
    try:
        async with database.sessions() as session:
            feedback = await session.scalar(select(func.count()).select_from(Feedback))
            answers = await session.scalar(select(func.count()).select_from(Answer))
            distinct = await session.scalar(select(func.count(func.distinct(Answer.conversation_id))))
    finally:
        await database.dispose()
    exact = feedback == conversations and answers == 4 * conversations and distinct == conversations
    verdict = "every answer stored exactly once" if exact else "MISMATCH"
    return f"{feedback} feedback, {answers} answers (expected {conversations} and {4 * conversations}): {verdict}"


async def scratch_postgres(admin_url: str) -> tuple[str, str]:
    name = f"closeloop_bench_{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}", name


async def drop_postgres(admin_url: str, name: str) -> None:
    engine = create_async_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else float("nan")


def report(results: list[Figures], args: argparse.Namespace) -> None:
    print(
        f"\n{args.conversations} conversations x 4 updates, {args.concurrency} customers at once, {os.cpu_count()} CPUs"
    )
    print(f"{'bot':<34}{'updates/s':>10}{'ack p50':>10}{'ack p99':>10}{'reply p50':>11}{'reply p99':>11}{'failed':>8}")
    for f in results:
        print(
            f"{f.name:<34}{f.rate:>10.0f}{percentile(f.ack_ms, 50):>8.1f}ms{percentile(f.ack_ms, 99):>8.1f}ms"
            f"{percentile(f.reply_ms, 50):>9.1f}ms{percentile(f.reply_ms, 99):>9.1f}ms{f.failures:>8}"
        )
    echo = next((f for f in results if f.name.startswith("python-telegram-bot")), None)
    for f in results:
        if f is echo:
            continue
        share = f.rate / echo.rate if echo and echo.rate else float("nan")
        print(
            f"{f.name}: {share:.0%} of the echo bot's throughput; ack p99 {percentile(f.ack_ms, 99):.1f} ms; {f.checks}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--postgres-url", default=os.environ.get("CLOSELOOP_TEST_DATABASE_URL"))
    args = parser.parse_args()
    results = [await run_echo(args)]
    with tempfile.TemporaryDirectory() as data_dir:
        results.append(
            await run_closeloop("Closeloop on SQLite", f"sqlite:///{data_dir}/bench.db", args, Path(data_dir))
        )
        if args.postgres_url:
            url, name = await scratch_postgres(args.postgres_url)
            try:
                results.append(await run_closeloop("Closeloop on PostgreSQL", url, args, Path(data_dir)))
            finally:
                await drop_postgres(args.postgres_url, name)
        else:
            print("PostgreSQL skipped: pass --postgres-url or set CLOSELOOP_TEST_DATABASE_URL")
    report(results, args)


if __name__ == "__main__":
    asyncio.run(main())
