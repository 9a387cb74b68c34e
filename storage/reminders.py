"""When an incident is due a reminder, decided from what the database holds.

No timer remembers anything: an incident is due when its own rows say so, so a restart,
a failover or a day of downtime neither loses a reminder nor sends a burst of old ones.
Each reminder is an event on the timeline (`reminder_sent`); the latest one is when the
incident was last reminded.

- Untaken: open, nobody owns it, not snoozed, reported at least REMIND_AFTER ago, and not
  reminded within REMIND_EVERY.
- Stale: in progress with an owner, not snoozed, and no event at all (a reminder is one)
  for STALE_AFTER: its owner is nudged, then again after another STALE_AFTER.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, literal, or_, select

from storage.models import EventKind, Incident, IncidentEvent
from storage.rules import Status


class Reminder(StrEnum):
    UNTAKEN = "untaken"
    """Open and nobody has taken it."""
    STALE = "stale"
    """In progress, and nothing has happened for a while."""


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    """REMIND_AFTER, REMIND_EVERY and STALE_AFTER; None turns that reminder off."""

    remind_after: timedelta | None
    remind_every: timedelta | None
    stale_after: timedelta | None

    @classmethod
    def from_seconds(
        cls, remind_after: float | None, remind_every: float | None, stale_after: float | None
    ) -> ReminderPolicy:
        def duration(seconds: float | None) -> timedelta | None:
            return None if seconds is None else timedelta(seconds=seconds)

        return cls(duration(remind_after), duration(remind_every), duration(stale_after))

    @property
    def enabled(self) -> bool:
        return self.remind_after is not None or self.stale_after is not None

    @property
    def shortest(self) -> timedelta | None:
        """The shortest of the durations that are on."""
        durations = [
            d for d in (self.remind_after, self.remind_every, self.stale_after) if d is not None
        ]
        return min(durations, default=None)

    def bounds(self, now: datetime) -> dict[str, Any]:
        """The moments the due query compares with, as its bound values."""
        far_past = datetime.min.replace(tzinfo=now.tzinfo)
        remind_every = self.remind_every
        return {
            "now": now,
            "reported_before": now - self.remind_after if self.remind_after else far_past,
            # Without REMIND_EVERY, the first reminder is the only one.
            "reminded_before": now - remind_every if remind_every else far_past,
            "quiet_since": now - self.stale_after if self.stale_after else far_past,
        }


_INCIDENTS = Incident.__table__
_EVENTS = IncidentEvent.__table__


def _last_event_at(kind: EventKind | None = None) -> Any:
    """When the incident's latest event (of `kind`) happened, as a correlated subquery."""
    conditions: list[ColumnElement[bool]] = [_EVENTS.c.incident_id == _INCIDENTS.c.id]
    if kind is not None:
        conditions.append(_EVENTS.c.kind == literal(kind.value))
    return select(func.max(_EVENTS.c.at)).where(*conditions).scalar_subquery()


@cache
def due_query(*, untaken: bool, stale: bool, one: bool = False) -> Select[Any]:
    """Incidents due a reminder: (id, version, True when it is the untaken kind), oldest
    first, at most `limit` (bound); with `one`, only the incident bound as `id`. The
    policy's `bounds` give the moments compared with."""
    not_snoozed = or_(
        _INCIDENTS.c.snoozed_until.is_(None), _INCIDENTS.c.snoozed_until <= bindparam("now")
    )
    last_reminder = _last_event_at(EventKind.REMINDER_SENT)
    kinds: list[ColumnElement[bool]] = []
    untaken_now = and_(
        _INCIDENTS.c.status == literal(Status.OPEN.value),
        _INCIDENTS.c.owner_name.is_(None),
        _INCIDENTS.c.created_at <= bindparam("reported_before"),
        or_(last_reminder.is_(None), last_reminder <= bindparam("reminded_before")),
    )
    if untaken:
        kinds.append(untaken_now)
    if stale:
        kinds.append(
            and_(
                _INCIDENTS.c.status == literal(Status.IN_PROGRESS.value),
                _INCIDENTS.c.owner_name.is_not(None),
                _last_event_at() <= bindparam("quiet_since"),
            )
        )
    only: list[ColumnElement[bool]] = [_INCIDENTS.c.id == bindparam("id")] if one else []
    return (
        select(
            _INCIDENTS.c.id,
            _INCIDENTS.c.version,
            untaken_now if untaken else literal(False),
        )
        # Reminders reply to the card: an incident with none (the bot was off) has no
        # chat to be reminded in.
        .where(_INCIDENTS.c.card_chat_id.is_not(None), not_snoozed, or_(*kinds), *only)
        .order_by(_INCIDENTS.c.id)
        .limit(bindparam("limit"))
    )
