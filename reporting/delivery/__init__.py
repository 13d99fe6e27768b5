"""Delivery: how reports and events reach people (e-mail, Telegram) and integrations (signed webhooks)."""

from reporting.delivery.errors import DeliveryError, RecipientGoneError
from reporting.delivery.mail import Attachment, Email, InlineImage, Mailer, SmtpOptions, build_message
from reporting.delivery.notifier import Notice, Notifier, NotifyResult
from reporting.delivery.outbox import Backoff, OutboxDispatcher, add_event, failed_events
from reporting.delivery.telegram import TelegramSender, escape
from reporting.delivery.webhook import Event, WebhookOptions, WebhookSender, sign, verify_signature

__all__ = [
    "Attachment",
    "Backoff",
    "DeliveryError",
    "Email",
    "Event",
    "InlineImage",
    "Mailer",
    "Notice",
    "Notifier",
    "NotifyResult",
    "OutboxDispatcher",
    "RecipientGoneError",
    "SmtpOptions",
    "TelegramSender",
    "WebhookOptions",
    "WebhookSender",
    "add_event",
    "build_message",
    "escape",
    "failed_events",
    "sign",
    "verify_signature",
]
