"""Totals from the kept counts, paging by key, and the migration that fills the counts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import alembic_config, create_engine, create_session_factory, migrate
from storage.rules import Status
from storage.store import IncidentStore, NewIncident
from tests.storage.counts import counts_match_incidents


async def test_list_total_follows_creates_changes_and_duplicates(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    for n in range(9):
        source = ("monitoring", "operator", "склад")[n % 3]
        await store.create(NewIncident(f"incident {n}", source=source, chat_id=-1, message_id=n))
    await store.create(NewIncident("redelivered", source="operator", chat_id=-1, message_id=4))
    await store.create(NewIncident("key", idempotency_key="k-1"))
    await store.create(NewIncident("key again", idempotency_key="k-1"))
    await store.create(NewIncident("born resolved", status=Status.RESOLVED))
    await asyncio.gather(
        store.change_status(1, Status.IN_PROGRESS),
        store.change_status(1, Status.IN_PROGRESS),  # a no-op for the loser: counted once
        store.change_status(2, Status.CLOSED),
        store.change_status(3, Status.RESOLVED),
    )
    await store.change_status(3, Status.IN_PROGRESS)
    await store.change_status(2, Status.CLOSED)  # already closed: nothing changes

    everything = await store.list()
    open_ones = await store.list(status=Status.OPEN)
    operator = await store.list(source="Operator")
    open_operator = await store.list(status=Status.OPEN, source="operator")
    none = await store.list(status=Status.OPEN, source="nobody")

    assert everything.total == len(everything.items) == 11
    assert open_ones.total == len(open_ones.items) == 7
    assert operator.total == len(operator.items) == 5  # "operator" is the default source
    assert open_operator.total == len(open_operator.items) == 3
    assert none.total == 0
    assert await counts_match_incidents(engine)


async def test_list_before_pages_by_key_with_the_whole_total(store: IncidentStore) -> None:
    for n in range(12):
        await store.create(NewIncident(f"incident {n}", source="monitoring" if n % 2 else "ops"))

    first = await store.list(limit=5)
    second = await store.list(limit=5, before=first.items[-1].id)
    third = await store.list(limit=5, before=second.items[-1].id)
    last = await store.list(limit=5, before=third.items[-1].id)
    monitoring = await store.list(source="monitoring", limit=2, before=8)

    assert [i.id for i in first.items] == [12, 11, 10, 9, 8]
    assert [i.id for i in second.items] == [7, 6, 5, 4, 3]
    assert [i.id for i in third.items] == [2, 1]
    assert last.items == []
    assert {first.total, second.total, third.total, last.total} == {12}
    assert [i.id for i in monitoring.items] == [6, 4]
    assert monitoring.total == 6


async def test_list_after_pages_back_up_newest_first(store: IncidentStore) -> None:
    for n in range(12):
        await store.create(NewIncident(f"incident {n}", source="monitoring" if n % 2 else "ops"))

    above_third = await store.list(limit=5, after=2)
    above_second = await store.list(limit=5, after=above_third.items[0].id)
    top = await store.list(limit=5, after=12)
    ops = await store.list(source="ops", limit=2, after=3)

    assert [i.id for i in above_third.items] == [7, 6, 5, 4, 3]
    assert [i.id for i in above_second.items] == [12, 11, 10, 9, 8]
    assert top.items == []
    assert top.total == 12
    assert [i.id for i in ops.items] == [7, 5]


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def test_migration_counts_incidents_stored_before_it(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0002")
            await connection.execute(
                text(
                    "INSERT INTO incidents (description, status, source, created_at, updated_at)"
                    " VALUES ('a', 'open', 'ops', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),"
                    " ('b', 'open', 'ops', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),"
                    " ('c', 'closed', 'ops', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),"
                    " ('d', 'open', 'zabbix', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        await migrate(engine)
        store = IncidentStore(create_session_factory(engine))
        await store.create(NewIncident("e", source="ops"))

        assert (await store.list()).total == 5
        assert (await store.list(status=Status.OPEN, source="ops")).total == 3
        assert await counts_match_incidents(engine)
    finally:
        await engine.dispose()
