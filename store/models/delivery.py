"""What goes out: weekly digests, who subscribes to them and to alerts, and the webhook outbox."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import NOW, Base, JSONType, StrEnumType, utcnow
from store.models.enums import DeliveryChannel, DigestStatus, ScopeKind, SubscriptionPurpose


class Digest(Base):
    """One digest for one scope, period, channel and language: the unique key stops a second send."""

    __tablename__ = "digests"
    __table_args__ = (
        UniqueConstraint("scope_kind", "scope_value", "period_start", "channel", "language", name="uq_digests_once"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scope_kind: Mapped[ScopeKind] = mapped_column(StrEnumType(ScopeKind))
    # "" rather than NULL for scope "all": NULLs never collide in a unique constraint.
    scope_value: Mapped[str] = mapped_column(String(64), default="", server_default="")
    period_start: Mapped[date]
    period_end: Mapped[date]
    language: Mapped[str] = mapped_column(String(8))
    channel: Mapped[DeliveryChannel] = mapped_column(StrEnumType(DeliveryChannel))
    recipients: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    artefacts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[DigestStatus] = mapped_column(StrEnumType(DigestStatus), default=DigestStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class Subscription(Base):
    """A Telegram chat or e-mail address that receives digests or case alerts for a scope."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[SubscriptionPurpose] = mapped_column(StrEnumType(SubscriptionPurpose))
    channel: Mapped[DeliveryChannel] = mapped_column(StrEnumType(DeliveryChannel))
    address: Mapped[str | None] = mapped_column(String(320))  # None until a Telegram invite is redeemed
    scope_kind: Mapped[ScopeKind] = mapped_column(StrEnumType(ScopeKind))
    scope_value: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    invite_code: Mapped[str | None] = mapped_column(String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    # "file" rows belong to the start-up sync of the subscriptions file; "cli" and "invite" rows it never touches.
    source: Mapped[str] = mapped_column(String(16), default="cli", server_default="cli")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class OutboxMessage(Base):
    """A webhook event written in the same transaction as its cause, delivered later with retries."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "delivered_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
