"""A chat's scope: reads and changes given one see only that chat's incidents (and those of
the groups upgraded into it), with totals and paging of their own; without one, all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_engine, create_session_factory, migrate
from storage.rules import Status
from storage.store import (
    CardRequest,
    ChatScope,
    IncidentNotFoundError,
    IncidentStore,
    NewIncident,
)
from tests.storage.counts import counts_match_incidents
from tests.storage.test_counts_and_paging import _upgrade_to

GROUP, SUPERGROUP, OTHER = -5, -1_005, -7
OWN = ChatScope(frozenset({GROUP}))
UPGRADED = ChatScope(frozenset({GROUP, SUPERGROUP}))
FOREIGN = ChatScope(frozenset({OTHER}))


async def _report(store: IncidentStore, chat_id: int, number: int) -> int:
    new = NewIncident(f"incident {number}", chat_id=chat_id, message_id=number)
    return (await store.create(new)).incident.id


async def _ids(store: IncidentStore, **filters: object) -> tuple[list[int], int]:
    page = await store.list(**filters)  # type: ignore[arg-type]
    return [incident.id for incident in page.items], page.total


async def test_get_and_change_status_outside_the_scope_are_not_found(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    mine = await _report(store, GROUP, 1)
    theirs = await _report(store, OTHER, 2)
    nobodys = (await store.create(NewIncident("over HTTP, bot off"))).incident.id

    assert (await store.get(mine, chats=OWN)).id == mine
    for incident_id in (theirs, nobodys):
        with pytest.raises(IncidentNotFoundError):
            await store.get(incident_id, chats=OWN)
        with pytest.raises(IncidentNotFoundError):
            await store.change_status(incident_id, Status.CLOSED, chats=OWN)
    with pytest.raises(IncidentNotFoundError):
        await store.get(mine, chats=ChatScope(frozenset()))
    # One batch, judged request by request: the foreign one alone is refused.
    outcomes = await asyncio.gather(
        store.change_status(mine, Status.RESOLVED, chats=OWN),
        store.change_status(theirs, Status.CLOSED, chats=OWN),
        store.change_status(theirs, Status.IN_PROGRESS, chats=FOREIGN),
        return_exceptions=True,
    )

    assert [type(outcome).__name__ for outcome in outcomes] == [
        "StatusChange",
        "IncidentNotFoundError",
        "StatusChange",
    ]
    assert [(await store.get(i)).status for i in (mine, theirs, nobodys)] == [
        Status.RESOLVED,
        Status.IN_PROGRESS,
        Status.OPEN,
    ]
    assert await counts_match_incidents(engine)


async def test_list_in_a_scope_has_its_own_total_and_pages(store: IncidentStore) -> None:
    for number in range(1, 13):
        await _report(store, (GROUP, OTHER)[number % 2], number)  # even ids: GROUP's
    await store.change_status(4, Status.CLOSED)
    await store.create(NewIncident("over HTTP, bot off"))

    first = await _ids(store, chats=OWN, limit=2)
    second = await _ids(store, chats=OWN, limit=2, before=first[0][-1])
    back = await _ids(store, chats=OWN, limit=2, after=second[0][0])
    by_offset = await _ids(store, chats=OWN, limit=2, offset=4)
    past_the_end = await _ids(store, chats=OWN, limit=2, offset=6)
    open_ones = await _ids(store, chats=OWN, status=Status.OPEN, limit=10)
    closed_elsewhere = await _ids(store, chats=FOREIGN, status=Status.CLOSED)
    nobody = await _ids(store, chats=ChatScope(frozenset()))
    everything = await _ids(store, limit=100)

    assert first == ([12, 10], 6)
    assert second == ([8, 6], 6)
    assert back == first
    assert by_offset == ([4, 2], 6)
    assert past_the_end == ([], 6)
    assert open_ones == ([12, 10, 8, 6, 2], 5)
    assert closed_elsewhere == ([], 0)
    assert nobody == ([], 0)
    assert everything == (list(range(13, 0, -1)), 13)


async def test_list_of_an_upgraded_chat_merges_the_group_it_was(store: IncidentStore) -> None:
    # The group's incidents, then the supergroup's, with another chat's in between.
    for number in range(1, 6):
        await _report(store, GROUP, number)
    await _report(store, OTHER, 6)
    for number in range(7, 12):
        await _report(store, SUPERGROUP, number)
    await store.change_status(9, Status.RESOLVED)

    pages = [await _ids(store, chats=UPGRADED, limit=4)]
    while pages[-1][0]:
        pages.append(await _ids(store, chats=UPGRADED, limit=4, before=pages[-1][0][-1]))
    back = await _ids(store, chats=UPGRADED, limit=4, after=pages[1][0][0])
    by_offset = await _ids(store, chats=UPGRADED, limit=4, offset=3)
    open_ones = await _ids(store, chats=UPGRADED, status=Status.OPEN, limit=3, offset=1)

    assert pages == [
        ([11, 10, 9, 8], 10),
        ([7, 5, 4, 3], 10),
        ([2, 1], 10),
        ([], 10),
    ]
    assert back == pages[0]
    assert by_offset == ([8, 7, 5, 4], 10)
    assert open_ones == ([10, 8, 7], 9)
    assert await store.change_status(2, Status.CLOSED, chats=UPGRADED)
    with pytest.raises(IncidentNotFoundError):
        await store.change_status(6, Status.CLOSED, chats=UPGRADED)


async def test_incident_announced_without_a_chat_belongs_to_the_announcement_chat(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    announced = await store.create(NewIncident("over HTTP"), card=CardRequest(GROUP))
    reported = await store.create(
        NewIncident("from a message", chat_id=OTHER, message_id=1), card=CardRequest(OTHER)
    )
    # NULL message ids are distinct: any number of announced incidents per chat.
    again = await store.create(NewIncident("over HTTP again"), card=CardRequest(GROUP))

    assert (announced.incident.chat_id, announced.incident.message_id) == (GROUP, None)
    assert reported.incident.chat_id == OTHER
    assert again.created
    assert await _ids(store, chats=OWN) == ([3, 1], 2)
    assert await counts_match_incidents(engine)


async def test_migration_gives_announced_incidents_their_chat_and_counts_per_chat(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    now = "CURRENT_TIMESTAMP"
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0003")
            await connection.execute(
                text(
                    "INSERT INTO incidents (id, description, status, source, created_at,"
                    " updated_at, chat_id, message_id, card_chat_id, card_message_id) VALUES"
                    f" (1, 'reported', 'open', 'ops', {now}, {now}, {OTHER}, 10, {OTHER}, 11),"
                    f" (2, 'announced', 'open', 'ops', {now}, {now}, NULL, NULL, {GROUP}, 5),"
                    f" (3, 'card queued', 'closed', 'ops', {now}, {now}, NULL, NULL, NULL, NULL),"
                    f" (4, 'bot off', 'open', 'ops', {now}, {now}, NULL, NULL, NULL, NULL)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO outbox (kind, incident_id, chat_id, state, attempts,"
                    f" not_before, created_at) VALUES ('card', 3, {GROUP}, 'pending', 0,"
                    f" {now}, {now})"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO incident_counts (status, source, total)"
                    " VALUES ('open', 'ops', 3), ('closed', 'ops', 1)"
                )
            )
        await migrate(engine)
        store = IncidentStore(create_session_factory(engine))
        chats = [(await store.get(n)).chat_id for n in (1, 2, 3, 4)]
        in_group = await _ids(store, chats=OWN)
        open_in_group = await _ids(store, chats=OWN, status=Status.OPEN)
        everything = await _ids(store)
        matching = await counts_match_incidents(engine)
    finally:
        await engine.dispose()

    assert chats == [OTHER, GROUP, GROUP, None]
    assert in_group == ([3, 2], 2)
    assert open_in_group == ([2], 1)
    assert everything == ([4, 3, 2, 1], 4)
    assert matching
