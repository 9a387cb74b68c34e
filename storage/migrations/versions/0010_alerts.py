"""alerts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 03:00:00.000000

Incidents raised by monitoring systems (Alertmanager, Grafana, a generic event): each
alert key points at the incident it raised last (`alert_keys`), and an incident keeps the
alert's severity, how many times it came again and when it was last seen, and the
incident the same alert raised before. The outbox gains resolve notices (a reply to the
card naming who resolved it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_BEFORE = "kind IN ('card', 'card_edit')"
_KINDS_AFTER = "kind IN ('card', 'card_edit', 'resolved_notice')"


def upgrade() -> None:
    op.add_column("incidents", sa.Column("severity", sa.String(length=32), nullable=True))
    op.add_column(
        "incidents",
        sa.Column("repeat_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "incidents", sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("incidents", sa.Column("previous_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "alert_keys",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.Text(), nullable=False),
        sa.Column("alert_text", sa.Text(), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_alert_keys_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_alert_keys")),
    )
    op.create_index(op.f("ix_alert_keys_incident_id"), "alert_keys", ["incident_id"])
    # SQLite cannot change a table's constraints in place: batch mode copies the table
    # (safe for the outbox: no other table refers to it).
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=128), nullable=True))
        batch.drop_constraint(op.f("ck_outbox_kind_known"), type_="check")
        batch.create_check_constraint(op.f("ck_outbox_kind_known"), _KINDS_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE kind = 'resolved_notice'")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint(op.f("ck_outbox_kind_known"), type_="check")
        batch.create_check_constraint(op.f("ck_outbox_kind_known"), _KINDS_BEFORE)
        batch.drop_column("actor")
    op.drop_index(op.f("ix_alert_keys_incident_id"), table_name="alert_keys")
    op.drop_table("alert_keys")
    # Not in batch mode: copying `incidents` on SQLite would drop the table, and with it,
    # through ON DELETE CASCADE, every outbox row. SQLite 3.35+ drops a column in place.
    for column in ("previous_id", "last_seen_at", "repeat_count", "severity"):
        op.drop_column("incidents", column)
