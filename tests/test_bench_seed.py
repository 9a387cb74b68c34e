"""The benchmark's fast seeding writes rows the store reads back as its own."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from bench.seed import create_database, database_url, file_size, seed, seeded_status
from storage.database import create_engine, create_session_factory
from storage.rules import Status
from storage.store import IncidentStore


async def test_seeded_incidents_read_back_through_the_store(tmp_path: Path) -> None:
    path = tmp_path / "seeded.db"
    await create_database(path)

    added = seed(path, 100) + seed(path, 250) + seed(path, 250)

    engine = create_engine(database_url(path))
    try:
        store = IncidentStore(create_session_factory(engine))
        everything = await store.list(limit=3)
        open_ones = await store.list(status=Status.OPEN, limit=200)
        deep = await store.list(limit=2, before=101)
        moved = await store.change_status(4, Status.IN_PROGRESS)
        after_move = await store.list(status=Status.OPEN, limit=200)
    finally:
        await engine.dispose()

    assert added == 250
    assert [incident.id for incident in everything.items] == [250, 249, 248]
    assert everything.total == 250
    assert open_ones.total == len(open_ones.items) == 62  # every fourth: 4, 8, ..., 248
    assert {incident.status for incident in open_ones.items} == {Status(seeded_status(4))}
    assert [incident.id for incident in deep.items] == [100, 99]
    assert everything.items[0].created_at.tzinfo is UTC
    assert moved.previous == Status.OPEN
    assert after_move.total == 61
    assert file_size(path) > 0
