"""Staff messages to a customer through the bot: only where the customer agreed, sent after commit, retried.

A Telegram customer who said yes to "may a member of staff write to you here?" left their chat on the feedback
(bot/reply_consent.py); a web-chat customer has none to leave. ``contact_customer`` is a case action like those
in reporting.cases: one transaction writes the history entry (it holds the message), the audit entry, the webhook
event (ids only) and an outbox row under ``contact.``. A ContactDispatcher claims those rows with a lease, reads
the chat when it sends (so a /forget in between stops the message), sends through the bot's TelegramSender and
writes the outcome into the case's history. A chat that blocked the bot fails at once and is never retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from reporting.cases import CaseInputError, CaseStateError, case_state, editing_case, record_case_action
from reporting.delivery.errors import DeliveryError, RecipientGoneError
from reporting.delivery.outbox import CONTACT_PREFIX, GAVE_UP, Backoff
from reporting.delivery.queue import Claim, LeasedRows, run_until
from reporting.delivery.telegram import TelegramSender, escape
from store import Database
from store.models import Branch, Case, CaseEvent, Conversation, Feedback, OutboxMessage, SurveyChannel, utcnow

log = logging.getLogger(__name__)

TOPIC = f"{CONTACT_PREFIX}customer_message"
MESSAGE_LIMIT = 1000  # characters staff may write; with the frame it stays far below Telegram's 4,096
LEASE = timedelta(minutes=5)  # one send, which ends within the sender's own timeouts
CONTACTED = "contacted"
# What became of a message, each a case history entry pointing back at the "contacted" entry.
DELIVERED = "contact_delivered"
BLOCKED = "contact_blocked"  # the customer blocked the bot: final, no retry
FAILED = "contact_failed"  # Telegram refused it, or kept failing until the last attempt
WITHDRAWN = "contact_withdrawn"  # /forget before it went out: not sent
OUTCOMES = (DELIVERED, BLOCKED, FAILED, WITHDRAWN)

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "A reply to your feedback about {branch}",
        "footer": "From the staff of {branch}, about the feedback you gave on {date}. "
        "Send /forget to erase your data and stop these messages.",
    },
    "zh": {
        "title": "关于您对{branch}的反馈的回复",
        "footer": "来自{branch}的工作人员，回复您于 {date} 提交的反馈。发送 /forget 可删除您的信息并不再接收此类消息。",
    },
}


class ReplyRoute(StrEnum):
    """Whether staff can write to the customer behind a feedback through the bot, and if not, why."""

    BOT = "bot"
    WEB_CHAT = "web_chat"  # the web chat keeps no address to write to
    NO_CONSENT = "no_consent"  # never agreed, or withdrew it with /forget


class NoReplyRouteError(CaseStateError):
    """The customer cannot be written to through the bot; ``route`` says why."""

    def __init__(self, case_id: int, route: ReplyRoute) -> None:
        super().__init__(f"case {case_id}: the customer cannot be written to through the bot ({route})")
        self.route = route


def reply_route(channel: str | None, reply_chat: str | None) -> ReplyRoute:
    """The route for a feedback given on ``channel`` that holds ``reply_chat`` (None: no consent)."""
    if channel == SurveyChannel.WEB:
        return ReplyRoute.WEB_CHAT
    return ReplyRoute.BOT if reply_chat else ReplyRoute.NO_CONSENT


async def contact_customer(
    db: Database, case_id: int, text: str, *, actor_id: int, now: datetime | None = None
) -> Case:
    """Queue a message from staff to the customer behind a case, to go out through the bot after commit.

    A closed case takes one too (news once the problem is fixed).

    Raises:
        CaseInputError: the text is empty or longer than MESSAGE_LIMIT.
        NoReplyRouteError: the customer did not agree to messages, or answered in the web chat.
    """
    body = text.strip()
    if not body or len(body) > MESSAGE_LIMIT:
        raise CaseInputError(f"a message to the customer needs 1 to {MESSAGE_LIMIT} characters")
    async with editing_case(db, case_id, actor_id) as (session, case, branch):
        found = await session.execute(
            select(Conversation.channel, Feedback.reply_chat)
            .select_from(Feedback)
            .outerjoin(Conversation, Conversation.id == Feedback.conversation_id)
            .where(Feedback.id == case.feedback_id)
        )
        route = reply_route(*found.one())
        if route is not ReplyRoute.BOT:
            raise NoReplyRouteError(case_id, route)
        record_case_action(session, case, branch, actor_id, CONTACTED, case_state(case), body=body, now=now)
        await session.flush()
        # The entry just written: "contacted" entries are only written here, under the case's lock.
        newest = select(func.max(CaseEvent.id)).where(CaseEvent.case_id == case.id, CaseEvent.kind == CONTACTED)
        event_id = await session.scalar(newest)
        session.add(OutboxMessage(topic=TOPIC, payload={"case_id": case.id, "event_id": event_id}))
    log.info("case %d: a message to the customer is queued", case_id)
    return case


@dataclass(frozen=True, slots=True)
class ContactOptions:
    """How messages to customers travel: the local time zone of the date they quote, attempts and back-off."""

    timezone: str = "UTC"
    max_attempts: int = 6
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One queued message as it is about to be sent; ``chat`` is None once the customer withdrew consent."""

    case_id: int
    event_id: int
    text: str
    chat: str | None
    language: str
    branch_names: Mapping[str, str]
    submitted_at: datetime


def render_message(message: Outgoing, *, timezone: str = "UTC") -> str:
    """The message in Telegram HTML and the customer's language: whose reply it is, to what, and the staff text."""
    language = message.language if message.language in TEXTS else "en"
    texts = TEXTS[language]
    branch = message.branch_names.get(language) or message.branch_names.get("en", "")
    date = message.submitted_at.astimezone(ZoneInfo(timezone)).date().isoformat()
    title = texts["title"].format(branch=branch)
    footer = texts["footer"].format(branch=branch, date=date)
    return f"<b>{escape(title)}</b>\n\n{escape(message.text)}\n\n<i>{escape(footer)}</i>"


class ContactDispatcher:
    """Send queued messages to customers through the bot, one row per claim, and record each outcome on its case."""

    def __init__(
        self,
        database: Database,
        sender: TelegramSender,
        options: ContactOptions | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._sender = sender
        self._options = options or ContactOptions()
        self._clock = clock
        self._rows = LeasedRows(database, (TOPIC,), lease=LEASE, max_attempts=self._options.max_attempts, clock=clock)

    async def run(self, stop: asyncio.Event, *, idle_seconds: float = 2.0) -> None:
        """Send until ``stop`` is set, pausing ``idle_seconds`` whenever nothing is due."""
        await run_until(stop, self.dispatch_once, name="contact", idle_seconds=idle_seconds)

    async def dispatch_once(self, *, limit: int = 20) -> int:
        """Send up to ``limit`` due messages, one after another; return how many were tried."""
        return await self._rows.drain(self._send, limit=limit)

    async def _send(self, claim: Claim) -> None:
        attempt = claim.attempt
        message = await load_outgoing(self._database, int(claim.payload["event_id"]))
        if message is None or message.chat is None:
            await self._finish(claim, message, WITHDRAWN, "not sent: the customer withdrew their consent")
            return
        try:
            await self._sender.send_text(message.chat, render_message(message, timezone=self._options.timezone))
        except RecipientGoneError as exc:
            await self._finish(claim, message, BLOCKED, f"{GAVE_UP} {attempt} attempt(s): {exc}")
        except DeliveryError as exc:
            if exc.retryable and attempt < self._options.max_attempts:
                await self._retry_later(claim, exc)
            else:
                await self._finish(claim, message, FAILED, f"{GAVE_UP} {attempt} attempt(s): {exc}")
        else:
            await self._finish(claim, message, DELIVERED, None)

    async def _retry_later(self, claim: Claim, error: DeliveryError) -> None:
        delay = self._options.backoff.delay(claim.attempt)
        if error.retry_after is not None:
            delay = max(delay, timedelta(seconds=error.retry_after))
        log.info("contact: message %d attempt %d failed, next in %s: %s", claim.id, claim.attempt, delay, error)
        await self._rows.write(claim, {"next_attempt_at": self._clock() + delay, "last_error": str(error)[:2000]})

    async def _finish(self, claim: Claim, message: Outgoing | None, outcome: str, error: str | None) -> None:
        """Close the row (delivered, or out of every later claim with its error) and say so in the case's history."""
        now = self._clock()
        values: dict[str, Any] = {"delivered_at": now, "last_error": None}
        if outcome != DELIVERED:
            values = {"attempts": max(claim.attempt, self._options.max_attempts), "last_error": (error or "")[:2000]}
            log.warning("contact: message %d %s: %s", claim.id, outcome, error)
        event = None
        if message is not None:
            data = {
                "message_event_id": message.event_id,
                "attempts": claim.attempt,
                "error": (error or "")[:500] or None,
            }
            event = CaseEvent(case_id=message.case_id, kind=outcome, data=data, created_at=now)
        await self._rows.write(claim, values, record=event)


async def load_outgoing(database: Database, event_id: int) -> Outgoing | None:
    """Read a queued message with what its frame needs, and the chat as it is now; None when the case is gone."""
    query = (
        select(
            CaseEvent.case_id,
            CaseEvent.body,
            Feedback.reply_chat,
            Feedback.language,
            Feedback.submitted_at,
            Branch.name_en,
            Branch.name_zh,
        )
        .join(Case, Case.id == CaseEvent.case_id)
        .join(Feedback, Feedback.id == Case.feedback_id)
        .join(Branch, Branch.id == Case.branch_id)
        .where(CaseEvent.id == event_id, CaseEvent.kind == CONTACTED)
    )
    async with database.sessions() as session:
        row = (await session.execute(query)).first()
    if row is None:
        return None
    names = {"en": row.name_en, "zh": row.name_zh}
    return Outgoing(row.case_id, event_id, row.body or "", row.reply_chat, row.language, names, row.submitted_at)
