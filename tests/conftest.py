"""Fixtures shared by every test: a fresh, migrated SQLite file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_engine,
    create_session_factory,
    migrate,
)
from storage.store import IncidentStore
from tests.service import ServiceRunner, environment_without_settings


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'incidents.db'}"


@pytest.fixture
def busy_timeout_ms() -> int:
    """SQLite's busy timeout for the engine; tests of a held write lock shorten it."""
    return SQLITE_BUSY_TIMEOUT_MS


@pytest.fixture
async def engine(database_url: str, busy_timeout_ms: int) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, busy_timeout_ms=busy_timeout_ms)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> IncidentStore:
    return IncidentStore(create_session_factory(engine))


@pytest.fixture
def services(tmp_path: Path, database_url: str) -> Iterator[ServiceRunner]:
    """Runs main.py as real processes over this test's database; kills leftovers."""
    runner = ServiceRunner(
        tmp_path, environment_without_settings() | {"DATABASE_URL": database_url}
    )
    yield runner
    runner.kill_all()
