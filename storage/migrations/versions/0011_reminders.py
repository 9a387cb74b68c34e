"""reminders, snoozes and alert repeats on the timeline

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 04:20:00.000000

An incident can be snoozed (no reminders until a time); reminders are events on the
timeline and replies to the card in the outbox; an alert's repeats are events too.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENTS_BEFORE = (
    "created",
    "status_changed",
    "description_edited",
    "description_appended",
    "owner_set",
    "owner_released",
    "note",
)
_EVENTS_AFTER = (*_EVENTS_BEFORE, "reminder_sent", "snoozed", "alert_repeated")
_DELIVERIES_BEFORE = ("card", "card_edit", "resolved_notice")
_DELIVERIES_AFTER = (*_DELIVERIES_BEFORE, "reminder")


def _kind_in(kinds: Sequence[str]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def _set_kinds(table: str, kinds: Sequence[str]) -> None:
    # SQLite cannot change a table's constraints in place: batch mode copies the table.
    # Neither table has rows that refer to it, so the copy loses nothing.
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(op.f(f"ck_{table}_kind_known"), type_="check")
        batch.create_check_constraint(op.f(f"ck_{table}_kind_known"), _kind_in(kinds))


def upgrade() -> None:
    # Not in batch mode: adding a column needs no copy of `incidents`.
    op.add_column("incidents", sa.Column("snoozed_until", sa.DateTime(timezone=True)))
    _set_kinds("incident_events", _EVENTS_AFTER)
    _set_kinds("outbox", _DELIVERIES_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE kind = 'reminder'")
    op.execute(
        "DELETE FROM incident_events WHERE kind IN ('reminder_sent', 'snoozed', 'alert_repeated')"
    )
    _set_kinds("outbox", _DELIVERIES_BEFORE)
    _set_kinds("incident_events", _EVENTS_BEFORE)
    # In place (SQLite 3.35+): a batch copy of `incidents` would drop the table, and its
    # outbox rows and events with it (ON DELETE CASCADE).
    op.drop_column("incidents", "snoozed_until")
