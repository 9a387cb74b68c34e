"""The store's reads: plain rows equal to the mapped incidents, and the total of a page."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Select, bindparam, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import Incident, IncidentRow
from storage.rules import Status
from storage.statements import COMPILED_KEPT, Statements
from storage.store import (
    _BY_ID,
    _BY_MESSAGE,
    _ROW_COLUMNS,
    IncidentStore,
    NewIncident,
    _page_query,
)


def _columns(incident: Incident) -> tuple[object, ...]:
    return tuple(getattr(incident, name) for name in IncidentRow._fields)


def test_incident_row_has_every_column_of_incidents_in_order() -> None:
    assert IncidentRow._fields == tuple(column.key for column in inspect(Incident).columns)


async def test_reads_return_the_columns_the_writes_stored(store: IncidentStore) -> None:
    created = await store.create(
        NewIncident("Disk full", source="zabbix", created_by="alice", chat_id=-5, message_id=7)
    )
    changed = await store.change_status(created.incident.id, Status.RESOLVED, changed_by="bob")
    key = await store.create(NewIncident("By key", idempotency_key="k-1"))

    got = await store.get(created.incident.id)
    found = await store.find_by_message(-5, 7)
    page = await store.list()

    assert isinstance(got, IncidentRow)
    assert tuple(got) == _columns(changed.incident)
    assert found == got
    assert [tuple(row) for row in page.items] == [
        _columns(key.incident),
        _columns(changed.incident),
    ]
    assert got.created_at.tzinfo is UTC
    assert await store.find_by_message(-5, 8) is None


async def test_empty_pages_still_carry_the_filters_total(store: IncidentStore) -> None:
    # A page with rows reads its total from them; an empty one counts on its own.
    for n in range(5):
        await store.create(NewIncident(f"incident {n}", source="ops" if n % 2 else "zabbix"))
    await store.change_status(2, Status.CLOSED)

    full = await store.list(status=Status.OPEN, source="ops")
    past_the_end = await store.list(status=Status.OPEN, source="ops", offset=5)
    below_all = await store.list(status=Status.OPEN, source="ops", before=1)
    above_all = await store.list(status=Status.OPEN, source="ops", after=5)
    no_match = await store.list(status=Status.RESOLVED, source="ops")

    assert [row.id for row in full.items] == [4]
    assert full.total == 1
    assert (past_the_end.items, past_the_end.total) == ([], 1)
    assert (below_all.items, below_all.total) == ([], 1)
    assert (above_all.items, above_all.total) == ([], 1)
    assert (no_match.items, no_match.total) == ([], 0)


async def test_times_stored_with_an_offset_are_read_as_utc(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    incident_id = (await store.create(NewIncident("a"))).incident.id
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE incidents SET updated_at = '2026-11-23 16:00:00.000000+02:00'")
        )

    incident = await store.get(incident_id)

    assert incident.updated_at == datetime(2026, 11, 23, 14, tzinfo=UTC)
    assert incident.updated_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        (_BY_ID, {"id": 2}),
        (_BY_MESSAGE, {"chat_id": -5, "message_id": 7}),
        (_BY_MESSAGE, {"chat_id": -5, "message_id": 8}),
        (
            _page_query(by_status=True, by_source=True, below=True, above=False, chats=0),
            {"status": Status.OPEN, "source": "ops", "before": 9, "limit": 3, "offset": 1},
        ),
        (
            _page_query(by_status=False, by_source=False, below=False, above=True, chats=0),
            {"after": 2, "limit": 50, "offset": 0},
        ),
        (
            _page_query(by_status=True, by_source=False, below=False, above=False, chats=1),
            {"status": Status.OPEN, "chat_0": -6, "limit": 2, "offset": 1},
        ),
        (
            # A chat and the group it was upgraded from: each one's part, merged.
            _page_query(by_status=True, by_source=False, below=True, above=False, chats=2),
            {
                **{"status": Status.OPEN, "before": 16, "limit": 3, "offset": 1, "reach": 4},
                **{"chat_0": -6, "chat_1": -5},
            },
        ),
        (
            _page_query(by_status=False, by_source=False, below=False, above=True, chats=2),
            {"after": 12, "limit": 2, "offset": 0, "reach": 2, "chat_0": -6, "chat_1": -5},
        ),
    ],
)
async def test_single_trip_reads_give_what_sqlalchemy_gives(
    store: IncidentStore, engine: AsyncEngine, statement: Select[Any], params: dict[str, Any]
) -> None:
    # `storage.statements` converts values in and out itself on SQLite; SQLAlchemy's own
    # execution of the same statement is the reference, types included.
    for n in range(10):
        new = NewIncident(f"Точка {n} не отвечает", source="ops" if n % 3 else "zabbix")
        await store.create(new)
    await store.create(NewIncident("from chat", chat_id=-5, message_id=7))
    for n in range(5):
        await store.create(NewIncident(f"chat {n}", chat_id=-5 - n % 2, message_id=10 + n))
    await store.change_status(4, Status.RESOLVED)
    async with engine.connect() as connection:
        expected = [tuple(row) for row in await connection.execute(statement, params)]

    got = await Statements(engine, before_read=store.settled).all(statement, params)

    assert got == expected
    assert [[type(value) for value in row] for row in got] == [
        [type(value) for value in row] for row in expected
    ]


async def test_cancelled_reads_give_their_connections_back(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    # A client that hangs up cancels its request's read mid-flight.
    for n in range(60):
        await store.create(NewIncident(f"incident {n}"))
    reads = [asyncio.create_task(store.list(limit=50)) for _ in range(20)]
    await asyncio.sleep(0)
    for read in reads:
        read.cancel()
    await asyncio.gather(*reads, return_exceptions=True)

    page = await store.list(limit=50)

    assert engine.sync_engine.pool.checkedout() == 0
    assert [row.id for row in page.items] == list(range(60, 10, -1))


_INCIDENTS = Incident.__table__


@pytest.mark.parametrize("single_trip", [True, False], ids=["single-trip", "sqlalchemy"])
async def test_a_statement_with_an_expanding_list_runs_on_either_path(
    store: IncidentStore, engine: AsyncEngine, single_trip: bool
) -> None:
    # SQLAlchemy renders `in_([...])` only as it executes: one trip cannot run it, and the
    # statement takes SQLAlchemy's own path instead of failing.
    for n in range(5):
        await store.create(NewIncident(f"incident {n}"))
    statements = Statements(engine, before_read=store.settled, single_trip=single_trip)
    listed = select(_INCIDENTS.c.id).where(_INCIDENTS.c.id.in_([2, 4, 9])).order_by("id")
    bound = select(_INCIDENTS.c.id).where(_INCIDENTS.c.id.in_(bindparam("ids", expanding=True)))

    assert await statements.all(listed, {}) == [(2,), (4,)]
    assert sorted(await statements.all(bound, {"ids": [1, 5]})) == [(1,), (5,)]


async def test_statements_keep_a_bounded_number_of_compiled_forms(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    await store.create(NewIncident("the one"))
    statements = Statements(engine, before_read=store.settled)
    # A caller building its select() anew for every read: each is a new statement.
    for n in range(COMPILED_KEPT + 50):
        read = select(*_ROW_COLUMNS).where(_INCIDENTS.c.id == bindparam("id") + n - n)
        assert len(await statements.all(read, {"id": 1})) == 1

    assert statements.kept <= COMPILED_KEPT
    # The store's own statements, used again, stay compiled.
    assert await statements.first(_BY_ID, {"id": 1}) is not None


async def test_every_read_waits_for_the_writes_queued_before_it(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    # A read built outside the store's methods still sees a creation that is queued and
    # not yet committed: the gate is the Statements', not each method's.
    statements = Statements(engine, before_read=store.settled)
    creating = asyncio.create_task(store.create(NewIncident("queued, not yet committed")))
    await asyncio.sleep(0)
    assert not creating.done()

    rows = await statements.all(select(_INCIDENTS.c.description), {})

    assert rows == [("queued, not yet committed",)]
    await creating
