"""Moving a database into another (`python -m storage.move`): everything, ids kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.database import create_engine, create_session_factory
from storage.models import Base
from storage.move import MOVED
from storage.rules import Status
from storage.store import CardRequest, IncidentStore, NewIncident
from tests import engines

REPO = Path(__file__).resolve().parents[2]


async def table_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = {}
            for name in MOVED:
                table = Base.metadata.tables[name]
                query = select(table).order_by(*table.primary_key.columns)
                rows[name] = [tuple(row) for row in await connection.execute(query)]
            return rows
    finally:
        await engine.dispose()


async def fill(store: IncidentStore) -> None:
    for n in range(1, 4):
        await store.create(
            NewIncident(
                f"Самокат #{n} не отвечает", source="monitoring", chat_id=-5, message_id=n
            ),
            card=CardRequest(-5, reply_to_message_id=n),
        )
    await store.change_status(2, Status.RESOLVED, changed_by="api")
    await store.outbox.move_chat(-5, -1_005)


def run_move(source: str, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storage.move", source, target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_move_copies_everything_and_numbering_continues(
    store: IncidentStore, database_url: str, tmp_path: Path
) -> None:
    await fill(store)
    target = f"sqlite+aiosqlite:///{tmp_path / 'moved.db'}"

    result = run_move(database_url, target)

    assert result.returncode == 0, result.stderr
    assert "Moved 3 incidents." in result.stdout
    assert await table_rows(target) == await table_rows(database_url)
    engine = create_engine(target)
    try:
        moved = IncidentStore(create_session_factory(engine))
        created = await moved.create(NewIncident("after the move"))
        assert created.incident.id == 4
        assert (await moved.list()).total == 4
    finally:
        await engine.dispose()


async def test_move_into_a_database_with_incidents_is_refused_and_changes_nothing(
    store: IncidentStore, database_url: str, tmp_path: Path
) -> None:
    await fill(store)
    target = f"sqlite+aiosqlite:///{tmp_path / 'moved.db'}"
    assert run_move(database_url, target).returncode == 0
    before = await table_rows(target)

    again = run_move(database_url, target)

    assert again.returncode == 1
    assert again.stderr.strip() == (
        "Not moved: the target already holds incidents; move into an empty one"
    )
    assert await table_rows(target) == before


@pytest.mark.sqlite_only  # the source is this test's SQLite file; the target PostgreSQL
async def test_move_from_sqlite_into_postgresql_continues_the_numbering(
    store: IncidentStore, database_url: str
) -> None:
    server = engines.server_url()
    if server is None:
        pytest.skip(engines.NOT_CONFIGURED)
    await fill(store)
    target = await engines.take_database(server)
    target_url = target.render_as_string(hide_password=False)
    try:
        result = run_move(database_url, target_url)

        assert result.returncode == 0, result.stderr
        assert await table_rows(target_url) == await table_rows(database_url)
        engine = create_engine(target_url)
        try:
            moved = IncidentStore(create_session_factory(engine))
            created = await moved.create(NewIncident("after the move"))
        finally:
            await engine.dispose()
        assert created.incident.id == 4
    finally:
        await engines.give_back(target)
