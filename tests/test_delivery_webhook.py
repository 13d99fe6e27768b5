"""Signed webhooks and their outbox: a real aiohttp receiver on loopback, SQLite and PostgreSQL underneath."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from sqlalchemy import func, select, update

from reporting.delivery import (
    Backoff,
    DeliveryError,
    Event,
    OutboxDispatcher,
    WebhookOptions,
    WebhookSender,
    add_event,
    failed_events,
    sign,
    verify_signature,
)
from store import Database
from store.models import DeliveryChannel, OutboxMessage, ScopeKind, Subscription, SubscriptionPurpose, utcnow

SECRET = "whsec-7f3a"
NOW = 1_750_000_000


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@dataclass
class Receiver:
    """A receiver as an integration would write one: check the signature, de-duplicate by delivery id, act."""

    fail_next: int = 0
    fail_status: int = 500
    retry_after: str | None = None
    delay: float = 0.0
    requests: list[int] = field(default_factory=list)  # delivery id of every signed request, repeats included
    processed: dict[int, dict] = field(default_factory=dict)  # what was acted on, once per delivery id
    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        timestamp = request.headers.get("X-Closeloop-Timestamp", "")
        if not verify_signature(SECRET, timestamp, body, request.headers.get("X-Closeloop-Signature", "")):
            return web.Response(status=401, text="bad signature")
        delivery = int(request.headers["X-Closeloop-Delivery"])
        self.requests.append(delivery)
        self.headers.append(dict(request.headers))
        if self.fail_next:
            self.fail_next -= 1
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.Response(status=self.fail_status, text="busy, try later", headers=headers)
        self.processed.setdefault(delivery, json.loads(body))
        return web.Response(status=204)


@asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[str]:
    """Run the receiver on a free port of 127.0.0.1; yield its URL."""
    app = web.Application()
    app.router.add_post("/hooks/closeloop", receiver.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/closeloop"
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    async with serve(hook) as url:
        yield hook, url


@asynccontextmanager
async def sender_for(url: str, *, timeout: float = 5.0, max_attempts: int = 5) -> AsyncIterator[WebhookSender]:
    async with WebhookSender(WebhookOptions(url, SECRET, timeout=timeout, max_attempts=max_attempts)) as sender:
        yield sender


class Clock:
    """The dispatcher's notion of now, moved by the test instead of waiting out real back-offs."""

    def __init__(self) -> None:
        self.now = utcnow() + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def add_events(db: Database, count: int, topic: str = "case.created") -> list[int]:
    async with db.writing(), db.sessions() as session, session.begin():
        rows = [add_event(session, topic, {"case_id": n, "priority": "high"}) for n in range(count)]
    return [row.id for row in rows]


async def outbox_row(db: Database, outbox_id: int) -> OutboxMessage:
    async with db.sessions() as session:
        return await session.get_one(OutboxMessage, outbox_id)


# the signature


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"id":1}'
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, str(NOW), body) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now", "valid"),
    [
        (SECRET, str(NOW), b'{"id":1}', NOW + 10, True),
        ("another-secret", str(NOW), b'{"id":1}', NOW, False),
        (SECRET, str(NOW), b'{"id":2}', NOW, False),  # body changed in transit
        (SECRET, str(NOW + 1), b'{"id":1}', NOW, False),  # timestamp changed to look fresh
        (SECRET, str(NOW), b'{"id":1}', NOW + 301, False),  # replayed after the tolerance
        (SECRET, "yesterday", b'{"id":1}', NOW, False),
    ],
)
def test_verify_signature_accepts_only_the_signed_body_recently_sent(secret, timestamp, body, now, valid):
    signature = sign(SECRET, str(NOW), b'{"id":1}')
    assert verify_signature(secret, timestamp, body, signature, tolerance=300, now=now) is valid


# the sender


async def test_a_post_carries_the_envelope_and_every_header(receiver):
    hook, url = receiver
    created = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
    async with sender_for(url) as sender:
        await sender.post(Event(7, "case.created", {"case_id": 3, "branch": "北京-001"}, created))

    [headers] = hook.headers
    assert headers["X-Closeloop-Event"] == "case.created"
    assert headers["X-Closeloop-Delivery"] == "7"
    assert headers["Content-Type"] == "application/json"
    assert abs(int(headers["X-Closeloop-Timestamp"]) - time.time()) < 5
    assert hook.processed[7] == {
        "id": 7,
        "event": "case.created",
        "created_at": "2025-03-03T08:00:00+00:00",
        "data": {"case_id": 3, "branch": "北京-001"},
    }


async def test_a_receiver_with_another_secret_refuses_and_the_error_says_so():
    async with serve(Receiver()) as url:
        options = WebhookOptions(url, "not-the-secret")
        async with WebhookSender(options) as sender:
            with pytest.raises(DeliveryError, match="receiver answered 401 Unauthorized: bad signature") as caught:
                await sender.post(Event(1, "case.created", {}, utcnow()))
    assert caught.value.retryable is True


async def test_a_slow_receiver_times_out_as_retryable():
    async with serve(Receiver(delay=3)) as url, sender_for(url, timeout=0.3) as sender:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no answer within 0\.3 s") as caught:
            await sender.post(Event(1, "case.created", {}, utcnow()))
    assert caught.value.retryable is True
    assert time.monotonic() - started < 2


# the outbox


async def test_an_event_exists_exactly_when_its_cause_commits(db):
    async with db.writing(), db.sessions() as session:
        async with session.begin():
            session.add(subscription())
            add_event(session, "subscription.created", {"id": 1})
        with pytest.raises(RuntimeError, match="the cause failed"):  # noqa: PT012 - the failure is the transaction's
            async with session.begin():
                session.add(subscription())
                add_event(session, "subscription.created", {"id": 2})
                await session.flush()
                raise RuntimeError("the cause failed")

    async with db.sessions() as session:
        payloads = list(await session.scalars(select(OutboxMessage.payload)))
        subscriptions = await session.scalar(select(func.count()).select_from(Subscription))
    assert payloads == [{"id": 1}]
    assert subscriptions == 1


def test_a_topic_is_a_dotted_lower_case_name():
    with pytest.raises(ValueError, match="dotted lower-case"):
        add_event(None, "Case Created", {})  # type: ignore[arg-type]


async def test_a_due_event_is_delivered_once_and_marked(db, receiver):
    hook, url = receiver
    [outbox_id] = await add_events(db, 1)
    async with sender_for(url) as sender:
        dispatcher = OutboxDispatcher(db, sender)
        assert await dispatcher.dispatch_once() == 1
        assert await dispatcher.dispatch_once() == 0

    assert hook.requests == [outbox_id]
    row = await outbox_row(db, outbox_id)
    assert row.delivered_at is not None
    assert (row.attempts, row.last_error) == (1, None)


async def test_staff_alerts_in_the_outbox_never_go_to_the_webhook(db, receiver):
    """Alert rows share the table but belong to the alert dispatcher: the webhook must neither send nor mark them."""
    hook, url = receiver
    [alert_id] = await add_events(db, 1, topic="alert.case_opened")
    [event_id] = await add_events(db, 1, topic="case.opened")
    async with sender_for(url) as sender:
        assert await OutboxDispatcher(db, sender).dispatch_once() == 1
    assert hook.requests == [event_id]
    alert = await outbox_row(db, alert_id)
    assert (alert.delivered_at, alert.attempts) == (None, 0)


async def test_a_failing_receiver_is_retried_with_growing_back_off_then_delivered_once(db, receiver):
    hook, url = receiver
    hook.fail_next = 2
    clock = Clock()
    [outbox_id] = await add_events(db, 1)
    async with sender_for(url) as sender:
        dispatcher = OutboxDispatcher(db, sender, backoff=Backoff(first=timedelta(seconds=30)), clock=clock)

        assert await dispatcher.dispatch_once() == 1
        row = await outbox_row(db, outbox_id)
        assert row.attempts == 1
        assert "answered 500" in row.last_error
        assert row.next_attempt_at == clock.now + timedelta(seconds=30)

        clock.advance(29)
        assert await dispatcher.dispatch_once() == 0, "not due before its back-off ends"
        clock.advance(1)
        assert await dispatcher.dispatch_once() == 1
        assert (await outbox_row(db, outbox_id)).next_attempt_at == clock.now + timedelta(seconds=60)

        clock.advance(60)
        assert await dispatcher.dispatch_once() == 1

    row = await outbox_row(db, outbox_id)
    assert (row.attempts, row.last_error) == (3, None)
    assert row.delivered_at == clock.now
    assert hook.requests == [outbox_id] * 3
    assert list(hook.processed) == [outbox_id]


async def test_a_retry_after_longer_than_the_back_off_is_honoured(db, receiver):
    hook, url = receiver
    hook.fail_next, hook.fail_status, hook.retry_after = 1, 429, "120"
    clock = Clock()
    [outbox_id] = await add_events(db, 1)
    async with sender_for(url) as sender:
        await OutboxDispatcher(db, sender, clock=clock).dispatch_once()
    assert (await outbox_row(db, outbox_id)).next_attempt_at == clock.now + timedelta(seconds=120)


async def test_after_the_last_attempt_the_event_is_kept_and_marked_failed(db):
    clock = Clock()
    async with serve(Receiver(fail_next=100)) as url, sender_for(url, max_attempts=3) as sender:
        [outbox_id, other_id] = await add_events(db, 2)
        dispatcher = OutboxDispatcher(db, sender, clock=clock)
        for _ in range(5):
            await dispatcher.dispatch_once()
            clock.advance(3600)
        assert await dispatcher.dispatch_once() == 0

    row = await outbox_row(db, outbox_id)
    assert row.attempts == 3
    assert row.delivered_at is None
    assert row.last_error.startswith("gave up after 3 attempt(s): webhook: receiver answered 500")
    assert [r.id for r in await failed_events(db)] == [outbox_id, other_id]


async def test_a_receiver_de_duplicates_an_event_sent_again_after_a_crash(db, receiver):
    hook, url = receiver
    clock = Clock()
    [outbox_id] = await add_events(db, 1)
    async with sender_for(url) as sender:
        dispatcher = OutboxDispatcher(db, sender, clock=clock)
        await dispatcher.dispatch_once()
        # As if the process had stopped after the POST and before recording it: the lease ends, the row is due.
        async with db.writing(), db.sessions() as session, session.begin():
            await session.execute(update(OutboxMessage).values(delivered_at=None))
        clock.advance(3600)
        assert await dispatcher.dispatch_once() == 1

    assert hook.requests == [outbox_id, outbox_id]
    assert list(hook.processed) == [outbox_id], "the receiver acts once per X-Closeloop-Delivery"


async def test_two_dispatchers_at_once_deliver_every_event_exactly_once(db):
    hook = Receiver(delay=0.002)
    other = Database(db.url)  # a second engine: another process as far as the database can tell
    try:
        ids = await add_events(db, 60)
        async with serve(hook) as url, sender_for(url) as sender_a, sender_for(url) as sender_b:
            dispatchers = [
                OutboxDispatcher(db, sender_a, batch_size=4),
                OutboxDispatcher(other, sender_b, batch_size=4),
            ]

            async def drain(dispatcher: OutboxDispatcher) -> int:
                total = 0
                while handled := await dispatcher.dispatch_once():
                    assert handled <= 4, "a claim takes at most batch_size rows"
                    total += handled
                return total

            counts = await asyncio.gather(*(drain(d) for d in dispatchers))
    finally:
        await other.dispose()

    assert sorted(hook.requests) == ids, "each event POSTed exactly once"
    assert sum(counts) == 60
    assert all(counts), f"both dispatchers should have taken a share, got {counts}"
    async with db.sessions() as session:
        undelivered = await session.scalar(select(func.count()).where(OutboxMessage.delivered_at.is_(None)))
    assert undelivered == 0


async def test_the_dispatcher_runs_in_the_background_until_stopped(db, receiver):
    hook, url = receiver
    stop = asyncio.Event()
    async with sender_for(url) as sender:
        task = asyncio.create_task(OutboxDispatcher(db, sender).run(stop, idle_seconds=0.05))
        [outbox_id] = await add_events(db, 1)
        async with asyncio.timeout(5):
            while outbox_id not in hook.processed:
                await asyncio.sleep(0.02)
        stop.set()
        async with asyncio.timeout(2):
            await task
    assert hook.requests == [outbox_id]


def subscription() -> Subscription:
    return Subscription(
        purpose=SubscriptionPurpose.CASE_ALERT,
        channel=DeliveryChannel.EMAIL,
        address="ops@bank.example",
        scope_kind=ScopeKind.ALL,
        language="en",
    )


async def test_the_running_app_delivers_outbox_events_to_the_configured_webhook(
    aiohttp_client, database_url, tmp_path, receiver
):
    """`closeloop run` wires the outbox dispatcher when a webhook URL is set: an event written later goes out."""
    from config.app import NOTIFIER, create_app, load_catalog
    from config.settings import load_settings
    from web.keys import DATABASE

    hook, url = receiver
    settings = load_settings({
        "CLOSELOOP_DATABASE_URL": database_url,
        "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
        "CLOSELOOP_NLP_WORKER": "false",
        "CLOSELOOP_WEBHOOK_URL": url,
        "CLOSELOOP_WEBHOOK_SECRET": SECRET,
    })  # fmt: skip
    client = await aiohttp_client(create_app(settings, load_catalog(settings)))
    assert client.app[NOTIFIER] is not None
    [event_id] = await add_events(client.app[DATABASE], 1, topic="case.opened")
    async with asyncio.timeout(10):
        while event_id not in hook.processed:
            await asyncio.sleep(0.05)
    assert hook.processed[event_id]["event"] == "case.opened"
