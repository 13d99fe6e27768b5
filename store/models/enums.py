"""The closed vocabularies stored in the database: channels, statuses, roles and scopes."""

from __future__ import annotations

from enum import StrEnum


class SurveyChannel(StrEnum):
    """Where a customer talks to the bot."""

    TELEGRAM = "telegram"
    WEB = "web"


class ConversationStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class AnalysisStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class Sentiment(StrEnum):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"
    MIXED = "mixed"


class CasePriority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class CaseStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    NOT_A_COMPLAINT = "not_a_complaint"


class TicketStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    VERIFIED = "verified"


class ScopeKind(StrEnum):
    """What part of the organisation a user, digest or subscription covers."""

    BRANCH = "branch"
    REGION = "region"
    ALL = "all"


class DeliveryChannel(StrEnum):
    """How digests and alerts reach staff."""

    TELEGRAM = "telegram"
    EMAIL = "email"


class DigestStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class SubscriptionPurpose(StrEnum):
    DIGEST = "digest"
    CASE_ALERT = "case_alert"


class StaffRole(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    STAFF = "staff"


class ActorKind(StrEnum):
    """Who performed an audited action."""

    STAFF = "staff"
    SYSTEM = "system"
    CLI = "cli"
