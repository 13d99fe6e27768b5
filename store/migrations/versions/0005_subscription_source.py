"""Where a subscription comes from: the operator's file (the start-up sync owns it), the CLI or an invite.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows made before this revision came from `closeloop manager`: "cli", so the file sync never touches them.
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("source", sa.String(length=16), server_default="cli", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("source")
