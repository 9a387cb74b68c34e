"""owners, versions and timelines

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-04 03:20:00.000000

An incident gets an owner (who is handling it) and a version (bumped by every change: the
HTTP API's ETag), and a timeline of events. Every incident stored before gets its
"created" event, so no timeline starts empty.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = (
    "created",
    "status_changed",
    "description_edited",
    "description_appended",
    "owner_set",
    "owner_released",
    "note",
)


def upgrade() -> None:
    op.add_column("incidents", sa.Column("owner_id", sa.BigInteger(), nullable=True))
    op.add_column("incidents", sa.Column("owner_name", sa.String(length=128), nullable=True))
    op.add_column(
        "incidents", sa.Column("version", sa.Integer(), nullable=False, server_default="1")
    )
    op.create_index(op.f("ix_incidents_owner_id_id"), "incidents", ["owner_id", "id"])
    op.create_table(
        "incident_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("status_from", sa.String(length=16), nullable=True),
        sa.Column("status_to", sa.String(length=16), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN (" + ", ".join(f"'{kind}'" for kind in _KINDS) + ")",
            name=op.f("ck_incident_events_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_events_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
    )
    op.create_index(
        op.f("ix_incident_events_incident_id_id"), "incident_events", ["incident_id", "id"]
    )
    op.execute(
        "INSERT INTO incident_events (incident_id, at, kind, actor, status_to, text)"
        " SELECT id, created_at, 'created', created_by, status,"
        " CASE WHEN message_id IS NULL THEN 'api' ELSE 'chat' END"
        " FROM incidents ORDER BY id"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_incident_events_incident_id_id"), table_name="incident_events")
    op.drop_table("incident_events")
    op.drop_index(op.f("ix_incidents_owner_id_id"), table_name="incidents")
    # In place (SQLite 3.35+): a batch copy of `incidents` would drop the table, and its
    # outbox rows with it (ON DELETE CASCADE).
    for column in ("version", "owner_name", "owner_id"):
        op.drop_column("incidents", column)
