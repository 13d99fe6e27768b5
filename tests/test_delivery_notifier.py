"""The Notifier: one notice to subscriptions on either channel, with real SMTP, Bot API stand-in and database."""

from __future__ import annotations

from sqlalchemy import select
from test_delivery_mail import PDF, PNG, Inbox, smtp_server

from reporting.delivery import (
    Attachment,
    InlineImage,
    Mailer,
    Notice,
    Notifier,
    SmtpOptions,
)
from reporting.delivery.notifier import CAPTION_LIMIT
from store import Database
from store.models import AuditEntry, DeliveryChannel, ScopeKind, Subscription, SubscriptionPurpose

CHAT = 7007

NOTICE = Notice(
    subject="New case at Branch 001",
    text="A customer rated 1/5: <waited 40 minutes>",
    html="<p>A customer rated 1/5: &lt;waited 40 minutes&gt;</p><img src='cid:trend'>",
    images=(InlineImage("trend", PNG),),
    attachments=(Attachment("case.pdf", PDF, "application/pdf"),),
)


async def subscribe(db: Database, channel: DeliveryChannel, address: str | None) -> Subscription:
    async with db.writing(), db.sessions() as session, session.begin():
        row = Subscription(
            purpose=SubscriptionPurpose.CASE_ALERT,
            channel=channel,
            address=address,
            scope_kind=ScopeKind.BRANCH,
            scope_value="001",
            language="en",
        )
        session.add(row)
    return row


def mailer(port: int) -> Mailer:
    return Mailer(SmtpOptions(host="127.0.0.1", port=port, sender="closeloop@bank.example", security="none", timeout=5))


async def test_an_email_subscription_gets_the_html_notice_with_its_image_and_file(db):
    inbox = Inbox()
    subscription = await subscribe(db, DeliveryChannel.EMAIL, "ana@bank.example")
    async with smtp_server(inbox) as port:
        result = await Notifier(db, mailer=mailer(port)).notify(subscription, NOTICE)

    assert result.is_delivered
    [message] = inbox.messages()
    assert message["To"] == "ana@bank.example"
    assert message["Subject"] == "New case at Branch 001"
    assert "&lt;waited 40 minutes&gt;" in message.get_body(("html",)).get_content()
    assert [p.get_filename() for p in message.iter_attachments()] == ["case.pdf"]


async def test_a_telegram_subscription_gets_the_photo_captioned_with_escaped_text_then_the_file(db, api, telegram):
    subscription = await subscribe(db, DeliveryChannel.TELEGRAM, str(CHAT))
    result = await Notifier(db, telegram=telegram).notify(subscription, NOTICE)

    assert result.is_delivered
    sent = await api.wait_for_messages(CHAT, 2)
    assert [m.method for m in sent] == ["sendPhoto", "sendDocument"]
    assert sent[0].text == "A customer rated 1/5: &lt;waited 40 minutes&gt;"  # the caption
    assert sent[0].parse_mode == "HTML"
    assert (sent[0].file_name, sent[1].file_name) == ("trend.png", "case.pdf")


async def test_a_text_too_long_for_a_caption_goes_as_a_message_before_the_photo(db, api, telegram):
    subscription = await subscribe(db, DeliveryChannel.TELEGRAM, str(CHAT))
    notice = Notice(subject="Digest", text="x" * (CAPTION_LIMIT + 1), images=(InlineImage("trend", PNG),))
    result = await Notifier(db, telegram=telegram).notify(subscription, notice)

    assert result.is_delivered
    sent = await api.wait_for_messages(CHAT, 2)
    assert [m.method for m in sent] == ["sendMessage", "sendPhoto"]
    assert (len(sent[0].text), sent[1].text) == (CAPTION_LIMIT + 1, None)


async def test_a_chat_that_blocked_the_bot_is_unsubscribed_and_the_audit_log_says_why(db, api, telegram):
    subscription = await subscribe(db, DeliveryChannel.TELEGRAM, str(CHAT))
    api.block(CHAT)

    result = await Notifier(db, telegram=telegram).notify(subscription, NOTICE)

    assert (result.is_delivered, result.retryable, result.deactivated) == (False, False, True)
    async with db.sessions() as session:
        assert (await session.get_one(Subscription, subscription.id)).is_active is False
        [entry] = await session.scalars(select(AuditEntry))
    assert (entry.action, entry.target_type, entry.target_id) == (
        "subscription.deactivated",
        "subscription",
        str(subscription.id),
    )
    assert "blocked" in entry.after["reason"]


async def test_a_refused_address_fails_without_unsubscribing(db):
    inbox = Inbox(refuse_rcpt={"gone@bank.example": "550 5.1.1 no such user"})
    subscription = await subscribe(db, DeliveryChannel.EMAIL, "gone@bank.example")
    async with smtp_server(inbox) as port:
        result = await Notifier(db, mailer=mailer(port)).notify(subscription, NOTICE)

    assert (result.retryable, result.deactivated) == (False, False)
    assert "550 5.1.1" in result.error
    async with db.sessions() as session:
        assert (await session.get_one(Subscription, subscription.id)).is_active is True


async def test_a_flood_limit_is_a_retryable_failure(db, api, telegram):
    subscription = await subscribe(db, DeliveryChannel.TELEGRAM, str(CHAT))
    api.rate_limit_next(1, retry_after=2)
    result = await Notifier(db, telegram=telegram).notify(subscription, NOTICE)
    assert (result.is_delivered, result.retryable, result.deactivated) == (False, True, False)


async def test_a_channel_without_a_sender_or_a_subscription_without_address_is_not_sent(db):
    notifier = Notifier(db)
    email = await subscribe(db, DeliveryChannel.EMAIL, "ana@bank.example")
    pending_invite = await subscribe(db, DeliveryChannel.TELEGRAM, None)

    no_mailer = await notifier.notify(email, NOTICE)
    no_address = await notifier.notify(pending_invite, NOTICE)

    assert "CLOSELOOP_SMTP_HOST" in no_mailer.error
    assert no_mailer.retryable is False
    assert no_address.error == "subscription inactive or not yet redeemed"
