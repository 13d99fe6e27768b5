"""Cases on both databases: opened with the analysis, alerted after commit, worked by staff, escalated once.

Flags come from the real rules in config/flags.toml; alerts travel through the real Notifier to a Bot API
stand-in and an aiosmtpd server on loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import select
from support.botapi import BotApiStandIn
from test_delivery_mail import Inbox, smtp_server

from config.files import parse_file
from config.settings import PACKAGE_DIR
from config.worker import AnalysisWorker
from nlp.flags import FlagRules, Priority, evaluate_flags
from reporting.alerts import AlertDispatcher, AlertOptions
from reporting.cases import (
    CASE_PRIORITY,
    CaseAccessError,
    CaseInputError,
    CaseNotFoundError,
    CaseStateError,
    acknowledge,
    add_note,
    assign,
    escalate_overdue,
    not_a_complaint,
    open_cases,
    resolve,
    run_case_jobs,
)
from reporting.delivery import Mailer, Notifier, SmtpOptions
from store import Database
from store.analysis_queue import AnalysisResult, pending_count, store_results
from store.models import (
    Analysis,
    Branch,
    Case,
    CaseEvent,
    CasePriority,
    CaseStatus,
    Conversation,
    DeliveryChannel,
    Feedback,
    OutboxMessage,
    ScopeKind,
    StaffRole,
    StaffUser,
    Subscription,
    SubscriptionPurpose,
    utcnow,
)

RULES = parse_file(FlagRules, PACKAGE_DIR / "flags.toml")
BRANCH_CHAT, REGION_CHAT, OTHER_BRANCH_CHAT, DIGEST_CHAT = 5001, 5002, 5003, 5004
FRAUD = "Someone scammed me at the ATM, my lawyer will hear of it"
HOSTILE = "It was a scam <script>alert(1)</script> & <b>nobody</b> helped"
OPTIONS = AlertOptions(
    timezone="Asia/Shanghai",
    public_url="https://feedback.bank.example/",
    category_names={"fraud_security": {"en": "Fraud or security", "zh": "欺诈或安全"}},
    flag_names={"fraud_security": {"en": "Fraud or security", "zh": "欺诈或安全"}},
)


@dataclass
class World:
    clerk: int  # staff at branch MAIN
    manager: int  # manager of region EAST
    outsider: int  # staff at branch WEST1


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def world(db: Database) -> World:
    async with db.sessions() as session, session.begin():
        session.add_all(
            [
                Branch(code="MAIN", name_en="Main Branch", name_zh="总行营业部", region="EAST"),
                Branch(code="WEST1", name_en="West One", name_zh="西一支行", region="WEST"),
            ]
        )
        users = [
            staff("clerk", StaffRole.STAFF, ScopeKind.BRANCH, "MAIN"),
            staff("manager", StaffRole.MANAGER, ScopeKind.REGION, "EAST"),
            staff("outsider", StaffRole.STAFF, ScopeKind.BRANCH, "WEST1"),
        ]
        session.add_all(users)
        await session.flush()
        return World(*(u.id for u in users))


def staff(username: str, role: StaffRole, scope: ScopeKind, value: str | None, **extra) -> StaffUser:
    return StaffUser(
        username=username,
        display_name=username.title(),
        role=role,
        scope_kind=scope,
        scope_value=value,
        password_hash="$argon2id$not-a-real-hash",
        **extra,
    )


async def add_feedback(db: Database, comment: str, *, branch: str = "MAIN", phone: str | None = None) -> int:
    async with db.sessions() as session, session.begin():
        branch_id = await session.scalar(select(Branch.id).where(Branch.code == branch))
        conversation = Conversation(channel="web", branch_id=branch_id, source="qr", step="done", state={})
        session.add(conversation)
        await session.flush()
        feedback = Feedback(
            conversation_id=conversation.id,
            branch_id=branch_id,
            language="en",
            csat=1,
            comment=comment,
            callback_requested=phone is not None,
            contact_phone=phone,
        )
        session.add(feedback)
        await session.flush()
        return feedback.id


def reading(
    feedback_id: int, text: str, *, version: str = "v1", callback: bool = False, rating: int = 1
) -> AnalysisResult:
    """What the analyzer would store, with flags from the real rules."""
    categories = {"fraud_security": 0.82} if "scam" in text else {"waiting_time": 0.7}
    flags = evaluate_flags(
        RULES,
        text=text,
        language="en",
        negative=0.6,
        categories=categories,
        rating=rating,
        callback_requested=callback,
    )
    return AnalysisResult(
        feedback_id=feedback_id,
        model_version=version,
        language="en",
        sentiment="negative",
        sentiment_scores={"negative": 0.6, "neutral": 0.3, "positive": 0.1},
        categories=[[c, s] for c, s in categories.items()],
        aspects=[],
        flags=[asdict(f) for f in flags],
    )


async def open_case(db: Database, comment: str = FRAUD, *, at: datetime | None = None, **options) -> int:
    """A feedback analysed through the store path, its flags firing; return the case's id."""
    feedback_id = await add_feedback(db, comment)
    hook = open_cases if at is None else partial(open_cases, now=at)
    await store_results(db, [reading(feedback_id, comment, **options)], on_stored=hook)
    async with db.sessions() as session:
        return await session.scalar(select(Case.id).where(Case.feedback_id == feedback_id))


async def subscribe(
    db: Database,
    channel: DeliveryChannel,
    address: str,
    scope: ScopeKind,
    value: str | None,
    *,
    language: str = "en",
    purpose: SubscriptionPurpose = SubscriptionPurpose.CASE_ALERT,
) -> int:
    async with db.sessions() as session, session.begin():
        row = Subscription(
            purpose=purpose, channel=channel, address=address, scope_kind=scope, scope_value=value, language=language
        )
        session.add(row)
        await session.flush()
        return row.id


async def rows(db: Database, model, *where, order=None) -> list:
    async with db.sessions() as session:
        return list(await session.scalars(select(model).where(*where).order_by(order or model.id)))


async def get_case(db: Database, case_id: int) -> Case:
    async with db.sessions() as session:
        return await session.get_one(Case, case_id)


def dispatcher(db: Database, *, telegram=None, smtp_port=None, clock=None) -> AlertDispatcher:
    mailer = None
    if smtp_port is not None:
        options = SmtpOptions(host="127.0.0.1", port=smtp_port, sender="cl@bank.example", security="none", timeout=5)
        mailer = Mailer(options)
    return AlertDispatcher(db, Notifier(db, mailer=mailer, telegram=telegram), OPTIONS, clock=clock or utcnow)


def texts(api: BotApiStandIn, chat: int) -> list[str]:
    return [m.text for m in api.sent if m.chat_id == chat]


# opening


def test_every_flag_priority_has_a_case_priority_in_the_same_order():
    assert list(CASE_PRIORITY) == list(Priority)
    assert list(CASE_PRIORITY.values()) == list(CasePriority)


async def test_a_flagged_analysis_opens_a_case_with_the_top_priority_and_the_shortest_sla(db, world):
    comment = "This is a scam and my lawyer will sue, call me back"
    feedback_id = await add_feedback(db, comment, phone="13800138000")
    before = utcnow()
    await store_results(db, [reading(feedback_id, comment, callback=True)], on_stored=open_cases)

    [case] = await rows(db, Case)
    assert (case.feedback_id, case.status, case.priority) == (feedback_id, CaseStatus.NEW, CasePriority.URGENT)
    assert case.sla_due_at - case.created_at == timedelta(hours=4), "fraud_security's 4 h beats the others' 24 h"
    assert before <= case.created_at <= utcnow()
    assert [part.split(":")[0] for part in case.reason.split("; ")] == [
        "fraud_security",
        "legal_threat",
        "callback_request",
    ]
    [event] = await rows(db, CaseEvent)
    assert (event.kind, event.actor_id, event.data["categories"]) == ("opened", None, ["fraud_security"])
    opened, alert = await rows(db, OutboxMessage)
    assert (opened.topic, alert.topic) == ("case.opened", "alert.case_opened")
    assert opened.payload["case_id"] == alert.payload["case_id"] == case.id
    assert (opened.payload["branch"], opened.payload["priority"]) == ("MAIN", "urgent")
    assert datetime.fromisoformat(opened.payload["sla_due_at"]) == case.sla_due_at
    assert {r["flag"] for r in opened.payload["reasons"]} == {"fraud_security", "legal_threat", "callback_request"}
    sent = json.dumps([opened.payload, alert.payload], ensure_ascii=False)
    assert "scam and my lawyer" not in sent, "no customer text leaves"
    assert "13800138000" not in sent, "nor the phone number"


async def test_an_analysis_whose_flags_do_not_fire_opens_nothing(db, world):
    comment = "Quick and friendly, thank you"
    feedback_id = await add_feedback(db, comment)
    await store_results(db, [reading(feedback_id, comment, rating=5)], on_stored=open_cases)
    assert await rows(db, Case) == []
    assert await rows(db, OutboxMessage) == []
    assert await pending_count(db) == 0


async def test_reanalysis_opens_no_second_case_and_does_not_reopen_a_closed_one(db, world):
    case_id = await open_case(db)
    await resolve(db, case_id, "apologised", actor_id=world.clerk)
    quiet = "The queue was long"
    quiet_id = await add_feedback(db, quiet)
    await store_results(db, [reading(quiet_id, quiet, rating=3)], on_stored=open_cases)
    [feedback_id] = [c.feedback_id for c in await rows(db, Case)]

    for version in ("v1", "v2", "v2"):
        again = [reading(feedback_id, FRAUD, version=version), reading(quiet_id, f"{quiet}, a scam", version=version)]
        await store_results(db, again, on_stored=open_cases)

    [case] = await rows(db, Case)
    assert (case.id, case.status) == (case_id, CaseStatus.RESOLVED)
    assert len(await rows(db, Analysis)) == 4
    topics = [m.topic for m in await rows(db, OutboxMessage)]
    assert topics.count("case.opened") == 1, "a comment first flagged on re-analysis of history opens nothing"


async def test_a_case_is_stored_with_its_analysis_or_not_at_all(db, world):
    feedback_id = await add_feedback(db, FRAUD)

    async def open_then_crash(session, results):
        assert await open_cases(session, results)
        raise RuntimeError("the process died before the commit")

    with pytest.raises(RuntimeError):
        await store_results(db, [reading(feedback_id, FRAUD)], on_stored=open_then_crash)
    assert (await rows(db, Case), await rows(db, Analysis), await rows(db, OutboxMessage)) == ([], [], [])
    assert await pending_count(db) == 1

    await store_results(db, [reading(feedback_id, FRAUD)], on_stored=open_cases)
    assert len(await rows(db, Case)) == 1


class RulesOnlyAnalyzer:
    """An analyzer that reads comments with the real flag rules alone (the model is tested in test_analysis)."""

    version = "rules-only"

    def analyze_feedback(self, items):
        return [
            {
                k: v
                for k, v in asdict(reading(item.id, item.comment)).items()
                if k not in ("feedback_id", "model_version")
            }
            for item in items
        ]


async def test_the_worker_opens_cases_as_it_stores_analyses(db, world):
    feedback_id = await add_feedback(db, FRAUD)
    await add_feedback(db, "Lovely staff")
    worker = AnalysisWorker(db, RulesOnlyAnalyzer)
    worker._analyzer = RulesOnlyAnalyzer()
    assert await worker.run_once() == 2
    assert [(c.feedback_id, c.priority) for c in await rows(db, Case)] == [(feedback_id, CasePriority.URGENT)]


# alerts


async def test_a_new_case_reaches_branch_and_region_staff_escaped_and_in_their_language(db, world, api, telegram):
    branch_chat = await subscribe(db, DeliveryChannel.TELEGRAM, str(BRANCH_CHAT), ScopeKind.BRANCH, "MAIN")
    regional = await subscribe(db, DeliveryChannel.EMAIL, "east@bank.example", ScopeKind.REGION, "EAST", language="zh")
    await subscribe(db, DeliveryChannel.TELEGRAM, str(OTHER_BRANCH_CHAT), ScopeKind.BRANCH, "WEST1")
    digest = SubscriptionPurpose.DIGEST
    await subscribe(db, DeliveryChannel.TELEGRAM, str(DIGEST_CHAT), ScopeKind.ALL, None, purpose=digest)
    case_id = await open_case(db, HOSTILE)
    assert api.sent == [], "nothing is sent from inside the transaction"
    inbox = Inbox()

    async with smtp_server(inbox) as port:
        sender = dispatcher(db, telegram=telegram, smtp_port=port)
        assert await sender.dispatch_once() == 1
        assert await sender.dispatch_once() == 0

    case = await get_case(db, case_id)
    shanghai = (case.sla_due_at + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    [message] = texts(api, BRANCH_CHAT)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;nobody&lt;/b&gt;" in message
    assert "<script>" not in message
    assert "<b>nobody" not in message
    assert f"New case #{case_id}" in message
    assert "URGENT" in message
    assert "Main Branch (MAIN)" in message
    assert f"{shanghai} (Asia/Shanghai)" in message
    assert "Fraud or security" in message
    assert f'<a href="https://feedback.bank.example/console/cases/{case_id}">' in message
    assert api.sent[0].parse_mode == "HTML"
    assert texts(api, OTHER_BRANCH_CHAT) == texts(api, DIGEST_CHAT) == []
    [mail] = inbox.messages()
    assert mail["To"] == "east@bank.example"
    assert f"新工单 #{case_id}" in mail["Subject"]
    assert "紧急" in mail["Subject"]
    assert "&lt;script&gt;" in mail.get_body(("html",)).get_content()
    assert f"处理时限：{shanghai}" in mail.get_body(("plain",)).get_content()
    [row] = await rows(db, OutboxMessage, OutboxMessage.topic == "alert.case_opened")
    assert row.delivered_at is not None
    assert row.payload["sent"] == [branch_chat, regional]
    [alerted] = await rows(db, CaseEvent, CaseEvent.kind == "alerted")
    assert alerted.data["sent"] == [branch_chat, regional]


async def test_a_chat_that_blocked_the_bot_is_unsubscribed_and_the_alert_given_up(db, world, api, telegram):
    subscription = await subscribe(db, DeliveryChannel.TELEGRAM, str(BRANCH_CHAT), ScopeKind.BRANCH, "MAIN")
    await open_case(db)
    api.block(BRANCH_CHAT)
    clock = Clock()
    sender = dispatcher(db, telegram=telegram, clock=clock)

    assert await sender.dispatch_once() == 1
    clock.now += timedelta(days=2)
    assert await sender.dispatch_once() == 0, "given up for good, not retried"

    assert len([c for c in api.calls if c.method == "sendMessage"]) == 1
    [row] = await rows(db, Subscription)
    assert row.is_active is False
    [alert] = await rows(db, OutboxMessage, OutboxMessage.topic == "alert.case_opened")
    assert alert.delivered_at is None
    assert alert.last_error.startswith("gave up after 1 attempt(s)")
    assert "blocked" in alert.last_error
    assert list(alert.payload["failed"]) == [str(subscription)]
    assert [e.kind for e in await rows(db, CaseEvent)] == ["opened", "alert_failed"]


async def test_a_flood_limited_chat_gets_the_alert_later_and_nobody_gets_it_twice(db, world, api, telegram):
    await subscribe(db, DeliveryChannel.EMAIL, "main@bank.example", ScopeKind.BRANCH, "MAIN")
    await subscribe(db, DeliveryChannel.TELEGRAM, str(BRANCH_CHAT), ScopeKind.BRANCH, "MAIN")
    await open_case(db)
    api.rate_limit_next(1, retry_after=1)
    inbox, clock = Inbox(), Clock()

    async with smtp_server(inbox) as port:
        sender = dispatcher(db, telegram=telegram, smtp_port=port, clock=clock)
        assert await sender.dispatch_once() == 1
        [pending] = await rows(db, OutboxMessage, OutboxMessage.topic == "alert.case_opened")
        assert (pending.delivered_at, len(inbox.envelopes), texts(api, BRANCH_CHAT)) == (None, 1, [])
        assert pending.next_attempt_at > clock.now
        assert await sender.dispatch_once() == 0, "not before its back-off"
        clock.now += timedelta(hours=1)
        assert await sender.dispatch_once() == 1

    assert len(inbox.envelopes) == 1, "the e-mail that went out first is not sent again"
    assert len(texts(api, BRANCH_CHAT)) == 1
    [done] = await rows(db, OutboxMessage, OutboxMessage.topic == "alert.case_opened")
    assert (done.delivered_at is not None, done.attempts, done.last_error) == (True, 2, None)


# escalation


async def test_an_overdue_case_is_escalated_once_to_the_region(db, world, api, telegram):
    await subscribe(db, DeliveryChannel.TELEGRAM, str(BRANCH_CHAT), ScopeKind.BRANCH, "MAIN")
    await subscribe(db, DeliveryChannel.TELEGRAM, str(REGION_CHAT), ScopeKind.REGION, "EAST")
    now = utcnow()
    overdue = await open_case(db, at=now - timedelta(hours=5))  # fraud: due 4 h after opening
    closed = await open_case(db, at=now - timedelta(hours=5))
    await not_a_complaint(db, closed, actor_id=world.clerk)
    await open_case(db, "Please call me back", at=now - timedelta(hours=5), callback=True)  # 24 h: not yet due
    sender = dispatcher(db, telegram=telegram)
    await sender.dispatch_once()
    opening_alerts = len(api.sent)

    assert await escalate_overdue(db, now - timedelta(hours=2)) == []
    assert await escalate_overdue(db, now) == [overdue]
    assert await escalate_overdue(db, now + timedelta(hours=1)) == []
    assert await sender.dispatch_once() == 1

    case = await get_case(db, overdue)
    assert case.escalated_at == now
    assert case.status == CaseStatus.NEW
    assert [e.kind for e in await rows(db, CaseEvent, CaseEvent.case_id == overdue)].count("escalated") == 1
    [event] = await rows(db, OutboxMessage, OutboxMessage.topic == "case.escalated")
    assert (event.payload["case_id"], event.payload["branch"], event.payload["priority"]) == (overdue, "MAIN", "urgent")
    [escalation] = api.sent[opening_alerts:]
    assert escalation.chat_id == REGION_CHAT
    assert f"Overdue case #{overdue} escalated" in escalation.text
    assert "Was due by" in escalation.text


async def test_an_escalation_reaches_the_branch_manager_once_however_they_subscribed(db, world, api, telegram):
    branch_manager, region_manager, staff_chat = 8101, 8104, 8102
    digest = SubscriptionPurpose.DIGEST
    await subscribe(db, DeliveryChannel.TELEGRAM, str(staff_chat), ScopeKind.BRANCH, "MAIN")
    await subscribe(db, DeliveryChannel.TELEGRAM, str(branch_manager), ScopeKind.BRANCH, "MAIN", purpose=digest)
    # The region's manager in one chat twice: the region's digest and its case alerts.
    await subscribe(db, DeliveryChannel.TELEGRAM, str(region_manager), ScopeKind.REGION, "EAST", purpose=digest)
    await subscribe(db, DeliveryChannel.TELEGRAM, str(region_manager), ScopeKind.REGION, "EAST")
    await subscribe(db, DeliveryChannel.TELEGRAM, "8103", ScopeKind.BRANCH, "WEST1", purpose=digest)  # elsewhere
    now = utcnow()
    overdue = await open_case(db, at=now - timedelta(hours=5))
    sender = dispatcher(db, telegram=telegram)
    await sender.dispatch_once()
    opened = sorted(m.chat_id for m in api.sent)
    assert await escalate_overdue(db, now) == [overdue]
    assert await sender.dispatch_once() == 1
    assert await sender.dispatch_once() == 0

    escalated = sorted(m.chat_id for m in api.sent[len(opened) :])
    assert opened == [staff_chat, region_manager]  # the opening: case alerts of the branch and its region
    assert escalated == [branch_manager, region_manager]  # up to the managers, once each; not back to the staff


async def test_the_case_jobs_send_alerts_and_escalate_until_stopped(db, world, api, telegram):
    await subscribe(db, DeliveryChannel.TELEGRAM, str(REGION_CHAT), ScopeKind.ALL, None)
    case_id = await open_case(db, at=utcnow() - timedelta(hours=6))
    stop = asyncio.Event()
    job = asyncio.create_task(run_case_jobs(db, Notifier(db, telegram=telegram), OPTIONS, stop, interval=0.05))

    opened, escalated = await api.wait_for_messages(REGION_CHAT, 2)
    stop.set()
    await asyncio.wait_for(job, 5)

    assert f"New case #{case_id}" in opened.text
    assert f"Overdue case #{case_id} escalated" in escalated.text
    assert (await get_case(db, case_id)).escalated_at is not None


# staff actions


async def test_staff_work_a_case_to_resolution_and_every_step_is_recorded(db, world):
    case_id = await open_case(db)
    t1, t2, t3, t4 = (utcnow() + timedelta(minutes=m) for m in (1, 2, 3, 4))

    await acknowledge(db, case_id, actor_id=world.clerk, now=t1)
    with pytest.raises(CaseStateError, match="acknowledged already"):
        await acknowledge(db, case_id, actor_id=world.manager)
    await assign(db, case_id, world.clerk, actor_id=world.manager, now=t2)
    await add_note(db, case_id, "Called the customer, card blocked", actor_id=world.clerk, now=t3)
    case = await resolve(db, case_id, "card_replaced", actor_id=world.clerk, now=t4)
    for action in (
        partial(resolve, db, case_id, "card_replaced", actor_id=world.clerk),
        partial(not_a_complaint, db, case_id, actor_id=world.clerk),
        partial(assign, db, case_id, world.manager, actor_id=world.manager),
    ):
        with pytest.raises(CaseStateError, match="closed"):
            await action()

    case = await get_case(db, case_id)
    assert (case.status, case.resolution_code, case.assignee_id) == (CaseStatus.RESOLVED, "card_replaced", world.clerk)
    assert (case.first_response_at, case.resolved_at) == (t1, t4)
    events = await rows(db, CaseEvent)
    assert [(e.kind, e.actor_id) for e in events] == [
        ("opened", None),
        ("acknowledged", world.clerk),
        ("assigned", world.manager),
        ("note", world.clerk),
        ("resolved", world.clerk),
    ]
    assert [(e.data["before"]["status"], e.data["after"]["status"]) for e in events[1:]] == [
        ("new", "acknowledged"),
        ("acknowledged", "in_progress"),
        ("in_progress", "in_progress"),
        ("in_progress", "resolved"),
    ]
    assert events[3].body == "Called the customer, card blocked"
    outbox = await rows(db, OutboxMessage, OutboxMessage.topic.like("case.%"))
    assert [m.topic for m in outbox] == ["case.opened", *["case.updated"] * 3, "case.resolved"]
    assert outbox[-1].payload["resolution_code"] == "card_replaced"
    assert "Called the customer" not in json.dumps([m.payload for m in outbox])


async def test_actions_are_refused_to_strangers_and_with_bad_input(db, world):
    case_id = await open_case(db)
    async with db.sessions() as session, session.begin():
        retired = staff("retired", StaffRole.STAFF, ScopeKind.ALL, None, is_active=False)
        session.add(retired)
    refused: Sequence[tuple[type[Exception], Callable[[], Awaitable[object]]]] = [
        (CaseAccessError, partial(acknowledge, db, case_id, actor_id=world.outsider)),
        (CaseAccessError, partial(acknowledge, db, case_id, actor_id=retired.id)),
        (CaseAccessError, partial(assign, db, case_id, world.outsider, actor_id=world.manager)),
        (CaseNotFoundError, partial(acknowledge, db, case_id + 100, actor_id=world.manager)),
        (CaseInputError, partial(add_note, db, case_id, "   ", actor_id=world.clerk)),
        (CaseInputError, partial(resolve, db, case_id, "Fixed it!", actor_id=world.clerk)),
    ]
    for error, action in refused:
        with pytest.raises(error):
            await action()

    assert [e.kind for e in await rows(db, CaseEvent)] == ["opened"], "a refused action leaves no trace"
    case = await not_a_complaint(db, case_id, actor_id=world.manager, note="the customer was joking")
    assert (case.status, case.first_response_at) == (CaseStatus.NOT_A_COMPLAINT, case.resolved_at)
    [closed] = await rows(db, OutboxMessage, OutboxMessage.topic == "case.resolved")
    assert closed.payload["status"] == "not_a_complaint"
