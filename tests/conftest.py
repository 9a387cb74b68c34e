"""Fixtures shared by every test: a fresh, migrated database per test.

The store's contract (tests/storage, and the tests elsewhere marked `all_engines`) runs on
SQLite and on PostgreSQL (see `tests.engines`); the rest, and the tests marked
`sqlite_only` (SQLite's own pragmas, locks and files), on SQLite. In tests/storage, a
test that uses the `store` (or `fast_paths`) also runs on SQLite with the store's fast
paths off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_engine,
    create_session_factory,
    migrate,
)
from storage.store import IncidentStore
from tests import engines
from tests.faults import DatabaseLink
from tests.service import ServiceRunner, environment_without_settings

STORE_CONTRACT = Path(__file__).with_name("storage")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "all_engines: runs on every engine, as tests/storage does (see tests.engines)"
    )
    config.addinivalue_line(
        "markers", "sqlite_only: about SQLite itself (its pragmas, locks, files, driver)"
    )
    config.addinivalue_line(
        "markers", "postgresql_only: about PostgreSQL itself (its server, connections, locks)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_engine" not in metafunc.fixturenames:
        return
    definition = metafunc.definition
    if definition.get_closest_marker("sqlite_only") is not None:
        return
    sqlite = pytest.param(engines.SQLITE, id=engines.SQLITE)
    postgresql = (
        pytest.param(engines.POSTGRESQL, id=engines.POSTGRESQL)
        if engines.server_url() is not None
        else pytest.param(
            engines.POSTGRESQL,
            id=engines.POSTGRESQL,
            marks=pytest.mark.skip(reason=engines.NOT_CONFIGURED),
        )
    )
    if definition.get_closest_marker("postgresql_only") is not None:
        metafunc.parametrize("database_engine", [postgresql], indirect=True)
        return
    in_contract = definition.path.is_relative_to(STORE_CONTRACT)
    if in_contract and "fast_paths" in metafunc.fixturenames:
        # The fast paths are layers over the plain store: the contract holds for both, on
        # SQLite, where they differ most (one-trip statements and the group commit); on
        # PostgreSQL with them on, as it runs.
        metafunc.parametrize(
            ("database_engine", "fast_paths"),
            [
                pytest.param(engines.SQLITE, True, id="sqlite-fast"),
                pytest.param(engines.SQLITE, False, id="sqlite-plain"),
                pytest.param(
                    *postgresql.values, True, id="postgresql-fast", marks=postgresql.marks
                ),
            ],
            indirect=True,
        )
    elif in_contract or definition.get_closest_marker("all_engines") is not None:
        metafunc.parametrize("database_engine", [sqlite, postgresql], indirect=True)


@pytest.fixture
def database_engine(request: pytest.FixtureRequest) -> str:
    """The engine this test's database runs on: SQLite unless parametrized otherwise."""
    return str(getattr(request, "param", engines.SQLITE))


@pytest.fixture
async def database_url(database_engine: str, tmp_path: Path) -> AsyncIterator[str]:
    """A new database for this test: a SQLite file, or a PostgreSQL database of its own."""
    if database_engine == engines.SQLITE:
        yield f"sqlite+aiosqlite:///{tmp_path / 'incidents.db'}"
        return
    server = engines.server_url()
    assert server is not None
    database = await engines.take_database(server)
    try:
        yield database.render_as_string(hide_password=False)
    finally:
        await engines.give_back(database)


def pytest_sessionfinish(session: pytest.Session) -> None:
    server = engines.server_url()
    if server is not None:
        asyncio.run(engines.drop_databases(server))


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
async def link(database_url: str) -> AsyncIterator[DatabaseLink]:
    """The network between a PostgreSQL test's engines and the server, to cut."""
    url = make_url(database_url)
    async with DatabaseLink(url.host or "127.0.0.1", url.port or 5432) as link:
        yield link


@pytest.fixture
def fast_paths(request: pytest.FixtureRequest) -> bool:
    """The store's FAST_PATHS: on unless parametrized otherwise (the store's contract
    runs both ways)."""
    return bool(getattr(request, "param", True))


@pytest.fixture
def store(engine: AsyncEngine, fast_paths: bool) -> IncidentStore:
    return IncidentStore(create_session_factory(engine), fast_paths=fast_paths)


@pytest.fixture
def services(tmp_path: Path, database_url: str) -> Iterator[ServiceRunner]:
    """Runs main.py as real processes over this test's database; kills leftovers."""
    runner = ServiceRunner(
        tmp_path, environment_without_settings() | {"DATABASE_URL": database_url}
    )
    yield runner
    runner.kill_all()
