"""Alerts to staff about cases: queued beside the case, sent after commit, retried, never lost or repeated.

An alert is a row of the outbox table under an ``alert.*`` topic, written in the transaction that opens or
escalates its case, so it exists exactly when the case change does. An AlertDispatcher claims one due row at a
time with a lease (as the webhook outbox does), finds the recipients when it sends (active case-alert
subscriptions whose scope covers the branch), renders the alert once per language and hands it to the Notifier.
The row's payload keeps who got it and who failed for good, so a retry reaches only those still owed; a chat that
blocked the bot is unsubscribed by the Notifier and never tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from nlp.masking import mask_text
from reporting.delivery.notifier import Notice, Notifier, NotifyResult
from reporting.delivery.outbox import ALERT_PREFIX, GAVE_UP, Backoff
from reporting.delivery.queue import Claim, LeasedRows
from reporting.delivery.telegram import escape
from store import Database
from store.models import (
    Branch,
    Case,
    CaseEvent,
    CasePriority,
    CaseStatus,
    DeliveryChannel,
    Feedback,
    OutboxMessage,
    ScopeKind,
    Subscription,
    SubscriptionPurpose,
    utcnow,
)

log = logging.getLogger(__name__)

OPENED = f"{ALERT_PREFIX}case_opened"
ESCALATED = f"{ALERT_PREFIX}case_escalated"
TOPICS = (OPENED, ESCALATED)
# One alert's sends each end within their sender's timeout; a dispatcher that died mid-send only delays the row.
LEASE = timedelta(minutes=10)
COMMENT_LIMIT = 1000  # characters of the comment quoted; Telegram takes 4,096 in all
CLOSED = frozenset({CaseStatus.RESOLVED, CaseStatus.NOT_A_COMPLAINT})

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        OPENED: "New case #{id}",
        ESCALATED: "Overdue case #{id} escalated",
        "branch": "Branch",
        "priority": "Priority",
        "due": "Answer by",
        "was_due": "Was due by",
        "categories": "Categories",
        "why": "Why",
        "comment": "Comment",
        "no_comment": "(no comment)",
        "link": "Open the case",
        "sep": ": ",
    },
    "zh": {
        OPENED: "新工单 #{id}",
        ESCALATED: "工单 #{id} 超时升级",
        "branch": "网点",
        "priority": "优先级",
        "due": "处理时限",
        "was_due": "原定时限",
        "categories": "类别",
        "why": "原因",
        "comment": "客户留言",
        "no_comment": "（无留言）",
        "link": "查看工单",
        "sep": "：",
    },
}
PRIORITY_NAMES = {
    "en": {
        CasePriority.LOW: "low",
        CasePriority.NORMAL: "normal",
        CasePriority.HIGH: "high",
        CasePriority.URGENT: "URGENT",
    },
    "zh": {CasePriority.LOW: "低", CasePriority.NORMAL: "普通", CasePriority.HIGH: "高", CasePriority.URGENT: "紧急"},
}


@dataclass(frozen=True, slots=True)
class AlertOptions:
    """How alerts read and travel; the composition root builds it from the settings and the operator's files.

    ``public_url`` is the operator's external URL (none: no link); ``category_names`` and ``flag_names`` map an
    id to its name per language (``{"waiting_time": {"en": "Waiting time", "zh": "排队时间"}}``).
    """

    timezone: str = "UTC"
    public_url: str | None = None
    channels: frozenset[str] = frozenset({DeliveryChannel.TELEGRAM.value, DeliveryChannel.EMAIL.value})
    category_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    flag_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    max_attempts: int = 8
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """What an alert says about a case; ``comment`` is the customer's (masked) text, for staff eyes only."""

    id: int
    priority: CasePriority
    status: CaseStatus
    branch_code: str
    branch_region: str | None
    branch_names: Mapping[str, str]
    sla_due_at: datetime | None
    categories: tuple[str, ...]
    flags: tuple[tuple[str, str], ...]  # (flag id, reason)
    comment: str | None


def queue_alert(session: AsyncSession, topic: str, case_id: int) -> OutboxMessage:
    """Add an alert to ``session``: it exists, and is later sent, only if the caller's transaction commits."""
    if topic not in TOPICS:
        raise ValueError(f"unknown alert topic {topic!r}")
    message = OutboxMessage(topic=topic, payload={"case_id": case_id, "sent": [], "failed": {}})
    session.add(message)
    return message


def render_alert(topic: str, case: CaseSummary, language: str, options: AlertOptions) -> Notice:
    """The alert in ``language`` (en or zh) for e-mail and Telegram; everything from people is escaped."""
    language = language if language in TEXTS else "en"
    texts = TEXTS[language]
    title = texts[topic].format(id=case.id)
    rows = _rows(topic, case, language, options)
    comment = _quote(case.comment) or texts["no_comment"]
    link = f"{options.public_url.rstrip('/')}/console/cases/{case.id}" if options.public_url else None
    sep = texts["sep"]
    text = [title, *(f"{label}{sep}{value}" for label, value in rows), f"{texts['comment']}{sep}", comment]
    telegram = [f"<b>{escape(title)}</b>", *(f"<b>{escape(label)}</b>{sep}{escape(value)}" for label, value in rows)]
    telegram += [f"<b>{escape(texts['comment'])}</b>{sep}", f"<blockquote>{escape(comment)}</blockquote>"]
    mail = [f"<h2>{escape(title)}</h2>", "<table>"]
    mail += [f"<tr><th align='left'>{escape(label)}</th><td>{escape(value)}</td></tr>" for label, value in rows]
    mail += ["</table>", f"<p><b>{escape(texts['comment'])}</b></p>", f"<blockquote>{_lines(comment)}</blockquote>"]
    if link:
        text.append(f"{texts['link']}{sep}{link}")
        telegram.append(f'<a href="{escape(link)}">{escape(texts["link"])}</a>')
        mail.append(f'<p><a href="{escape(link)}">{escape(texts["link"])}</a></p>')
    # A line break in a header would be refused by the mailer (header injection); names come from people.
    subject = " ".join(f"[{rows[0][1]}] {title} · {rows[1][1]}".split())
    return Notice(subject=subject, text="\n".join(text), html="\n".join(mail), telegram_html="\n".join(telegram))


def _rows(topic: str, case: CaseSummary, language: str, options: AlertOptions) -> list[tuple[str, str]]:
    """(label, plain value) pairs: priority and branch first, then the deadline, categories and flags."""
    texts = TEXTS[language]
    branch = f"{case.branch_names.get(language) or case.branch_code} ({case.branch_code})"
    rows = [(texts["priority"], PRIORITY_NAMES[language][case.priority]), (texts["branch"], branch)]
    if case.sla_due_at is not None:
        label = texts["was_due" if topic == ESCALATED else "due"]
        rows.append((label, _local_time(case.sla_due_at, options.timezone)))
    if case.categories:
        names = [_name(options.category_names, category, language) for category in case.categories]
        rows.append((texts["categories"], ", ".join(names)))
    if case.flags:
        why = [f"{_name(options.flag_names, flag, language)} ({reason})" for flag, reason in case.flags]
        rows.append((texts["why"], "; ".join(why)))
    return rows


class AlertDispatcher:
    """Send due alerts through a Notifier, one row per claim, retrying only the recipients still owed."""

    def __init__(
        self,
        database: Database,
        notifier: Notifier,
        options: AlertOptions | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._notifier = notifier
        self._options = options or AlertOptions()
        self._clock = clock
        self._rows = LeasedRows(database, TOPICS, lease=LEASE, max_attempts=self._options.max_attempts, clock=clock)

    async def dispatch_once(self, *, limit: int = 20) -> int:
        """Send up to ``limit`` due alerts, one after another; return how many were tried."""
        return await self._rows.drain(self._send, limit=limit)

    async def _send(self, claim: Claim) -> None:
        payload, topic = claim.payload, claim.topic
        progress = {**payload, "sent": list(payload.get("sent", [])), "failed": dict(payload.get("failed", {}))}
        case = await load_summary(self._database, progress["case_id"])
        if case is None or case.status in CLOSED:
            # Closed before the alert went out (or gone): nobody needs to act on it any more.
            await self._finish(claim, progress, retry=[], skipped=True)
            return
        retry: list[str] = []
        notices: dict[str, Notice] = {}
        for subscription in await self._recipients(topic, case, progress):
            language = subscription.language if subscription.language in TEXTS else "en"
            notice = notices.get(language) or render_alert(topic, case, language, self._options)
            notices[language] = notice
            result = await self._notifier.notify(subscription, notice)
            _note(progress, retry, result)
            await self._save(claim, progress)
        if retry and claim.attempt < self._options.max_attempts:
            await self._retry_later(claim, retry)
        else:
            await self._finish(claim, progress, retry=retry)

    async def _recipients(self, topic: str, case: CaseSummary, progress: dict[str, Any]) -> list[Subscription]:
        """Who is still owed the alert, one subscription per chat or address.

        A new case goes to the case-alert subscriptions of its branch, region and the whole bank. An escalation
        skips the branch's own staff (they had it and let it run over) and goes up: the region and bank-wide
        case-alert subscriptions, and the branch's managers, that is whoever receives the digest of the branch
        or of its region.
        """
        branch = and_(Subscription.scope_kind == ScopeKind.BRANCH, Subscription.scope_value == case.branch_code)
        region = and_(Subscription.scope_kind == ScopeKind.REGION, Subscription.scope_value == case.branch_region)
        alert_scopes = [Subscription.scope_kind == ScopeKind.ALL]
        if case.branch_region:
            alert_scopes.append(region)
        wanted = [and_(Subscription.purpose == SubscriptionPurpose.CASE_ALERT, or_(*alert_scopes))]
        if topic == OPENED:
            wanted.append(and_(Subscription.purpose == SubscriptionPurpose.CASE_ALERT, branch))
        else:
            managers = [branch, region] if case.branch_region else [branch]
            wanted.append(and_(Subscription.purpose == SubscriptionPurpose.DIGEST, or_(*managers)))
        done = {*progress["sent"], *map(int, progress["failed"])}
        query = select(Subscription).where(
            Subscription.is_active.is_(True),
            Subscription.address.is_not(None),
            Subscription.channel.in_(sorted(self._options.channels)),
            or_(*wanted),
        )
        async with self._database.sessions() as session:
            found = list(await session.scalars(query.order_by(Subscription.id)))
        # A manager subscribed twice (alerts for the region, the digest of the branch) is told once, also on retry.
        told = {(s.channel, s.address) for s in found if s.id in done}
        unique: dict[tuple[str, str | None], Subscription] = {}
        for subscription in found:
            unique.setdefault((subscription.channel, subscription.address), subscription)
        return [s for key, s in unique.items() if key not in told]

    async def _save(self, claim: Claim, progress: dict[str, Any]) -> None:
        """Keep who has been told after each send, so a crash before the end repeats nobody already told."""
        await self._rows.write(claim, {"payload": dict(progress)})

    async def _retry_later(self, claim: Claim, retry: list[str]) -> None:
        delay = self._options.backoff.delay(claim.attempt)
        log.info(
            "alerts: alert %d attempt %d left %d recipient(s) for later (in %s)",
            claim.id,
            claim.attempt,
            len(retry),
            delay,
        )
        values = {"next_attempt_at": self._clock() + delay, "last_error": "; ".join(retry)[:2000]}
        await self._rows.write(claim, values)

    async def _finish(self, claim: Claim, progress: dict[str, Any], *, retry: list[str], skipped: bool = False) -> None:
        """Close the row: delivered when someone got it (or nobody was owed it), given up when all failed."""
        sent, failed = progress["sent"], progress["failed"]
        errors = [f"{sid}: {error}" for sid, error in failed.items()] + retry
        values: dict[str, Any] = {"payload": dict(progress)}
        if sent or not errors:
            values |= {"delivered_at": self._clock(), "last_error": "; ".join(errors)[:2000] or None}
            if not sent and not skipped:
                log.warning(
                    "alerts: alert %d: no case-alert subscription covers case %s", claim.id, progress["case_id"]
                )
        else:
            # attempts at the cap takes the row out of every later claim; the row stays, with its error.
            message = f"{GAVE_UP} {claim.attempt} attempt(s): {'; '.join(errors)}"
            values |= {"attempts": self._options.max_attempts, "last_error": message[:2000]}
            log.warning("alerts: alert %d reached nobody: %s", claim.id, values["last_error"])
        event = None
        if not skipped:
            kind = "alert_failed" if errors and not sent else "alerted"  # alerted to nobody: nobody subscribes
            data = {"alert": claim.topic.removeprefix(ALERT_PREFIX), "sent": sent, "failed": failed, "retry": retry}
            event = CaseEvent(case_id=progress["case_id"], kind=kind, data=data)
        await self._rows.write(claim, values, record=event)


async def load_summary(database: Database, case_id: int) -> CaseSummary | None:
    """Read what an alert needs about a case: its branch, the flags and categories it opened with, the comment."""
    query = (
        select(Case, Branch, Feedback.comment)
        .join(Branch, Branch.id == Case.branch_id)
        .join(Feedback, Feedback.id == Case.feedback_id)
        .where(Case.id == case_id)
    )
    opened = select(CaseEvent.data).where(CaseEvent.case_id == case_id, CaseEvent.kind == "opened").limit(1)
    async with database.sessions() as session:
        row = (await session.execute(query)).first()
        data = await session.scalar(opened) or {}
    if row is None:
        return None
    case, branch, comment = row
    return CaseSummary(
        id=case.id,
        priority=case.priority,
        status=case.status,
        branch_code=branch.code,
        branch_region=branch.region,
        branch_names={"en": branch.name_en, "zh": branch.name_zh},
        sla_due_at=case.sla_due_at,
        categories=tuple(data.get("categories", ())),
        flags=tuple((f["id"], f["reason"]) for f in data.get("flags", ())),
        comment=comment,
    )


def _note(progress: dict[str, Any], retry: list[str], result: NotifyResult) -> None:
    if result.is_delivered:
        progress["sent"].append(result.subscription_id)
    elif result.retryable:
        retry.append(f"{result.subscription_id}: {result.error}")
    else:
        progress["failed"][str(result.subscription_id)] = (result.error or "")[:500]


def _local_time(moment: datetime, timezone: str) -> str:
    return f"{moment.astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M} ({timezone})"


def _name(names: Mapping[str, Mapping[str, str]], key: str, language: str) -> str:
    return names.get(key, {}).get(language) or key


def _quote(comment: str | None) -> str:
    """The comment as staff may see it: masked again (older rows, imports) and cut to a readable length."""
    if not comment or not comment.strip():
        return ""
    text = mask_text(comment.strip())
    return text if len(text) <= COMMENT_LIMIT else text[:COMMENT_LIMIT].rstrip() + "…"


def _lines(text: str) -> str:
    return "<br>".join(escape(line) for line in text.splitlines())
