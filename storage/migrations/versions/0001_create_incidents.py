"""create incidents

Revision ID: 0001
Revises:
Create Date: 2026-11-23 16:28:25.401787

The incidents table: statuses and sizes checked by constraints, one incident per Telegram
message, one per Idempotency-Key, and indexes for listing newest first by status or source.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
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
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("updated_by", sa.String(length=128), nullable=True),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("card_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("card_message_id", sa.BigInteger(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'in_progress', 'resolved', 'closed')",
            name=op.f("ck_incidents_status_known"),
        ),
        sa.CheckConstraint(
            "length(description) BETWEEN 1 AND 4096", name=op.f("ck_incidents_description_length")
        ),
        sa.CheckConstraint(
            "length(source) BETWEEN 1 AND 32", name=op.f("ck_incidents_source_length")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("chat_id", "message_id", name=op.f("uq_incidents_chat_id_message_id")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_incidents_idempotency_key")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incidents_card_chat_id_card_message_id"),
            ["card_chat_id", "card_message_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_incidents_source_id"), ["source", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_status_id"), ["status", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_status_id"))
        batch_op.drop_index(batch_op.f("ix_incidents_source_id"))
        batch_op.drop_index(batch_op.f("ix_incidents_card_chat_id_card_message_id"))

    op.drop_table("incidents")
