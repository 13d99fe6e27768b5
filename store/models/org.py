"""The organisation: branches and counters, staff users and their sessions, and the audit trail of staff actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import NOW, Base, JSONType, StrEnumType, utcnow
from store.models.enums import ActorKind, ScopeKind, StaffRole


class Branch(Base):
    """A place customers visit; kept forever once created, because feedback refers to it."""

    __tablename__ = "branches"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_en: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(64), index=True)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)

    counters: Mapped[list[Counter]] = relationship(back_populates="branch", order_by="Counter.code")


class Counter(Base):
    """A desk or area inside a branch that a QR code can point at."""

    __tablename__ = "counters"
    __table_args__ = (UniqueConstraint("branch_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    code: Mapped[str] = mapped_column(String(32))
    name_en: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())

    branch: Mapped[Branch] = relationship(back_populates="counters")


class StaffUser(Base):
    """A person who signs in to the console; scope limits which branches they see."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[StaffRole] = mapped_column(StrEnumType(StaffRole))
    scope_kind: Mapped[ScopeKind] = mapped_column(StrEnumType(ScopeKind))
    # A branch code or region name; None when scope_kind is "all".
    scope_value: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2 encoded hash, never the password
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    last_login_at: Mapped[datetime | None]


class StaffSession(Base):
    """A signed-in browser; its cookie carries a random token, and this table only the token's SHA-256.

    So a copy of the table (a backup, a replica) signs nobody in.
    """

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex SHA-256 of the cookie's token
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    expires_at: Mapped[datetime]  # the absolute end, however busy the session is
    remote_addr: Mapped[str | None] = mapped_column(String(45))


class ApiToken(Base):
    """A bearer token for the JSON API that acts as its staff user; the table keeps only the token's SHA-256.

    So a copy of the table signs nobody in; ``prefix`` (the token's first characters) tells tokens apart in listings.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the token
    prefix: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # None: until revoked
    revoked_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One staff, system or CLI action with the target's state before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW, index=True)
    actor_kind: Mapped[ActorKind] = mapped_column(StrEnumType(ActorKind))
    # No foreign key on purpose: the trail must outlive any change to the users table.
    actor_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    remote_addr: Mapped[str | None] = mapped_column(String(45))  # fits an IPv6 address
