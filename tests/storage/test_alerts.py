"""The alert store: one incident per alert key while it is unresolved, repeats counted,
resolved by the monitoring system, with its card's edits folded and a resolve notice;
and one incident however many instances receive the same alert at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import Connection, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.alerts import Alert, AlertAction, AlertOutcome, AlertStore
from storage.database import alembic_config, create_engine, create_session_factory
from storage.models import (
    AlertKey,
    Delivery,
    DeliveryKind,
    DeliveryState,
    EventKind,
    utcnow,
)
from storage.rules import InvalidIncidentError, Status
from storage.store import Actor, CardRequest, IncidentStore, StatusChange
from tests.storage.counts import counts_match_incidents

CHAT = -1_001_234


def firing(key: str = '{}:{alertname="DiskFull"}', **fields: object) -> Alert:
    values: dict[str, object] = {
        "key": f"alertmanager:{key}",
        "action": AlertAction.TRIGGER,
        "description": "DiskFull\n3 firing: db-1, db-2, db-3",
        "source": "alertmanager",
        "actor": "Alertmanager",
        "origin": "alertmanager",
        "severity": "critical",
    }
    values.update(fields)
    return Alert(**values)  # type: ignore[arg-type]


def resolved(key: str = '{}:{alertname="DiskFull"}') -> Alert:
    return firing(key, action=AlertAction.RESOLVE, description="")


@pytest.fixture
def alerts(store: IncidentStore) -> AlertStore:
    """Every trigger counts as a repeat, however close together."""
    return AlertStore(store, repeat_min_gap=timedelta(0))


async def deliveries(engine: AsyncEngine) -> list[Delivery]:
    async with create_session_factory(engine)() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.id)))


async def send_cards(store: IncidentStore, message_id: int = 500) -> None:
    """What the bot's sender records once Telegram took the pending cards."""
    for number, pending in enumerate(await store.outbox.due()):
        if pending.delivery.kind == DeliveryKind.CARD:
            await store.outbox.mark_sent(
                [pending.delivery.id],
                card=(pending.incident.id, pending.delivery.chat_id, message_id + number),
                drawn_at=pending.incident.updated_at,
            )


async def test_first_trigger_raises_incident_with_card(
    alerts: AlertStore, store: IncidentStore, engine: AsyncEngine
) -> None:
    received = await alerts.receive(firing(), card=CardRequest(CHAT))

    incident = received.incident
    assert received.outcome is AlertOutcome.CREATED
    assert incident is not None
    assert (incident.status, incident.source, incident.severity) == (
        Status.OPEN,
        "alertmanager",
        "critical",
    )
    assert (incident.created_by, incident.chat_id, incident.repeat_count) == (
        "Alertmanager",
        CHAT,
        0,
    )
    assert incident.last_seen_at == incident.created_at
    assert incident.previous_id is None
    assert await store.get(incident.id) == incident
    assert [(d.kind, d.chat_id) for d in await deliveries(engine)] == [(DeliveryKind.CARD, CHAT)]
    assert await counts_match_incidents(engine)


async def test_repeats_count_on_the_unresolved_incident(
    alerts: AlertStore, store: IncidentStore, engine: AsyncEngine
) -> None:
    first = await alerts.receive(firing())
    await alerts.receive(firing())
    await store.change_status(1, Status.IN_PROGRESS, changed_by="Oleg")
    third = await alerts.receive(
        firing(description="DiskFull\n4 firing: db-1, db-2, db-3, db-4", severity="warning")
    )

    assert third.outcome is AlertOutcome.REPEATED
    assert third.incident is not None and first.incident is not None
    assert third.incident.id == first.incident.id
    assert third.incident.repeat_count == 2
    assert third.incident.status == Status.IN_PROGRESS
    assert third.incident.description.endswith("db-4")
    assert third.incident.severity == "warning"
    assert third.incident.last_seen_at is not None
    assert third.incident.last_seen_at > first.incident.last_seen_at  # type: ignore[operator]
    assert (await store.list()).total == 1
    assert await counts_match_incidents(engine)


async def test_triggers_within_a_second_count_once(store: IncidentStore) -> None:
    alerts = AlertStore(store)  # the default gap: one notification delivered to two URLs

    await alerts.receive(firing())
    await alerts.receive(firing())
    again = await alerts.receive(firing())

    assert again.incident is not None
    assert (again.outcome, again.incident.repeat_count) == (AlertOutcome.REPEATED, 0)


async def test_resolve_resolves_by_the_monitoring_system_and_queues_notice(
    alerts: AlertStore, store: IncidentStore, engine: AsyncEngine
) -> None:
    await alerts.receive(firing(), card=CardRequest(CHAT))
    await send_cards(store)

    received = await alerts.receive(resolved(), card=CardRequest(CHAT))

    assert received.outcome is AlertOutcome.RESOLVED
    assert received.incident is not None
    assert (received.incident.status, received.incident.updated_by) == (
        Status.RESOLVED,
        "Alertmanager",
    )
    pending = [
        (d.kind, d.chat_id, d.actor)
        for d in await deliveries(engine)
        if d.state == DeliveryState.PENDING
    ]
    assert pending == [
        (DeliveryKind.CARD_EDIT, CHAT, None),
        (DeliveryKind.RESOLVED_NOTICE, CHAT, "Alertmanager"),
    ]
    assert await counts_match_incidents(engine)


async def test_resolve_of_nothing_unresolved_changes_nothing(
    alerts: AlertStore, store: IncidentStore, engine: AsyncEngine
) -> None:
    unknown = await alerts.receive(resolved("never-fired"))
    await alerts.receive(firing())
    await alerts.receive(resolved())
    twice = await alerts.receive(resolved())

    assert (unknown.outcome, unknown.incident) == (AlertOutcome.IGNORED, None)
    assert twice.outcome is AlertOutcome.IGNORED
    assert twice.incident is not None and twice.incident.status == Status.RESOLVED
    assert (await store.list()).total == 1
    assert await counts_match_incidents(engine)


async def test_trigger_after_resolve_raises_new_incident_naming_the_earlier(
    alerts: AlertStore, store: IncidentStore, engine: AsyncEngine
) -> None:
    await alerts.receive(firing())
    await alerts.receive(resolved())

    again = await alerts.receive(firing())
    repeat = await alerts.receive(firing())

    assert again.outcome is AlertOutcome.CREATED
    assert again.incident is not None and again.incident.id == 2
    assert again.incident.previous_id == 1
    assert repeat.incident is not None
    assert (repeat.incident.id, repeat.incident.repeat_count) == (2, 1)
    assert (await store.get(1)).status == Status.RESOLVED
    assert await counts_match_incidents(engine)


async def test_incident_closed_by_hand_stays_closed_and_a_trigger_makes_new_one(
    alerts: AlertStore, store: IncidentStore
) -> None:
    await alerts.receive(firing())
    await store.change_status(1, Status.CLOSED, changed_by="Oleg")

    ignored = await alerts.receive(resolved())
    again = await alerts.receive(firing())

    assert ignored.outcome is AlertOutcome.IGNORED
    assert (await store.get(1)).status == Status.CLOSED
    assert again.incident is not None
    assert (again.outcome, again.incident.previous_id) == (AlertOutcome.CREATED, 1)


async def test_reopened_incident_counts_repeats_again(
    alerts: AlertStore, store: IncidentStore
) -> None:
    await alerts.receive(firing())
    await alerts.receive(resolved())
    await store.change_status(1, Status.IN_PROGRESS, changed_by="Oleg")

    repeat = await alerts.receive(firing())
    resolve = await alerts.receive(resolved())

    assert repeat.outcome is AlertOutcome.REPEATED
    assert resolve.outcome is AlertOutcome.RESOLVED
    assert (await store.list()).total == 1


async def test_keys_apart_are_incidents_apart(alerts: AlertStore, store: IncidentStore) -> None:
    await alerts.receive(firing("a"))
    await alerts.receive(firing("b"))
    await alerts.receive(replace(firing("a"), key="grafana:1:a"))
    await alerts.receive(resolved("a"))

    page = await store.list()
    assert [(incident.id, incident.status) for incident in page.items] == [
        (3, Status.OPEN),
        (2, Status.OPEN),
        (1, Status.RESOLVED),
    ]


async def test_a_key_of_any_length_is_one_key(alerts: AlertStore, engine: AsyncEngine) -> None:
    key = "{}:{" + ", ".join(f'label{n}="{"x" * 50}"' for n in range(500)) + "}"

    await alerts.receive(firing(key))
    again = await alerts.receive(firing(key))

    assert again.outcome is AlertOutcome.REPEATED
    async with create_session_factory(engine)() as session:
        stored = (await session.scalars(select(AlertKey))).one()
    assert stored.dedup_key == f"alertmanager:{key}"
    assert len(stored.key_hash) == 64


async def test_bad_description_or_source_is_refused_before_anything_is_stored(
    alerts: AlertStore, store: IncidentStore
) -> None:
    with pytest.raises(InvalidIncidentError):
        await alerts.receive(firing(description=" \u200b "))
    with pytest.raises(InvalidIncidentError):
        await alerts.receive(firing(source="not a source"))

    assert (await store.list()).total == 0


async def test_repeat_edits_are_folded_to_one_per_interval(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    alerts = AlertStore(store, edit_interval=timedelta(minutes=1), repeat_min_gap=timedelta(0))
    await alerts.receive(firing(), card=CardRequest(CHAT))
    await send_cards(store)
    sent_at = max(d.finished_at for d in await deliveries(engine) if d.finished_at)

    for _ in range(5):
        await alerts.receive(firing())

    edits = [d for d in await deliveries(engine) if d.kind == DeliveryKind.CARD_EDIT]
    assert len(edits) == 1
    assert edits[0].not_before == sent_at + timedelta(minutes=1)
    assert await store.outbox.due() == []  # nothing to send before the minute is up
    assert (await store.get(1)).repeat_count == 5

    await alerts.receive(resolved())

    edits = [d for d in await deliveries(engine) if d.kind == DeliveryKind.CARD_EDIT]
    assert len(edits) == 1  # the held edit goes now, showing the resolve as well
    assert edits[0].not_before <= utcnow()
    due = [(p.delivery.kind, p.incident.status) for p in await store.outbox.due()]
    assert due == [
        (DeliveryKind.CARD_EDIT, Status.RESOLVED),
        (DeliveryKind.RESOLVED_NOTICE, Status.RESOLVED),
    ]


async def test_repeat_edit_waits_for_the_interval_since_the_last_edit(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    alerts = AlertStore(store, edit_interval=timedelta(minutes=1), repeat_min_gap=timedelta(0))
    await alerts.receive(firing(), card=CardRequest(CHAT))
    await send_cards(store)
    await store.outbox.mark_sent([d.id for d in await deliveries(engine)])
    long_ago = utcnow() - timedelta(minutes=5)
    async with create_session_factory(engine)() as session:
        for delivery in await session.scalars(select(Delivery)):
            delivery.finished_at = long_ago
        await session.commit()

    await alerts.receive(firing())

    edit = [d for d in await deliveries(engine) if d.kind == DeliveryKind.CARD_EDIT]
    assert len(edit) == 1 and edit[0].not_before <= utcnow()  # a minute has passed: at once


async def test_incident_without_card_queues_no_edit_nor_notice(
    alerts: AlertStore, engine: AsyncEngine
) -> None:
    await alerts.receive(firing())  # the bot is off: no chat to announce in
    await alerts.receive(firing())
    await alerts.receive(resolved())

    assert await deliveries(engine) == []


async def test_resolve_before_the_card_was_sent_queues_notice_for_its_chat(
    alerts: AlertStore, engine: AsyncEngine
) -> None:
    await alerts.receive(firing(), card=CardRequest(CHAT))
    await alerts.receive(firing())  # the card is drawn when sent: no edit
    await alerts.receive(resolved())

    assert [(d.kind, d.chat_id) for d in await deliveries(engine)] == [
        (DeliveryKind.CARD, CHAT),
        (DeliveryKind.RESOLVED_NOTICE, CHAT),
    ]


async def test_same_alert_received_by_instances_at_once_makes_one_incident(
    store: IncidentStore, database_url: str, engine: AsyncEngine
) -> None:
    # Two instances: each its own engine, pool and write turns, sharing the database.
    other_engine = create_engine(database_url)
    other = IncidentStore(create_session_factory(other_engine))
    instances = [
        AlertStore(store, repeat_min_gap=timedelta(0)),
        AlertStore(other, repeat_min_gap=timedelta(0)),
    ]
    try:
        for round_ in range(3):
            triggers = [
                instances[n % 2].receive(firing(), card=CardRequest(CHAT)) for n in range(8)
            ]
            outcomes = await asyncio.gather(*triggers)
            created = [o for o in outcomes if o.outcome is AlertOutcome.CREATED]
            assert len(created) == 1, round_
            assert {o.incident.id for o in outcomes if o.incident} == {created[0].incident.id}  # type: ignore[union-attr]
            resolves = await asyncio.gather(
                *(instances[n % 2].receive(resolved()) for n in range(4))
            )
            assert sorted(o.outcome for o in resolves) == [
                AlertOutcome.IGNORED,
                AlertOutcome.IGNORED,
                AlertOutcome.IGNORED,
                AlertOutcome.RESOLVED,
            ]
    finally:
        await other_engine.dispose()

    page = await store.list()
    assert [(i.status, i.repeat_count) for i in page.items] == [(Status.RESOLVED, 7)] * 3
    # Each names the one before (on PostgreSQL, ids that lost races are skipped).
    earlier = [incident.id for incident in page.items[1:]]
    assert [incident.previous_id for incident in page.items] == [*earlier, None]
    kinds = [d.kind for d in await deliveries(engine)]
    assert kinds.count(DeliveryKind.CARD) == 3
    assert kinds.count(DeliveryKind.RESOLVED_NOTICE) == 3
    assert await counts_match_incidents(engine)


def _migrate_to(revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        if revision == "head":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    return run


async def test_migration_down_and_up_again_keeps_incidents_and_their_cards(
    alerts: AlertStore, store: IncidentStore, engine: AsyncEngine
) -> None:
    await alerts.receive(firing(), card=CardRequest(CHAT))
    await alerts.receive(resolved())

    async with engine.begin() as connection:
        await connection.run_sync(_migrate_to("0009"))
        kept = (await connection.execute(text("SELECT kind, state FROM outbox"))).all()
    async with engine.begin() as connection:
        await connection.run_sync(_migrate_to("head"))

    # Going down forgets what only alerts have (the notice); the card stays queued.
    assert [tuple(row) for row in kept] == [("card", "pending")]
    incident = await store.get(1)
    assert (incident.status, incident.repeat_count, incident.severity) == (
        Status.RESOLVED,
        0,
        None,
    )
    assert await counts_match_incidents(engine)


async def test_alert_changes_are_on_the_timeline_and_move_the_version(
    alerts: AlertStore, store: IncidentStore
) -> None:
    created = await alerts.receive(firing())
    repeated = await alerts.receive(firing())
    grown = await alerts.receive(firing(description="DiskFull\n4 firing: db-1, db-2, db-3, db-4"))
    resolve = await alerts.receive(resolved())

    versions = [r.incident.version for r in (created, repeated, grown, resolve) if r.incident]
    assert versions == [1, 2, 3, 4]
    events = (await store.events(1)).items
    assert [(e.kind, e.actor, e.status_from, e.status_to, e.text) for e in events] == [
        (EventKind.CREATED, "Alertmanager", None, Status.OPEN, "alertmanager"),
        (EventKind.ALERT_REPEATED, "Alertmanager", None, None, "1"),
        (EventKind.ALERT_REPEATED, "Alertmanager", None, None, "2"),
        (
            EventKind.DESCRIPTION_EDITED,
            "Alertmanager",
            None,
            None,
            "DiskFull\n4 firing: db-1, db-2, db-3, db-4",
        ),
        (EventKind.STATUS_CHANGED, "Alertmanager", Status.OPEN, Status.RESOLVED, None),
    ]


async def test_resolve_is_told_to_the_status_observer(engine: AsyncEngine) -> None:
    told: list[StatusChange] = []
    store = IncidentStore(create_session_factory(engine), on_status_changed=told.extend)
    alerts = AlertStore(store)

    await alerts.receive(firing())
    await alerts.receive(firing())
    await alerts.receive(resolved())
    await alerts.receive(resolved())

    assert [(c.incident.id, c.previous, c.incident.status) for c in told] == [
        (1, Status.OPEN, Status.RESOLVED)
    ]


async def test_repeat_keeps_what_people_appended_to_the_description(
    alerts: AlertStore, store: IncidentStore
) -> None:
    await alerts.receive(firing())
    await store.amend(1, by=Actor("Oleg"), description_append="Restarted db-2, no change")

    grown = await alerts.receive(firing(description="DiskFull\n4 firing: db-1, db-2, db-3, db-4"))
    shrunk = await alerts.receive(firing(description="DiskFull\n1 firing: db-4"))

    assert grown.incident is not None and shrunk.incident is not None
    assert grown.incident.description == (
        "DiskFull\n4 firing: db-1, db-2, db-3, db-4\nRestarted db-2, no change"
    )
    assert shrunk.incident.description == "DiskFull\n1 firing: db-4\nRestarted db-2, no change"
    assert shrunk.incident.repeat_count == 2
