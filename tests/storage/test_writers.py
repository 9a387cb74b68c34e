"""Writes from one process take turns instead of racing for SQLite's write lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_engine, create_session_factory
from storage.rules import Status
from storage.store import CardRequest, IncidentStore, NewIncident

pytestmark = pytest.mark.sqlite_only  # SQLite's one write lock


def _never_wait(dbapi_connection: Any, _connection_record: Any) -> None:
    # Runs after the engine's own set-up: a writer that finds the lock taken fails at
    # once with "database is locked" instead of sleeping in SQLite's busy handler.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


@pytest.fixture
async def impatient_engine(engine: AsyncEngine, database_url: str) -> AsyncIterator[AsyncEngine]:
    impatient = create_engine(database_url)
    event.listen(impatient.sync_engine, "connect", _never_wait)
    yield impatient
    await impatient.dispose()


async def test_concurrent_writes_of_one_store_never_meet_a_locked_database(
    impatient_engine: AsyncEngine,
) -> None:
    store = IncidentStore(create_session_factory(impatient_engine))
    created = await asyncio.gather(
        *(
            store.create(NewIncident(f"report {n}", chat_id=-100, message_id=n), card=None)
            for n in range(40)
        )
    )
    ids = [result.incident.id for result in created]
    await asyncio.gather(
        *(store.change_status(incident_id, Status.IN_PROGRESS) for incident_id in ids),
        *(
            store.outbox.mark_sent([], card=(incident_id, -100, 1000 + incident_id))
            for incident_id in ids
        ),
        *(
            store.create(NewIncident(f"announced {n}"), card=CardRequest(chat_id=-100))
            for n in range(20)
        ),
    )
    pending = await store.outbox.due()
    await asyncio.gather(
        *(store.outbox.mark_sent([item.delivery.id]) for item in pending),
        *(store.update_description(-100, n, f"edited report {n}") for n in range(40)),
    )

    page = await store.list(status=Status.IN_PROGRESS, limit=100)
    assert page.total == 40
    assert await store.outbox.pending_count() > 0  # the edits queued by the changes
