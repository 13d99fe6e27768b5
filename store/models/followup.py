"""Work that feedback creates: cases for single complaints, improvement tickets for recurring ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import NOW, Base, JSONType, StrEnumType, utcnow
from store.models.enums import CasePriority, CaseStatus, TicketStatus


class Case(Base):
    """A flagged complaint a staff member must answer within its SLA."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_branch_status", "branch_id", "status"),
        Index("ix_cases_status_sla", "status", "sla_due_at"),
        Index("ix_cases_created", "created_at"),  # cases opened in a period
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"), unique=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    priority: Mapped[CasePriority] = mapped_column(StrEnumType(CasePriority), default=CasePriority.NORMAL)
    status: Mapped[CaseStatus] = mapped_column(StrEnumType(CaseStatus), default=CaseStatus.NEW)
    reason: Mapped[str | None] = mapped_column(Text)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"), index=True)
    sla_due_at: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    resolution_code: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=NOW)

    events: Mapped[list[CaseEvent]] = relationship(order_by="CaseEvent.id")


class CaseEvent(Base):
    """One entry in a case's history: a status change, an assignment, a note."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(32))
    body: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class Ticket(Base):
    """An improvement ticket: one recurring problem (branch × category) with the feedback behind it."""

    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_branch_category_status", "branch_id", "category", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"))
    category: Mapped[str] = mapped_column(String(64))
    cluster_key: Mapped[str] = mapped_column(String(128), index=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[TicketStatus] = mapped_column(StrEnumType(TicketStatus), default=TicketStatus.OPEN)
    owner_department: Mapped[str | None] = mapped_column(String(64))
    feedback_count: Mapped[int] = mapped_column(default=0, server_default="0")
    trend: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=NOW)
    resolved_at: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]
    reopened_count: Mapped[int] = mapped_column(default=0, server_default="0")

    evidence: Mapped[list[TicketEvidence]] = relationship(order_by="TicketEvidence.added_at")
    events: Mapped[list[TicketEvent]] = relationship(order_by="TicketEvent.id")


class TicketEvidence(Base):
    """A feedback row that supports a ticket; representative ones are shown first."""

    __tablename__ = "ticket_evidence"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"), primary_key=True, index=True)
    is_representative: Mapped[bool] = mapped_column(default=False, server_default=false())
    added_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)


class TicketEvent(Base):
    """One entry in a ticket's history: a status change, a reopen, a note."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(32))
    body: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
