"""Incidents raised by monitoring systems: one per problem, resolved when the problem is.

A monitoring system names each problem with a key (an Alertmanager or Grafana group's
`groupKey`, a generic event's `dedup_key`), says it again every few minutes while it
lasts, and then says it is over. For each such alert:

- A trigger whose key has no unresolved incident raises one, its card queued as any
  announced incident's. If the key raised an incident before (since resolved or closed,
  by the alert or by hand), the new one names it (`previous_id`).
- A trigger whose key's incident is open or in progress creates nothing: the incident
  counts the repeat, records when it was last seen and takes the alert's description
  and severity as they are now (a third host started firing), keeping what people
  appended to the description. Its card is edited at most
  once per `edit_interval` for repeats: a pending edit takes the new state along, and a
  new one waits until the interval since the card's last edit has passed.
- A resolve moves the key's open or in-progress incident to resolved, by the monitoring
  system; its card is edited at once, and a short reply to the card tells the chat.
  A resolve for a key with no unresolved incident changes nothing.

Each alert is one transaction, committed before `receive` returns, so a monitoring
system told "done" never has to send it again, and one told nothing (a crash, a 503)
that sends it again finds nothing half-stored. Instances sharing a database may receive
the same alert at once (Alertmanager posting to each of them): a key's row in
`alert_keys` is moved only from the incident it was read pointing at, and an incident is
changed only from the status it was read in (compare-and-set, held by the database's own
row locks and primary key, on SQLite and PostgreSQL alike). The instance that loses such
a race rolls back and judges the alert again against what the other one committed.

The store's own operations know nothing of alerts; this module writes beside them,
through the store's write transactions and its kept counts (`IncidentStore.writers`,
`count_changes`, `notify_delivery_queued`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Insert, and_, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    AlertKey,
    Delivery,
    DeliveryKind,
    DeliveryState,
    EventKind,
    Incident,
    IncidentRow,
    utcnow,
)
from storage.outbox import queue_card_edit
from storage.rules import (
    DESCRIPTION_MAX_LENGTH,
    Status,
    normalize_description,
    normalize_name,
    normalize_severity,
    normalize_source,
)
from storage.store import Actor, CardRequest, IncidentStore, StatusChange, TimelineEvent

EDIT_INTERVAL = timedelta(minutes=1)
"""At most one edit of an incident's card per this interval for its repeats."""

REPEAT_MIN_GAP = timedelta(seconds=1)
"""Triggers of one key closer together than this count as one repeat. A monitoring system
repeats an alert minutes apart (Alertmanager's group_interval); a receiver listing several
instances' URLs delivers each notification to all of them within milliseconds."""

MAX_ATTEMPTS = 50
"""Races lost in a row before giving up. Each lost race means another transaction
committed a change of the same key meanwhile, so a handful is already unlikely."""

UNRESOLVED = (Status.OPEN, Status.IN_PROGRESS)
"""The statuses in which an incident still stands for its alert."""

_INCIDENTS = Incident.metadata.tables[Incident.__tablename__]
_KEYS = AlertKey.metadata.tables[AlertKey.__tablename__]
_OUTBOX = Delivery.metadata.tables[Delivery.__tablename__]
_ROW_COLUMNS = [_INCIDENTS.c[name] for name in IncidentRow._fields]


class AlertAction(StrEnum):
    TRIGGER = "trigger"
    """The problem is there (the first time, or again)."""
    RESOLVE = "resolve"
    """The problem is over."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, as a receiver (`api.alerts`) reads it from a monitoring system's body."""

    key: str
    """Names the problem; receivers prefix their kind ("alertmanager:", "grafana:", ...),
    so that two systems' keys never meet."""
    action: AlertAction
    description: str
    """What the incident says: for a trigger (a resolve keeps the incident's own)."""
    source: str
    actor: str
    """Who the monitoring system is to people: "Alertmanager", "Grafana", "zabbix". It
    reports the incident, and resolves it."""
    origin: str
    """The receiver it came through ("alertmanager", "grafana", "alerts"): the timeline's
    "created" event says so."""
    severity: str | None = None


class AlertOutcome(StrEnum):
    CREATED = "created"
    """A new incident was raised."""
    REPEATED = "repeated"
    """The key's unresolved incident counted the repeat."""
    RESOLVED = "resolved"
    """The key's incident was resolved."""
    IGNORED = "ignored"
    """Nothing to do: a resolve for a key whose incident is resolved or closed already,
    or that never raised one."""


@dataclass(frozen=True, slots=True)
class AlertReceived:
    outcome: AlertOutcome
    incident: IncidentRow | None
    """The key's incident as the alert left it (None: the key never raised one)."""


class AlertRaceError(RuntimeError):
    """The key kept changing under this alert, MAX_ATTEMPTS times over."""


@dataclass(frozen=True, slots=True)
class _Applied:
    """What an alert did, not yet committed, and whether it queued a delivery."""

    received: AlertReceived
    queued: bool = False
    status_changes: tuple[StatusChange, ...] = ()


@dataclass(frozen=True, slots=True)
class _Checked:
    """An alert's values as the store keeps them."""

    key_hash: str
    description: str
    source: str
    actor: str | None
    origin: str
    severity: str | None


class AlertStore:
    """Turns alerts into incidents of `store`, one per key while it is unresolved."""

    def __init__(
        self,
        store: IncidentStore,
        *,
        edit_interval: timedelta = EDIT_INTERVAL,
        repeat_min_gap: timedelta = REPEAT_MIN_GAP,
    ) -> None:
        self._store = store
        self._edit_interval = edit_interval
        self._repeat_min_gap = repeat_min_gap

    async def receive(self, alert: Alert, *, card: CardRequest | None = None) -> AlertReceived:
        """Apply the alert, committed before this returns.

        With `card`, a new incident's card is queued there (and the incident belongs to
        that chat), as for an incident created over HTTP; an incident's edits and resolve
        notice go wherever its card is. Raises `InvalidIncidentError` for a description
        or source the store refuses.
        """
        checked = _check(alert)
        # After the store's writes queued before it (a button closing the incident), as
        # the store's own plain write path is.
        await self._store.settled()
        for _ in range(MAX_ATTEMPTS):
            async with self._store.writers.session() as session:
                keyed = await _keyed(session, checked.key_hash)
                current = None if keyed is None else keyed.incident
                applied: _Applied | None
                if alert.action is AlertAction.RESOLVE:
                    applied = await self._resolve(session, current, checked)
                elif keyed is not None and keyed.incident.status in UNRESOLVED:
                    applied = await self._repeat(session, keyed, checked)
                else:
                    applied = await self._raise(session, alert.key, current, checked, card)
                if applied is None:
                    # Lost a race with another instance: judge the alert again.
                    await session.rollback()
                    continue
                await session.commit()
            if applied.queued:
                self._store.notify_delivery_queued()
            if applied.status_changes:
                self._store.notify_status_changed(applied.status_changes)
            return applied.received
        raise AlertRaceError(f"Alert {alert.key!r} kept changing under {MAX_ATTEMPTS} attempts")

    async def _raise(
        self,
        session: AsyncSession,
        key: str,
        previous: IncidentRow | None,
        checked: _Checked,
        card: CardRequest | None,
    ) -> _Applied | None:
        """A new incident for the key, and the key moved to it; None if another
        transaction moved the key first."""
        now = utcnow()
        values = {
            "description": checked.description,
            "source": checked.source,
            "status": Status.OPEN,
            "created_by": checked.actor,
            "updated_by": checked.actor,
            "chat_id": None if card is None else card.chat_id,
            "severity": checked.severity,
            "last_seen_at": now,
            "previous_id": None if previous is None else previous.id,
            "created_at": now,
            "updated_at": now,
        }
        inserted = await session.execute(
            insert(_INCIDENTS).values(values).returning(*_ROW_COLUMNS)
        )
        incident = IncidentRow._make(inserted.one())
        if previous is None:
            moved = await session.execute(
                _insert_key(session).values(
                    key_hash=checked.key_hash,
                    dedup_key=key,
                    alert_text=checked.description,
                    incident_id=incident.id,
                )
            )
        else:
            moved = await session.execute(
                update(_KEYS)
                .where(_KEYS.c.key_hash == checked.key_hash, _KEYS.c.incident_id == previous.id)
                .values(incident_id=incident.id, alert_text=checked.description)
                .returning(_KEYS.c.key_hash)
            )
        if moved.first() is None:
            return None
        await self._store.count_changes(await session.connection(), [(None, incident)])
        created = TimelineEvent(
            incident.id,
            now,
            EventKind.CREATED,
            Actor(checked.actor),
            status_to=Status.OPEN,
            text=checked.origin,
        )
        await self._store.record_events(session, [created])
        if card is not None:
            await session.execute(
                insert(_OUTBOX).values(
                    kind=DeliveryKind.CARD,
                    incident_id=incident.id,
                    chat_id=card.chat_id,
                    reply_to_message_id=card.reply_to_message_id,
                    message_thread_id=card.message_thread_id,
                    locale=card.locale,
                    state=DeliveryState.PENDING,
                    attempts=0,
                    not_before=now,
                    created_at=now,
                )
            )
        return _Applied(AlertReceived(AlertOutcome.CREATED, incident), queued=card is not None)

    async def _repeat(
        self, session: AsyncSession, keyed: _Keyed, checked: _Checked
    ) -> _Applied | None:
        """Count a repeat on the key's unresolved incident; None if its status changed
        meanwhile (it may need a new incident now)."""
        current = keyed.incident
        now = utcnow()
        seen = _INCIDENTS.c.last_seen_at
        gap = self._repeat_min_gap
        # Another instance may have written a later time than this one's `now` meanwhile:
        # the gap is counted either way, and the time seen last never goes back.
        counted = case((and_(seen > now - gap, seen < now + gap), 0), else_=1)
        updated = await session.execute(
            update(_INCIDENTS)
            .where(_INCIDENTS.c.id == current.id, _INCIDENTS.c.status.in_(UNRESOLVED))
            .values(
                description=_with_alert_text(
                    current.description, keyed.alert_text, checked.description
                ),
                severity=checked.severity or current.severity,
                repeat_count=_INCIDENTS.c.repeat_count + counted,
                last_seen_at=case((seen > now, seen), else_=now),
                updated_at=now,
                # The card and the alert's answer show the repeat: a change, as ETags go.
                version=_INCIDENTS.c.version + 1,
            )
            .returning(*_ROW_COLUMNS)
        )
        row = updated.first()
        if row is None:
            return None
        incident = IncidentRow._make(row)
        if checked.description != keyed.alert_text:
            await session.execute(
                update(_KEYS)
                .where(_KEYS.c.key_hash == checked.key_hash)
                .values(alert_text=checked.description)
            )
        events = []
        if incident.repeat_count != current.repeat_count:
            events.append(
                TimelineEvent(
                    incident.id,
                    now,
                    EventKind.ALERT_REPEATED,
                    Actor(checked.actor),
                    text=str(incident.repeat_count),
                )
            )
        if incident.description != current.description:
            events.append(
                TimelineEvent(
                    incident.id,
                    now,
                    EventKind.DESCRIPTION_EDITED,
                    Actor(checked.actor),
                    text=incident.description,
                )
            )
        if events:
            await self._store.record_events(session, events)
        queued = await self._queue_repeat_edit(session, incident, now)
        return _Applied(AlertReceived(AlertOutcome.REPEATED, incident), queued)

    async def _queue_repeat_edit(
        self, session: AsyncSession, incident: IncidentRow, now: datetime
    ) -> bool:
        """Have the card show the repeat, within one edit per `edit_interval`.

        A pending edit of the card will draw it as it is when sent, this repeat included,
        so none is added. Otherwise the edit waits until the interval since the card was
        last sent or edited has passed. An incident whose card is still on its way needs
        none: the card is drawn when it is sent. True if an edit was queued.
        """
        if incident.card_chat_id is None or incident.card_message_id is None:
            return False
        if incident.snoozed_until is not None and incident.snoozed_until > now:
            # Snoozed: the card shows the repeats once someone changes it, or after.
            return False
        pending = await session.scalar(
            select(_OUTBOX.c.id)
            .where(
                _OUTBOX.c.incident_id == incident.id,
                _OUTBOX.c.kind == DeliveryKind.CARD_EDIT,
                _OUTBOX.c.state == DeliveryState.PENDING,
            )
            .limit(1)
        )
        if pending is not None:
            return False
        last_drawn: datetime | None = await session.scalar(
            select(func.max(_OUTBOX.c.finished_at)).where(
                _OUTBOX.c.incident_id == incident.id,
                _OUTBOX.c.kind.in_((DeliveryKind.CARD, DeliveryKind.CARD_EDIT)),
                _OUTBOX.c.state == DeliveryState.SENT,
            )
        )
        not_before = now if last_drawn is None else max(now, last_drawn + self._edit_interval)
        queue_card_edit(session, incident.id, incident.card_chat_id, not_before=not_before)
        return True

    async def _resolve(
        self, session: AsyncSession, current: IncidentRow | None, checked: _Checked
    ) -> _Applied | None:
        """Resolve the key's unresolved incident, edit its card at once and reply to it;
        None if its status changed meanwhile."""
        if current is None or current.status not in UNRESOLVED:
            return _Applied(AlertReceived(AlertOutcome.IGNORED, current))
        now = utcnow()
        updated = await session.execute(
            update(_INCIDENTS)
            .where(_INCIDENTS.c.id == current.id, _INCIDENTS.c.status == current.status)
            .values(
                status=Status.RESOLVED,
                updated_at=now,
                updated_by=checked.actor,
                version=_INCIDENTS.c.version + 1,
            )
            .returning(*_ROW_COLUMNS)
        )
        row = updated.first()
        if row is None:
            return None
        incident = IncidentRow._make(row)
        await self._store.count_changes(await session.connection(), [(current, incident)])
        resolved = TimelineEvent(
            incident.id,
            now,
            EventKind.STATUS_CHANGED,
            Actor(checked.actor),
            status_from=current.status,
            status_to=Status.RESOLVED,
        )
        await self._store.record_events(session, [resolved])
        queued = False
        if incident.card_chat_id is not None and incident.card_message_id is not None:
            # An edit held back for repeats goes now, showing the resolve too.
            hurried = await session.execute(
                update(_OUTBOX)
                .where(
                    _OUTBOX.c.incident_id == incident.id,
                    _OUTBOX.c.kind == DeliveryKind.CARD_EDIT,
                    _OUTBOX.c.state == DeliveryState.PENDING,
                )
                .values(not_before=now)
                .returning(_OUTBOX.c.id)
            )
            if not hurried.all():
                queue_card_edit(session, incident.id, incident.card_chat_id)
            queued = True
        # The notice goes where the card is, or is still to be sent (the incident's chat:
        # an alert's card is an announcement there).
        notice_chat = incident.card_chat_id or incident.chat_id
        if notice_chat is not None:
            await session.execute(
                insert(_OUTBOX).values(
                    kind=DeliveryKind.RESOLVED_NOTICE,
                    incident_id=incident.id,
                    chat_id=notice_chat,
                    actor=checked.actor,
                    state=DeliveryState.PENDING,
                    attempts=0,
                    not_before=now,
                    created_at=now,
                )
            )
            queued = True
        change = StatusChange(incident, previous=current.status, changed=True)
        return _Applied(AlertReceived(AlertOutcome.RESOLVED, incident), queued, (change,))


def key_hash(key: str) -> str:
    """What `alert_keys` is keyed by: a key's sha256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _check(alert: Alert) -> _Checked:
    """The alert's values as the store keeps them; InvalidIncidentError for the store's
    rules (before any transaction starts)."""
    return _Checked(
        key_hash=key_hash(alert.key),
        description=normalize_description(alert.description)
        if alert.action is AlertAction.TRIGGER
        else "",
        source=normalize_source(alert.source),
        actor=normalize_name(alert.actor),
        origin=alert.origin,
        severity=normalize_severity(alert.severity),
    )


@dataclass(frozen=True, slots=True)
class _Keyed:
    incident: IncidentRow
    """The incident the key raised last, as it is now."""
    alert_text: str
    """The description the alert gave last."""


async def _keyed(session: AsyncSession, hashed: str) -> _Keyed | None:
    """What the key points at; None if it never raised an incident."""
    row = (
        await session.execute(
            select(*_ROW_COLUMNS, _KEYS.c.alert_text)
            .join_from(_KEYS, _INCIDENTS, _KEYS.c.incident_id == _INCIDENTS.c.id)
            .where(_KEYS.c.key_hash == hashed)
        )
    ).first()
    return None if row is None else _Keyed(IncidentRow._make(row[:-1]), row[-1])


def _with_alert_text(description: str, old: str, new: str) -> str:
    """The incident's description with the alert's part (`old`, at its start) replaced
    by `new`, and what people appended after it kept; a description rewritten
    altogether is left as it is."""
    if not description.startswith(old):
        return description
    appended = description[len(old) :]
    room = DESCRIPTION_MAX_LENGTH - len(appended)
    return new[:room] + appended


def _insert_key(session: AsyncSession) -> Insert:
    """Adds a key's row unless one is there already (then returns no row): INSERT ... ON
    CONFLICT DO NOTHING, which SQLite and PostgreSQL share and SQLAlchemy spells per
    dialect."""
    statement: Any
    if session.get_bind().dialect.name == "postgresql":
        statement = postgresql.insert(_KEYS).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(_KEYS).on_conflict_do_nothing()
    returning: Insert = statement.returning(_KEYS.c.key_hash)
    return returning
