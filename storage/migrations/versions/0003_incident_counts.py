"""incident counts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:17:26.256197

How many incidents have each status and source, kept by the store with every create and
status change: a page's total without counting every matching row. Filled from the
incidents already stored.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incident_counts",
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "in_progress",
                "resolved",
                "closed",
                name="status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'in_progress', 'resolved', 'closed')",
            name=op.f("ck_incident_counts_status_known"),
        ),
        sa.PrimaryKeyConstraint("status", "source", name=op.f("pk_incident_counts")),
    )
    op.execute(
        "INSERT INTO incident_counts (status, source, total)"
        " SELECT status, source, count(*) FROM incidents GROUP BY status, source"
    )


def downgrade() -> None:
    op.drop_table("incident_counts")
