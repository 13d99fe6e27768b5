"""What the NLP worker concluded about each comment, per model version, and staff corrections to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import NOW, Base, JSONType, StrEnumType, utcnow
from store.models.enums import Sentiment


class Analysis(Base):
    """One model version's reading of one feedback comment; re-analysis adds a row, never overwrites."""

    __tablename__ = "analyses"
    __table_args__ = (
        UniqueConstraint("feedback_id", "model_version"),
        Index("ix_analyses_feedback_latest", "feedback_id", "id"),  # the latest analysis of each feedback
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    sentiment: Mapped[Sentiment] = mapped_column(StrEnumType(Sentiment))
    sentiment_scores: Mapped[dict[str, float]] = mapped_column(JSONType, default=dict)
    categories: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    aspects: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    is_flagged: Mapped[bool] = mapped_column(default=False, server_default=false())
    flag_reasons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class LabelCorrection(Base):
    """A staff member's corrected labels for a comment: training data for the next model version."""

    __tablename__ = "label_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"), index=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    sentiment: Mapped[Sentiment | None] = mapped_column(StrEnumType(Sentiment))
    categories: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
