"""The Alembic migrations: they build the schema the models describe, and SQLite is set up."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_engine, migrate
from storage.models import Base

ROOT = Path(__file__).resolve().parents[2]


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, Base.metadata))


async def test_migrate_builds_schema_matching_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)

    assert differences == []


async def test_migrate_twice_is_harmless(engine: AsyncEngine) -> None:
    await migrate(engine)

    async with engine.connect() as connection:
        version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    assert version is not None


@pytest.mark.sqlite_only
async def test_sqlite_runs_in_wal_mode_with_busy_timeout(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        journal = await connection.scalar(text("PRAGMA journal_mode"))
        busy = await connection.scalar(text("PRAGMA busy_timeout"))
        foreign_keys = await connection.scalar(text("PRAGMA foreign_keys"))

    assert (journal, foreign_keys) == ("wal", 1)
    assert busy >= 1000


@pytest.mark.parametrize(
    "values",
    [
        "'x', 'on_fire', 'operator'",
        "'', 'open', 'operator'",
        "'x', 'open', ''",
    ],
)
async def test_constraints_refuse_rows_that_break_the_rules(
    engine: AsyncEngine, values: str
) -> None:
    insert = text(
        "INSERT INTO incidents (description, status, source, created_at, updated_at)"
        f" VALUES ({values}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(insert)


_MIGRATE = """
import asyncio, sys
from storage.database import create_engine, migrate

async def main() -> None:
    engine = create_engine(sys.argv[1])
    try:
        await migrate(engine)
    finally:
        await engine.dispose()

asyncio.run(main())
"""


async def test_processes_migrating_a_new_database_at_once_both_succeed(
    database_url: str,
) -> None:
    # Services started together on an empty database: each runs the migrations.
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _MIGRATE,
            database_url,
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    errors = [(await process.communicate())[1].decode() for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], errors
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
            versions = await connection.scalar(text("SELECT count(*) FROM alembic_version"))
    finally:
        await engine.dispose()
    assert differences == []
    assert versions == 1
