"""One rendered notice to one subscription, whatever its channel; a chat that blocked the bot is unsubscribed.

Digests and case alerts render a Notice once and hand it here per subscription. The Notifier never raises a
DeliveryError: it answers with a NotifyResult the caller can store (a digest's ``last_error``) or retry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import update

from reporting.delivery.errors import DeliveryError, RecipientGoneError
from reporting.delivery.mail import Attachment, Email, InlineImage, Mailer
from reporting.delivery.telegram import TelegramSender, escape
from store import Database
from store.models import ActorKind, AuditEntry, DeliveryChannel, Subscription

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024  # Telegram's limit for a photo caption (counted without markup; the markup only adds)


@dataclass(frozen=True, slots=True)
class Notice:
    """A message rendered for every channel at once.

    E-mail shows ``html`` (``text`` as its plain alternative) with ``images`` inline by content id and
    ``attachments`` attached. Telegram shows ``telegram_html`` (Telegram's HTML subset, at most 4,096
    characters; by default the escaped ``text``) as the caption of the first image when it fits one (1,024
    characters), else as a message before it; then the other images as photos and each attachment as a file.
    """

    subject: str
    text: str
    html: str | None = None
    telegram_html: str | None = None
    images: tuple[InlineImage, ...] = ()
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class NotifyResult:
    """What happened to one notice for one subscription; ``error`` is None exactly when it was delivered."""

    subscription_id: int
    error: str | None = None
    retryable: bool = False
    deactivated: bool = False

    @property
    def is_delivered(self) -> bool:
        return self.error is None


class Notifier:
    """Send notices through whichever senders are configured; a channel without one fails, not retryable."""

    def __init__(
        self, database: Database, *, mailer: Mailer | None = None, telegram: TelegramSender | None = None
    ) -> None:
        self._database = database
        self._mailer = mailer
        self._telegram = telegram

    async def notify(self, subscription: Subscription, notice: Notice) -> NotifyResult:
        """Send ``notice`` to ``subscription``; a partial Telegram send is not undone, so a retry repeats it."""
        sid = subscription.id
        if not subscription.is_active or not subscription.address:
            return NotifyResult(sid, error="subscription inactive or not yet redeemed")
        try:
            if subscription.channel == DeliveryChannel.EMAIL:
                await self._email(subscription.address, notice)
            else:
                await self._telegram_chat(subscription.address, notice)
        except RecipientGoneError as exc:
            log.warning("notify: subscription %d unreachable for good, deactivating: %s", sid, exc)
            await self._deactivate(sid, str(exc))
            return NotifyResult(sid, error=str(exc), deactivated=True)
        except DeliveryError as exc:
            log.warning("notify: subscription %d failed (%s): %s", sid, "will retry" if exc.retryable else "final", exc)
            return NotifyResult(sid, error=str(exc), retryable=exc.retryable)
        log.info("notify: subscription %d delivered by %s", sid, subscription.channel)
        return NotifyResult(sid)

    async def _email(self, address: str, notice: Notice) -> None:
        if self._mailer is None:
            raise DeliveryError("e-mail is not configured (CLOSELOOP_SMTP_HOST)", retryable=False)
        email = Email(
            to=(address,),
            subject=notice.subject,
            text=notice.text,
            html=notice.html,
            images=notice.images if notice.html is not None else (),
            attachments=notice.attachments,
        )
        await self._mailer.send(email)

    async def _telegram_chat(self, address: str, notice: Notice) -> None:
        if self._telegram is None:
            raise DeliveryError("Telegram is not configured (CLOSELOOP_TELEGRAM_TOKEN)", retryable=False)
        chat = _chat_id(address)
        body = notice.telegram_html or escape(notice.text)
        images = list(notice.images)
        if images and len(body) <= CAPTION_LIMIT:
            # One message reads better than a text and a separate chart: the text becomes the first image's caption.
            first = images.pop(0)
            await self._telegram.send_photo(chat, first.data, caption_html=body, filename=first.filename)
        else:
            await self._telegram.send_text(chat, body)
        for image in images:
            await self._telegram.send_photo(chat, image.data, filename=image.filename)
        for attachment in notice.attachments:
            await self._telegram.send_document(chat, attachment.data, filename=attachment.filename)

    async def _deactivate(self, subscription_id: int, reason: str) -> None:
        """Switch the subscription off and say so in the audit log, so staff can see why alerts stopped."""
        async with self._database.writing(), self._database.sessions() as session, session.begin():
            await session.execute(
                update(Subscription).where(Subscription.id == subscription_id).values(is_active=False)
            )
            session.add(
                AuditEntry(
                    actor_kind=ActorKind.SYSTEM,
                    action="subscription.deactivated",
                    target_type="subscription",
                    target_id=str(subscription_id),
                    before={"is_active": True},
                    after={"is_active": False, "reason": reason[:500]},
                )
            )


def _chat_id(address: str) -> int | str:
    """A numeric chat id (negative for groups) as int; a public @channel name as it is."""
    try:
        return int(address)
    except ValueError:
        return address
