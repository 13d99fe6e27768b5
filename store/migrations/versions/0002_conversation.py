"""Conversation additions: skipped answers, the follow-up's category, an inbox of updates, anonymous starts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("answers") as batch:
        batch.alter_column("value", existing_type=JSON, nullable=True)
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("customer_category", sa.String(length=32), nullable=True))
    with op.batch_alter_table("inbound_events") as batch:
        batch.add_column(sa.Column("payload", JSON, nullable=True))
        batch.add_column(sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch.create_index("ix_inbound_events_unhandled", ["channel", "handled_at", "received_at"], unique=False)
    op.create_table(
        "survey_starts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("counter_code", sa.String(length=32), server_default="", nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["branch_id"], ["branches.id"], name=op.f("fk_survey_starts_branch_id_branches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_starts")),
        sa.UniqueConstraint(
            "branch_id",
            "counter_code",
            "channel",
            "day",
            name=op.f("uq_survey_starts_branch_id_counter_code_channel_day"),
        ),
    )


def downgrade() -> None:
    op.drop_table("survey_starts")
    with op.batch_alter_table("inbound_events") as batch:
        batch.drop_index("ix_inbound_events_unhandled")
        batch.drop_column("attempts")
        batch.drop_column("handled_at")
        batch.drop_column("payload")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("customer_category")
    with op.batch_alter_table("answers") as batch:
        batch.alter_column("value", existing_type=JSON, nullable=False)
