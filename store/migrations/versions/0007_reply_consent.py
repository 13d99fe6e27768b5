"""Replies through the bot: where staff may write to a customer who agreed, and when they agreed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and without a default: feedback given before this revision was never asked, so it has no consent.
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("reply_chat", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("reply_consent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("reply_consent_at")
        batch.drop_column("reply_chat")
