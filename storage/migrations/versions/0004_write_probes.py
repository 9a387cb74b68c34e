"""write probes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:00:00.000000

An always-empty table that /health writes a row to (and deletes it in the same
transaction) to find out whether the database takes writes: a full disk or a write
lock held elsewhere fails that commit as it fails a new incident's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "write_probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_probes")),
    )


def downgrade() -> None:
    op.drop_table("write_probes")
