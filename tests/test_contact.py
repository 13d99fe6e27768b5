"""Staff write to a customer through the bot, only where the customer agreed: SQLite and PostgreSQL.

The whole product runs as in production (create_app: the engine, the Telegram channel, the console and the
dispatcher of messages to customers) with real python-telegram-bot against the local Bot API stand-in. Customers
answer through the stand-in; staff sign in and post the case page's own form. Cases are seeded as rows (the NLP
worker is off), on top of feedback the bot stored.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from support.botapi import BotApiStandIn
from test_console_auth import CHEAP, CSRF, add_user, settings_for, sign_in
from test_console_cases import act, case_page
from test_delivery_webhook import SECRET, Receiver, serve
from test_engine import Customer as EngineCustomer
from test_telegram import Customer

from bot.engine import Engine
from config.app import branch_specs, create_app, load_catalog
from config.settings import load_settings
from reporting.contact import (
    BLOCKED,
    CONTACTED,
    DELIVERED,
    OUTCOMES,
    TOPIC,
    WITHDRAWN,
    ContactDispatcher,
    ContactOptions,
    NoReplyRouteError,
    ReplyRoute,
    contact_customer,
)
from reporting.delivery import Backoff, OutboxDispatcher, TelegramSender, WebhookOptions, WebhookSender
from store import Database, sync_branches
from store.models import (
    AuditEntry,
    Branch,
    Case,
    CaseEvent,
    CasePriority,
    CaseStatus,
    Conversation,
    ConversationStatus,
    Feedback,
    OutboxMessage,
    ScopeKind,
    StaffRole,
    utcnow,
)
from web import passwords
from web.keys import DATABASE

TOKEN = "123456:contact-token"
HOSTILE = "We are sorry <script>alert(1)</script> & <b>thank you</b>"
ESCAPED = "We are sorry &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;thank you&lt;/b&gt;"
MAY_WE_WRITE = "If we have an answer or a question about this, may a member of staff write to you here in this chat?"
FRAME = "A reply to your feedback about Main Street Branch"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "HASHER", CHEAP)


@pytest.fixture
async def client(aiohttp_client, api, database_url, tmp_path):
    """The whole product with Telegram in polling mode against the stand-in, and the console."""
    settings = settings_for(database_url, tmp_path, CLOSELOOP_TELEGRAM_TOKEN=TOKEN,
                            CLOSELOOP_TELEGRAM_API_URL=api.base_url)  # fmt: skip
    return await aiohttp_client(create_app(settings, load_catalog(settings)))


@pytest.fixture
async def app_db(client) -> Database:
    return client.app[DATABASE]


@pytest.fixture
async def clerk(app_db) -> int:
    """A staff member of MAIN; an EAST colleague exists too."""
    await add_user(app_db, "east", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "EAST"), name="Ed")
    return (await add_user(app_db, "clerk", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "MAIN"), name="Clara")).id


@pytest.fixture
async def bare_db(db) -> Database:
    """The migrated database alone, with the shipped branches."""
    await sync_branches(db, branch_specs(load_catalog(load_settings({})).branches))
    return db


@pytest.fixture
async def bare_clerk(bare_db) -> int:
    return (await add_user(bare_db, "clerk", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "MAIN"))).id


async def customer_who_answers(api: BotApiStandIn, user_id: int, *, agrees: bool) -> Customer:
    """A Telegram customer who rates their visit 1 and answers the question about writing to them here."""
    customer = Customer(api, user_id)
    await customer.says("/start MAIN")
    await customer.presses("Yes")
    await customer.presses("1")
    [question] = await customer.says("Terrible")
    if question.startswith("Thanks. Which of these"):
        [question] = await customer.presses("Something else")
    assert question == MAY_WE_WRITE
    [callback] = await customer.presses("Yes" if agrees else "No")
    assert callback == "Would you like a member of staff to call you back about this?"
    [thanks] = await customer.presses("No")
    assert thanks.startswith("Thank you!")
    return customer


async def feedback_of(db: Database, conversation_channel: str = "telegram") -> Feedback:
    async with db.sessions() as session:
        query = select(Feedback).join(Conversation, Conversation.id == Feedback.conversation_id)
        return (await session.scalars(query.where(Conversation.channel == conversation_channel))).one()


async def seed_feedback(
    db: Database, *, channel: str = "telegram", reply_chat: str | None = None, phone: str | None = None,
    language: str = "en",
) -> int:  # fmt: skip
    """Feedback as the bot would have stored it, without going through a conversation."""
    async with db.writing(), db.sessions() as session, session.begin():
        branch_id = await session.scalar(select(Branch.id).where(Branch.code == "MAIN"))
        conversation = Conversation(channel=channel, branch_id=branch_id, source="qr", step="thanks", state={},
                                    status=ConversationStatus.COMPLETED)  # fmt: skip
        session.add(conversation)
        await session.flush()
        feedback = Feedback(conversation_id=conversation.id, branch_id=branch_id, language=language, csat=1,
                            comment="Nobody helped", callback_requested=phone is not None, contact_phone=phone,
                            reply_chat=reply_chat, reply_consent_at=utcnow() if reply_chat else None)  # fmt: skip
        session.add(feedback)
        await session.flush()
        return feedback.id


async def open_case(db: Database, feedback_id: int) -> int:
    """A case on the feedback as the analysis would open it."""
    now = utcnow()
    async with db.writing(), db.sessions() as session, session.begin():
        feedback = await session.get_one(Feedback, feedback_id)
        case = Case(feedback_id=feedback_id, branch_id=feedback.branch_id, priority=CasePriority.HIGH,
                    status=CaseStatus.NEW, reason="very_negative", sla_due_at=now + timedelta(hours=48))  # fmt: skip
        session.add(case)
        await session.flush()
        session.add(CaseEvent(case_id=case.id, kind="opened", data={"priority": "high"}))
        return case.id


async def outcome_of(db: Database, case_id: int, timeout: float = 10.0) -> CaseEvent:
    """The history entry saying what became of the case's message, once the app's dispatcher has written it."""
    deadline = time.monotonic() + timeout
    while True:
        async with db.sessions() as session:
            query = select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.kind.in_(OUTCOMES))
            event = await session.scalar(query)
        if event is not None:
            return event
        assert time.monotonic() < deadline, "the message was not settled in time"
        await asyncio.sleep(0.05)


async def rows(db: Database, model, *where) -> list:
    async with db.sessions() as session:
        return list(await session.scalars(select(model).where(*where).order_by(model.id)))


def frames(api: BotApiStandIn, chat: int) -> list:
    return [m for m in api.sent if m.chat_id == chat and m.text and FRAME in m.text]


async def test_a_customer_who_agreed_gets_the_staff_message_once_escaped(client, app_db, clerk, api):
    customer = await customer_who_answers(api, 601, agrees=True)
    feedback = await feedback_of(app_db)
    assert feedback.reply_chat == "601"
    assert feedback.reply_consent_at is not None
    [mine] = await customer.says("/mydata")
    assert "Staff may write to you in this chat about it" in mine
    case_id = await open_case(app_db, feedback.id)

    await sign_in(client, "clerk")
    page, _ = await case_page(client, case_id)
    assert f'action="/console/cases/{case_id}/contact"' in page
    landed = await act(client, case_id, "contact", message=f"  {HOSTILE}  ")
    assert "The message is queued" in landed

    delivered = await outcome_of(app_db, case_id)
    assert delivered.kind == DELIVERED
    [sent] = frames(api, 601)
    assert sent.parse_mode == "HTML"
    assert ESCAPED in sent.text
    assert "<script>" not in sent.text
    assert sent.text.startswith(f"<b>{FRAME}</b>")
    assert "Send /forget to erase your data" in sent.text
    async with TelegramSender(TOKEN, api_url=api.base_url) as sender:
        assert await ContactDispatcher(app_db, sender).dispatch_once() == 0, "nothing is left to send"
    assert len(frames(api, 601)) == 1

    [contacted] = await rows(app_db, CaseEvent, CaseEvent.kind == CONTACTED)
    assert (contacted.actor_id, contacted.body) == (clerk, HOSTILE)
    assert delivered.data["message_event_id"] == contacted.id
    [audit] = await rows(app_db, AuditEntry, AuditEntry.action == "case.contacted")
    assert (audit.actor_id, audit.target_id) == (clerk, str(case_id))
    [hook] = await rows(app_db, OutboxMessage, OutboxMessage.topic == "case.updated")
    assert hook.payload["action"] == "contacted"
    assert "sorry" not in json.dumps(hook.payload), "the webhook carries ids and statuses, never the message"
    page, _ = await case_page(client, case_id)
    assert "<strong>Clara</strong> wrote to the customer through the bot" in page
    assert ESCAPED in page
    assert "<strong>Closeloop</strong> delivered the message to the customer" in page


async def test_a_blocked_customer_is_recorded_as_failed_and_never_retried(client, app_db, clerk, api):
    await customer_who_answers(api, 602, agrees=True)
    case_id = await open_case(app_db, (await feedback_of(app_db)).id)
    api.block(602)
    await sign_in(client, "clerk")
    await act(client, case_id, "contact", message="We refunded the fee.")

    blocked = await outcome_of(app_db, case_id)
    assert blocked.kind == BLOCKED
    [row] = await rows(app_db, OutboxMessage, OutboxMessage.topic == TOPIC)
    assert row.delivered_at is None
    assert row.attempts >= ContactOptions().max_attempts, "out of every later claim"
    assert "blocked" in row.last_error
    async with TelegramSender(TOKEN, api_url=api.base_url) as sender:
        assert await ContactDispatcher(app_db, sender).dispatch_once() == 0
    refused = [c for c in api.calls if c.method == "sendMessage" and c.status == 403]
    assert len(refused) == 1, "one try, no retry storm"
    page, _ = await case_page(client, case_id)
    assert "could not deliver the message: the customer has blocked the bot" in page


async def test_forget_erases_the_chat_and_contacting_is_then_refused(client, app_db, clerk, api):
    customer = await customer_who_answers(api, 603, agrees=True)
    case_id = await open_case(app_db, (await feedback_of(app_db)).id)
    await customer.says("/forget")
    [done] = await customer.presses("Yes")
    assert done == "Done: your data has been erased."
    feedback = await feedback_of(app_db)
    assert (feedback.reply_chat, feedback.reply_consent_at) == (None, None)

    await sign_in(client, "clerk")
    page, _ = await case_page(client, case_id)
    assert f'action="/console/cases/{case_id}/contact"' not in page
    assert "The customer has not agreed to messages through the bot (or has withdrawn it)" in page
    landed = await act(client, case_id, "contact", message="Are you still there?")
    assert "Not sent: the customer has not agreed to messages through the bot." in landed
    assert await rows(app_db, OutboxMessage, OutboxMessage.topic == TOPIC) == []
    assert frames(api, 603) == []


async def test_without_consent_the_form_is_absent_and_forged_posts_are_refused(client, app_db, clerk, api):
    await customer_who_answers(api, 604, agrees=False)
    feedback = await feedback_of(app_db)
    assert feedback.reply_chat is None, "a no keeps nothing"
    case_id = await open_case(app_db, feedback.id)
    await sign_in(client, "clerk")
    page, _ = await case_page(client, case_id)
    assert f'action="/console/cases/{case_id}/contact"' not in page
    assert "The customer has not agreed to messages through the bot" in page

    landed = await act(client, case_id, "contact", message="Hello")
    assert "Not sent: the customer has not agreed to messages through the bot." in landed
    no_token = await client.post(f"/console/cases/{case_id}/contact", data={"message": "Hello"})
    assert no_token.status == 403
    await sign_in(client, "east")
    queue = await client.get("/console/cases")
    east_token = CSRF.search(await queue.text()).group(1)
    elsewhere = await client.post(f"/console/cases/{case_id}/contact", data={"csrf": east_token, "message": "Hi"})
    assert elsewhere.status == 404, "another branch's case answers as a missing one"
    assert await rows(app_db, OutboxMessage, OutboxMessage.topic == TOPIC) == []
    assert await rows(app_db, CaseEvent, CaseEvent.kind == CONTACTED) == []


async def test_web_chat_feedback_cannot_be_messaged_and_the_phone_is_offered(client, app_db, clerk):
    case_id = await open_case(app_db, await seed_feedback(app_db, channel="web", phone="+86 138 1234 5678"))
    await sign_in(client, "clerk")
    page, _ = await case_page(client, case_id)
    assert f'action="/console/cases/{case_id}/contact"' not in page
    assert "The customer answered in the web chat, which keeps no address to write to." in page
    assert 'They left a number to call back: <a href="tel:+8613812345678">+86 138 1234 5678</a>' in page
    landed = await act(client, case_id, "contact", message="Hello")
    assert "Not sent: the customer answered in the web chat, which cannot be written to." in landed
    # Even a web-chat row that somehow holds a chat is refused: the web chat's user id is a session, not an address.
    forged = await open_case(app_db, await seed_feedback(app_db, channel="web", reply_chat="605"))
    with pytest.raises(NoReplyRouteError) as refused:
        await contact_customer(app_db, forged, "Hello", actor_id=clerk)
    assert refused.value.route is ReplyRoute.WEB_CHAT


async def test_an_empty_or_overlong_message_is_refused(client, app_db, clerk):
    case_id = await open_case(app_db, await seed_feedback(app_db, reply_chat="606"))
    await sign_in(client, "clerk")
    for message in ("   ", "x" * 1001):
        landed = await act(client, case_id, "contact", message=message)
        assert "A message to the customer needs 1 to 1,000 characters." in landed
    assert await rows(app_db, CaseEvent, CaseEvent.kind == CONTACTED) == []


async def test_the_web_chat_never_asks_for_reply_consent(bare_db):
    catalog = load_catalog(load_settings({}))
    engine = Engine(bare_db, catalog.survey, catalog.taxonomy, salt=b"s", reply_channels=("telegram",))
    visitor = EngineCustomer(engine, "web-session-token", channel="web")
    await visitor.command("start", "MAIN")
    await visitor.presses("Yes")
    await visitor.presses("1")
    await visitor.says("Terrible")
    if visitor.texts[0].startswith("Thanks. Which of these"):
        await visitor.presses("Something else")
    assert visitor.texts == ["Would you like a member of staff to call you back about this?"]
    await visitor.presses("No")
    feedback = await feedback_of(bare_db, "web")
    assert (feedback.reply_chat, feedback.reply_consent_at) == (None, None)


async def test_a_message_queued_before_forget_is_not_sent_and_the_webhook_skips_it(bare_db, bare_clerk, api):
    case_id = await open_case(bare_db, await seed_feedback(bare_db, reply_chat="701"))
    await contact_customer(bare_db, case_id, "We found the cause", actor_id=bare_clerk)
    receiver = Receiver()
    async with serve(receiver) as url, WebhookSender(WebhookOptions(url, SECRET)) as poster:
        await OutboxDispatcher(bare_db, poster).dispatch_once()
    assert [body["event"] for body in receiver.processed.values()] == ["case.updated"]
    [queued] = await rows(bare_db, OutboxMessage, OutboxMessage.topic == TOPIC)
    assert queued.attempts == 0, "the webhook dispatcher never claims a message to a customer"

    async with bare_db.writing(), bare_db.sessions() as session, session.begin():
        feedback = (await session.scalars(select(Feedback))).one()
        feedback.reply_chat = None  # what /forget does to it (tested through the bot above)
    async with TelegramSender(TOKEN, api_url=api.base_url) as sender:
        assert await ContactDispatcher(bare_db, sender).dispatch_once() == 1
    assert api.sent == []
    [withdrawn] = await rows(bare_db, CaseEvent, CaseEvent.kind.in_(OUTCOMES))
    assert withdrawn.kind == WITHDRAWN


async def test_a_rate_limited_message_waits_and_then_goes_out_in_the_customers_language(bare_db, bare_clerk, api):
    case_id = await open_case(bare_db, await seed_feedback(bare_db, reply_chat="702", language="zh"))
    await contact_customer(bare_db, case_id, "问题已解决", actor_id=bare_clerk)
    now = [utcnow()]
    options = ContactOptions(timezone="Asia/Shanghai", backoff=Backoff(first=timedelta(seconds=30)))
    api.rate_limit_next(1, retry_after=1)
    async with TelegramSender(TOKEN, api_url=api.base_url) as sender:
        dispatcher = ContactDispatcher(bare_db, sender, options, clock=lambda: now[0])
        assert await dispatcher.dispatch_once() == 1
        assert await dispatcher.dispatch_once() == 0, "not due before its back-off"
        now[0] += timedelta(seconds=31)
        assert await dispatcher.dispatch_once() == 1
    [sent] = [m for m in api.sent if m.chat_id == 702]
    assert sent.text.startswith("<b>关于您对中央大街支行的反馈的回复</b>")
    assert "问题已解决" in sent.text
    [delivered] = await rows(bare_db, CaseEvent, CaseEvent.kind.in_(OUTCOMES))
    assert (delivered.kind, delivered.data["attempts"]) == (DELIVERED, 2)


async def test_a_queued_message_shows_as_waiting_until_it_is_settled(aiohttp_client, database_url, tmp_path, api):
    # No Telegram token: this app runs no dispatcher, so the message waits until the one below sends it.
    settings = settings_for(database_url, tmp_path)
    quiet = await aiohttp_client(create_app(settings, load_catalog(settings)))
    db = quiet.app[DATABASE]
    await add_user(db, "clerk", role=StaffRole.STAFF, scope=(ScopeKind.BRANCH, "MAIN"), name="Clara")
    case_id = await open_case(db, await seed_feedback(db, reply_chat="607"))
    await sign_in(quiet, "clerk")
    landed = await act(quiet, case_id, "contact", message=HOSTILE)
    assert "Messages waiting to be sent: 1." in landed
    assert ESCAPED in landed

    async with TelegramSender(TOKEN, api_url=api.base_url) as sender:
        assert await ContactDispatcher(db, sender).dispatch_once() == 1
    page, _ = await case_page(quiet, case_id)
    assert "Messages waiting to be sent" not in page
    assert "<strong>Closeloop</strong> delivered the message to the customer" in page
    assert len(frames(api, 607)) == 1
