"""Owners, notes and the timeline: take, release, add_note, amend, events, list by owner."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_engine, create_session_factory
from storage.models import EventKind
from storage.rules import Status
from storage.store import (
    Actor,
    ChatScope,
    IncidentNotFoundError,
    IncidentStore,
    NewIncident,
    OwnedByOtherError,
    TransitionNotAllowedError,
    VersionMismatchError,
)

OLEG = Actor("Oleg", 42)
ANNA = Actor("Anna", 7)


async def _incident(store: IncidentStore, **fields: object) -> int:
    created = await store.create(NewIncident("Router down", **fields))  # type: ignore[arg-type]
    return created.incident.id


async def test_take_sets_the_owner_and_moves_an_open_incident_to_in_progress(
    store: IncidentStore,
) -> None:
    incident_id = await _incident(store, created_by="Anna", created_by_id=7, chat_id=-5)

    taken = await store.take(incident_id, OLEG)

    assert taken.changed
    assert (taken.incident.owner_id, taken.incident.owner_name) == (42, "Oleg")
    assert taken.incident.status == Status.IN_PROGRESS
    assert taken.incident.updated_by == "Oleg"
    assert taken.incident.version == 2
    events = (await store.events(incident_id)).items
    assert [(e.kind, e.actor, e.actor_id) for e in events] == [
        (EventKind.CREATED, "Anna", 7),
        (EventKind.OWNER_SET, "Oleg", 42),
        (EventKind.STATUS_CHANGED, "Oleg", 42),
    ]
    assert events[0].text == "chat"
    assert (events[2].status_from, events[2].status_to) == (Status.OPEN, Status.IN_PROGRESS)
    assert (await store.list(status=Status.IN_PROGRESS)).total == 1
    assert (await store.list(status=Status.OPEN)).total == 0


async def test_taking_over_needs_a_confirmation_of_the_version_seen(
    store: IncidentStore,
) -> None:
    incident_id = await _incident(store)
    owned = (await store.take(incident_id, OLEG)).incident

    with pytest.raises(OwnedByOtherError) as refused:
        await store.take(incident_id, ANNA)
    await store.add_note(incident_id, "restarted the router", OLEG)
    with pytest.raises(OwnedByOtherError):
        # Confirmed on what it looked like before the note: asked again.
        await store.take(incident_id, ANNA, confirmed_version=owned.version)
    current = await store.get(incident_id)
    taken = await store.take(incident_id, ANNA, confirmed_version=current.version)

    assert refused.value.incident.owner_name == "Oleg"
    assert (taken.incident.owner_id, taken.incident.owner_name) == (7, "Anna")
    assert taken.incident.status == Status.IN_PROGRESS


async def test_taking_what_you_own_changes_nothing_and_closed_cannot_be_taken(
    store: IncidentStore,
) -> None:
    incident_id = await _incident(store)
    await store.take(incident_id, OLEG)
    closed_id = await _incident(store, status=Status.CLOSED)

    again = await store.take(incident_id, Actor("Oleg P.", 42))

    assert not again.changed
    with pytest.raises(TransitionNotAllowedError):
        await store.take(closed_id, OLEG)


async def test_release_and_notes_are_on_the_timeline_and_notes_leave_the_card_alone(
    store: IncidentStore,
) -> None:
    incident_id = await _incident(store)
    await store.take(incident_id, OLEG)
    before = await store.get(incident_id)

    noted = await store.add_note(incident_id, "  restarted the router\x00 ", OLEG)
    released = await store.release(incident_id, ANNA)
    nothing = await store.release(incident_id, ANNA)

    assert noted.incident.updated_at == before.updated_at
    assert noted.incident.version == before.version + 1
    assert released.incident.owner_name is None
    assert not nothing.changed
    events = (await store.events(incident_id)).items
    assert [(e.kind, e.actor, e.text) for e in events[-2:]] == [
        (EventKind.NOTE, "Oleg", "restarted the router"),
        (EventKind.OWNER_RELEASED, "Anna", "Oleg"),
    ]


async def test_status_changes_and_edits_each_write_an_event_with_who(
    store: IncidentStore,
) -> None:
    incident_id = await _incident(store, chat_id=-5, message_id=9)

    await asyncio.gather(
        store.change_status(incident_id, Status.IN_PROGRESS, changed_by="Oleg", changed_by_id=42),
        store.change_status(incident_id, Status.RESOLVED, changed_by="Anna", changed_by_id=7),
    )
    await store.update_description(-5, 9, "Router down again", by=ANNA)
    await store.update_description(-5, 9, "Router down again", by=ANNA)

    events = (await store.events(incident_id)).items
    assert [(e.kind, e.actor, e.status_from, e.status_to) for e in events[1:3]] == [
        (EventKind.STATUS_CHANGED, "Oleg", Status.OPEN, Status.IN_PROGRESS),
        (EventKind.STATUS_CHANGED, "Anna", Status.IN_PROGRESS, Status.RESOLVED),
    ]
    assert [(e.kind, e.text) for e in events[3:]] == [
        (EventKind.DESCRIPTION_EDITED, "Router down again")
    ]
    assert (await store.get(incident_id)).version == 4


async def test_amend_with_an_old_version_changes_nothing(store: IncidentStore) -> None:
    incident_id = await _incident(store)
    await store.add_note(incident_id, "first", OLEG)

    with pytest.raises(VersionMismatchError):
        await store.amend(incident_id, by=ANNA, status=Status.CLOSED, if_versions=frozenset({1}))

    assert (await store.get(incident_id)).status == Status.OPEN
    assert (await store.events(incident_id)).total == 2


async def test_two_people_taking_at_once_one_owns_it_the_other_is_asked(
    store: IncidentStore, engine: AsyncEngine, database_url: str, fast_paths: bool
) -> None:
    # From two processes, as two instances of the bot would.
    incident_id = await _incident(store)
    second_engine = create_engine(database_url)
    try:
        other = IncidentStore(create_session_factory(second_engine), fast_paths=fast_paths)
        results = await asyncio.gather(
            store.take(incident_id, OLEG), other.take(incident_id, ANNA), return_exceptions=True
        )
    finally:
        await second_engine.dispose()

    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert isinstance(losers[0], OwnedByOtherError)
    final = await store.get(incident_id)
    assert final.owner_name == winners[0].incident.owner_name
    kinds = [e.kind for e in (await store.events(incident_id)).items]
    assert kinds.count(EventKind.OWNER_SET) == 1
    assert (await store.list(status=Status.IN_PROGRESS)).total == 1


async def test_list_by_owner_and_unresolved(store: IncidentStore) -> None:
    mine = [await _incident(store, chat_id=-5) for _ in range(3)]
    theirs = await _incident(store, chat_id=-5)
    for incident_id in mine:
        await store.take(incident_id, OLEG)
    await store.take(theirs, ANNA)
    await store.change_status(mine[0], Status.RESOLVED)

    unresolved = await store.list(owner_id=42, unresolved=True, chats=ChatScope(frozenset({-5})))
    every = await store.list(owner_id=42)
    resolved = await store.list(owner_id=42, status=Status.RESOLVED)
    elsewhere = await store.list(owner_id=42, chats=ChatScope(frozenset({-6})))

    assert [row.id for row in unresolved.items] == [mine[2], mine[1]]
    assert unresolved.total == 2
    assert (every.total, resolved.total, elsewhere.total) == (3, 1, 0)


async def test_events_of_another_chats_incident_are_not_found(store: IncidentStore) -> None:
    incident_id = await _incident(store, chat_id=-5)

    with pytest.raises(IncidentNotFoundError):
        await store.events(incident_id, chats=ChatScope(frozenset({-6})))
    with pytest.raises(IncidentNotFoundError):
        await store.add_note(incident_id, "x", OLEG, chats=ChatScope(frozenset({-6})))


async def test_events_page_newest_first(store: IncidentStore) -> None:
    incident_id = await _incident(store)
    for n in range(4):
        await store.add_note(incident_id, f"note {n}", OLEG)

    newest = await store.events(incident_id, limit=2, newest=True)

    assert [e.text for e in newest.items] == ["note 3", "note 2"]
    assert newest.total == 5


async def test_deleting_an_incident_takes_its_timeline_with_it(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    incident_id = await _incident(store)
    await store.add_note(incident_id, "x", OLEG)
    async with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            await connection.execute(text("PRAGMA foreign_keys = ON"))
        await connection.execute(text("DELETE FROM incidents WHERE id = :id"), {"id": incident_id})
        left = (await connection.execute(text("SELECT count(*) FROM incident_events"))).scalar()

    assert left == 0
