"""Reporting indexes: periods scanned bank-wide, and the latest analysis of each feedback.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_feedback_submitted", "feedback", ["submitted_at"]),
    ("ix_conversations_started", "conversations", ["started_at"]),
    ("ix_survey_starts_day", "survey_starts", ["day"]),
    ("ix_analyses_feedback_latest", "analyses", ["feedback_id", "id"]),
    ("ix_cases_created", "cases", ["created_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
