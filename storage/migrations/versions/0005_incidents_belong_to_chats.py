"""incidents belong to chats

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 22:00:00.000000

A chat's commands, replies and buttons see only the incidents of that chat. Incidents
created over HTTP and announced in a chat (NOTIFY_CHAT_ID) belonged to none so far: they
get the chat their card went to, or is queued for. Indexes for a chat's /list, and the
kept counts gain the chat in their key, so a chat's total stays a sum over a few rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS = sa.Enum(
    "open", "in_progress", "resolved", "closed", name="status", native_enum=False, length=16
)
_STATUS_KNOWN = "status IN ('open', 'in_progress', 'resolved', 'closed')"
# As `storage.models.NO_CHAT`: the counts' chat for incidents of no chat.
_NO_CHAT = 0


def upgrade() -> None:
    op.execute(
        "UPDATE incidents SET chat_id = card_chat_id"
        " WHERE chat_id IS NULL AND card_chat_id IS NOT NULL"
    )
    # Announced, but the card is still waiting in the outbox (or was refused for good).
    first_card_chat = (
        "SELECT outbox.chat_id FROM outbox"
        " WHERE outbox.incident_id = incidents.id AND outbox.kind = 'card'"
        " ORDER BY outbox.id LIMIT 1"
    )
    op.execute(
        f"UPDATE incidents SET chat_id = ({first_card_chat})"
        f" WHERE chat_id IS NULL AND EXISTS ({first_card_chat})"
    )
    op.create_index(op.f("ix_incidents_chat_id_id"), "incidents", ["chat_id", "id"])
    op.create_index(
        op.f("ix_incidents_chat_id_status_id"), "incidents", ["chat_id", "status", "id"]
    )
    op.drop_table("incident_counts")
    op.create_table(
        "incident_counts",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("status", _STATUS, nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(_STATUS_KNOWN, name=op.f("ck_incident_counts_status_known")),
        sa.PrimaryKeyConstraint("chat_id", "status", "source", name=op.f("pk_incident_counts")),
    )
    op.execute(
        "INSERT INTO incident_counts (chat_id, status, source, total)"
        f" SELECT coalesce(chat_id, {_NO_CHAT}), status, source, count(*) FROM incidents"
        f" GROUP BY coalesce(chat_id, {_NO_CHAT}), status, source"
    )


def downgrade() -> None:
    # Incidents keep the chats they were given: nothing tells them apart afterwards.
    op.drop_table("incident_counts")
    op.create_table(
        "incident_counts",
        sa.Column("status", _STATUS, nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(_STATUS_KNOWN, name=op.f("ck_incident_counts_status_known")),
        sa.PrimaryKeyConstraint("status", "source", name=op.f("pk_incident_counts")),
    )
    op.execute(
        "INSERT INTO incident_counts (status, source, total)"
        " SELECT status, source, count(*) FROM incidents GROUP BY status, source"
    )
    op.drop_index(op.f("ix_incidents_chat_id_status_id"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_chat_id_id"), table_name="incidents")
