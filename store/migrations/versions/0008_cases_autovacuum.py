"""Keep the cases table's visibility map current on PostgreSQL, so the console counts cases from the index alone.

The review queue counts a scope's cases by status on every view (an admin's: every case the bank ever had, about
16,000 a year at a million visits). PostgreSQL answers that from the (branch_id, status) index without reading the
table only for pages its visibility map marks all-visible, and every case update (acknowledge, assign, resolve, an
escalation) clears its page's mark until a vacuum sets it again. With the default thresholds autovacuum waits for
a fifth of the table to change; an escalation sweep or a busy week left the count reading the heap for most entries
(6.7 ms instead of 2.3 ms per view at 16,000 cases). Vacuuming after 2% of the rows change keeps the count cheap;
vacuuming a table this size takes milliseconds. SQLite has no such setting, so this revision leaves it alone.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE cases SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 100,"
            " autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE cases RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,"
            " autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor)"
        )
