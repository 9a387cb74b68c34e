"""outbox claims

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 12:00:00.000000

A sender claims the outbox rows it is about to send (who, and until when), so that two
senders (an instance taking over and one that does not know yet it was replaced) never
both send one row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("claimed_by", sa.String(length=255), nullable=True))
    op.add_column("outbox", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
