"""All ORM models of Closeloop, importable from one place; importing it registers every table."""

from store.models.analysis import Analysis, LabelCorrection
from store.models.base import Base, JSONType, StrEnumType, UTCDateTime, utcnow
from store.models.delivery import Digest, OutboxMessage, Subscription
from store.models.enums import (
    ActorKind,
    AnalysisStatus,
    CasePriority,
    CaseStatus,
    ConversationStatus,
    DeliveryChannel,
    DigestStatus,
    ScopeKind,
    Sentiment,
    StaffRole,
    SubscriptionPurpose,
    SurveyChannel,
    TicketStatus,
)
from store.models.followup import Case, CaseEvent, Ticket, TicketEvent, TicketEvidence
from store.models.org import ApiToken, AuditEntry, Branch, Counter, StaffSession, StaffUser
from store.models.survey import Answer, Conversation, Feedback, InboundEvent, Respondent, SurveyStart

__all__ = [
    "ActorKind",
    "Analysis",
    "AnalysisStatus",
    "Answer",
    "ApiToken",
    "AuditEntry",
    "Base",
    "Branch",
    "Case",
    "CaseEvent",
    "CasePriority",
    "CaseStatus",
    "Conversation",
    "ConversationStatus",
    "Counter",
    "DeliveryChannel",
    "Digest",
    "DigestStatus",
    "Feedback",
    "InboundEvent",
    "JSONType",
    "LabelCorrection",
    "OutboxMessage",
    "Respondent",
    "ScopeKind",
    "Sentiment",
    "StaffRole",
    "StaffSession",
    "StaffUser",
    "StrEnumType",
    "Subscription",
    "SubscriptionPurpose",
    "SurveyChannel",
    "SurveyStart",
    "Ticket",
    "TicketEvent",
    "TicketEvidence",
    "TicketStatus",
    "UTCDateTime",
    "utcnow",
]
