"""What customers tell us: respondents, their bot conversations, raw answers and the finished feedback."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import NOW, Base, JSONType, StrEnumType, utcnow
from store.models.enums import AnalysisStatus, ConversationStatus, SurveyChannel


class Respondent(Base):
    """A customer on one channel, known only by a salted hash of their channel user id."""

    __tablename__ = "respondents"
    __table_args__ = (UniqueConstraint("channel", "user_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[SurveyChannel] = mapped_column(StrEnumType(SurveyChannel))
    user_hash: Mapped[str] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(8))
    consent_at: Mapped[datetime | None]
    consent_version: Mapped[str | None] = mapped_column(String(32))
    erased_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class Conversation(Base):
    """One run through the survey; the bot engine keeps all its state here, not in the channel library."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_respondent_status", "respondent_id", "status"),
        Index("ix_conversations_status_updated", "status", "updated_at"),
        Index("ix_conversations_started", "started_at"),  # conversations started in a period
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    respondent_id: Mapped[int | None] = mapped_column(ForeignKey("respondents.id", ondelete="SET NULL"))
    channel: Mapped[SurveyChannel] = mapped_column(StrEnumType(SurveyChannel))
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    counter_id: Mapped[int | None] = mapped_column(ForeignKey("counters.id"))
    source: Mapped[str] = mapped_column(String(16))  # qr, deeplink, web
    step: Mapped[str] = mapped_column(String(64))
    # Reassign a new dict to change it: in-place mutation of a JSON value is not tracked by the ORM.
    state: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[ConversationStatus] = mapped_column(
        StrEnumType(ConversationStatus), default=ConversationStatus.ACTIVE
    )
    started_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    # Set by the engine from its clock on every step (no onupdate: an unchanged value would fall back to it).
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    completed_at: Mapped[datetime | None]
    # Optimistic locking: a stale writer gets StaleDataError instead of overwriting a newer step.
    version: Mapped[int] = mapped_column()

    answers: Mapped[list[Answer]] = relationship(back_populates="conversation", order_by="Answer.id")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy reads it as a class attribute


class InboundEvent(Base):
    """A channel update: received (its payload kept until handled), then handled exactly once.

    A webhook update is stored here before Telegram gets its 200, and handled right after; one that a crash
    left unhandled is picked up again. A redelivered update finds its row and changes nothing.
    """

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("channel", "external_id"),
        Index("ix_inbound_events_unhandled", "channel", "handled_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[SurveyChannel] = mapped_column(StrEnumType(SurveyChannel))
    external_id: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW, index=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # cleared once handled
    handled_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")


class Answer(Base):
    """The value given at one survey step; answering a step again replaces it."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("conversation_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any | None] = mapped_column(JSONType)  # NULL: the step was skipped or not needed
    answered_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)

    conversation: Mapped[Conversation] = relationship(back_populates="answers")


class Feedback(Base):
    """The finished survey of one completed conversation, queued for text analysis."""

    __tablename__ = "feedback"
    __table_args__ = (
        # The NLP worker claims rows by status and due time; reports scan a branch over a period.
        Index("ix_feedback_analysis_queue", "analysis_status", "next_analysis_at"),
        Index("ix_feedback_branch_submitted", "branch_id", "submitted_at"),
        Index("ix_feedback_submitted", "submitted_at"),  # bank-wide reports over a period
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), unique=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    counter_id: Mapped[int | None] = mapped_column(ForeignKey("counters.id"))
    respondent_id: Mapped[int | None] = mapped_column(ForeignKey("respondents.id", ondelete="SET NULL"), index=True)
    language: Mapped[str] = mapped_column(String(8))
    csat: Mapped[int | None]  # 1-5
    nps: Mapped[int | None]  # 0-10
    ces: Mapped[int | None]  # 1-7
    comment: Mapped[str | None] = mapped_column(Text)  # already masked: no phone numbers, cards or names
    callback_requested: Mapped[bool] = mapped_column(default=False, server_default=false())
    contact_phone: Mapped[str | None] = mapped_column(String(32))  # only when shared for a callback
    # Where staff may write back through the bot (a Telegram chat id), only once the customer said yes to that;
    # NULL for web chat, which keeps no address. /forget clears both.
    reply_chat: Mapped[str | None] = mapped_column(String(64))
    reply_consent_at: Mapped[datetime | None]
    # The category the customer picked in the adaptive follow-up, when it was asked.
    customer_category: Mapped[str | None] = mapped_column(String(32))
    analysis_status: Mapped[AnalysisStatus] = mapped_column(StrEnumType(AnalysisStatus), default=AnalysisStatus.PENDING)
    analysis_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    analysis_error: Mapped[str | None] = mapped_column(Text)
    next_analysis_at: Mapped[datetime | None]
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class SurveyStart(Base):
    """How many times a branch's link was opened on a day: the denominator of the completion rate.

    Anonymous on purpose: a start happens before consent, so nothing about the person is kept.
    """

    __tablename__ = "survey_starts"
    __table_args__ = (
        UniqueConstraint("branch_id", "counter_code", "channel", "day"),
        Index("ix_survey_starts_day", "day"),  # link opens over a period
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    counter_code: Mapped[str] = mapped_column(String(32), default="", server_default="")  # "" for the branch
    channel: Mapped[SurveyChannel] = mapped_column(StrEnumType(SurveyChannel))
    day: Mapped[date] = mapped_column(Date)
    count: Mapped[int] = mapped_column(default=0, server_default="0")
