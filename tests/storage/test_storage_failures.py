"""A database that cannot write: a write lock held by another process, a database that
cannot grow (SQLite), a server out of reach or ending connections (PostgreSQL). The store
reports each as SQLAlchemy's storage error (or the socket's), to every caller of a batch
at once, and its write check (what /health asks) sees them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import Writers, create_engine, create_session_factory
from storage.errors import is_storage_unavailable
from storage.health import StorageUnavailableError, WriteCheck
from storage.rules import Status
from storage.store import IncidentStore, NewIncident
from tests.faults import (
    SHORT_BUSY_TIMEOUT_MS,
    DatabaseLink,
    PageLimit,
    fill_database,
    write_lock_held,
)


@pytest.fixture
def busy_timeout_ms() -> int:
    return SHORT_BUSY_TIMEOUT_MS


@pytest.fixture
def page_limit(engine: AsyncEngine) -> PageLimit:
    return PageLimit(engine)


def _probes_run(engine: AsyncEngine) -> list[str]:
    """The probe INSERTs the engine runs from now on."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO write_probes"):
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen


@pytest.mark.sqlite_only
async def test_create_batch_while_locked_fails_every_caller_with_one_storage_error(
    store: IncidentStore, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with write_lock_held(database_url):
        results = await asyncio.gather(
            *(store.create(NewIncident(f"report {n}")) for n in range(5)),
            return_exceptions=True,
        )

    assert all(isinstance(result, OperationalError) for result in results), results
    assert all(is_storage_unavailable(result) for result in results)  # type: ignore[arg-type]
    assert "database is locked" in str(results[0])
    # The database's failure is not retried one operation at a time (each another wait).
    assert "one at a time" not in caplog.text
    page = await store.list()
    assert page.total == 0
    assert page.items == []


@pytest.mark.sqlite_only
async def test_status_change_while_locked_raises_storage_error_and_changes_nothing(
    store: IncidentStore, database_url: str
) -> None:
    incident = (await store.create(NewIncident("Disk full on db-1"))).incident

    with write_lock_held(database_url), pytest.raises(OperationalError) as raised:
        await store.change_status(incident.id, Status.RESOLVED)

    assert is_storage_unavailable(raised.value)
    assert (await store.get(incident.id)).status == Status.OPEN
    assert (await store.change_status(incident.id, Status.RESOLVED)).changed


@pytest.mark.sqlite_only
async def test_write_check_fails_while_lock_held_and_passes_after(
    engine: AsyncEngine, database_url: str
) -> None:
    check = WriteCheck(engine, Writers(create_session_factory(engine)), interval=0)
    await check.check()

    with write_lock_held(database_url), pytest.raises(StorageUnavailableError, match="locked"):
        await check.check()

    await check.check()


@pytest.mark.sqlite_only
async def test_write_check_fails_while_database_cannot_grow_and_passes_after(
    engine: AsyncEngine, database_url: str, page_limit: PageLimit
) -> None:
    check = WriteCheck(engine, Writers(create_session_factory(engine)), interval=0)
    await check.check()  # the probe's own pages are on the freelist now: filled below

    page_limit.pages = fill_database(database_url)
    with pytest.raises(StorageUnavailableError, match="full"):
        await check.check()

    page_limit.pages = None
    await check.check()


async def test_write_check_trusts_a_fresh_real_write_and_shares_one_probe(
    engine: AsyncEngine, store: IncidentStore
) -> None:
    probes = _probes_run(engine)
    await store.create(NewIncident("Disk full on db-1"))

    await store.check_writable()  # the creation just committed: no probe needed

    assert probes == []
    check = WriteCheck(engine, Writers(create_session_factory(engine)), interval=60)
    await asyncio.gather(*(check.check() for _ in range(10)))
    await check.check()
    assert len(probes) == 1


@pytest.mark.sqlite_only
async def test_write_check_reports_a_real_write_that_just_failed(
    store: IncidentStore, engine: AsyncEngine, database_url: str
) -> None:
    probes = _probes_run(engine)
    with write_lock_held(database_url), pytest.raises(OperationalError):
        await store.create(NewIncident("Disk full on db-1"))

    # The lock is gone, but the failure is a moment old: it stands until it is not.
    with pytest.raises(StorageUnavailableError, match="locked"):
        await store.check_writable()
    assert probes == []


async def test_errors_of_the_request_are_not_taken_for_an_unavailable_database(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        with pytest.raises(DBAPIError) as no_table:
            await connection.exec_driver_sql("SELECT * FROM no_such_table")
        await connection.rollback()  # PostgreSQL ignores the rest of a failed transaction
        with pytest.raises(IntegrityError) as broken_rule:
            await connection.exec_driver_sql(
                "INSERT INTO incidents (description, status, source, created_at, updated_at)"
                " VALUES ('', 'open', 'operator', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )

    assert not is_storage_unavailable(no_table.value)
    assert not is_storage_unavailable(broken_rule.value)


@pytest.fixture
async def linked_store(
    engine: AsyncEngine, database_url: str, link: DatabaseLink, fast_paths: bool
) -> AsyncIterator[IncidentStore]:
    """A store reaching its (migrated) database through `link`."""
    linked = create_engine(link.url(database_url))
    yield IncidentStore(create_session_factory(linked), fast_paths=fast_paths)
    await linked.dispose()


@pytest.mark.postgresql_only
async def test_lost_server_is_unavailable_for_every_operation_then_served_again(
    linked_store: IncidentStore, link: DatabaseLink
) -> None:
    incident = (await linked_store.create(NewIncident("Disk full on db-1"))).incident

    await link.cut()
    failures = await asyncio.gather(
        linked_store.create(NewIncident("Payments are down")),
        linked_store.change_status(incident.id, Status.RESOLVED),
        linked_store.list(),
        linked_store.get(incident.id),
        return_exceptions=True,
    )
    with pytest.raises(StorageUnavailableError):
        await linked_store.check_writable()

    assert all(isinstance(failure, Exception) for failure in failures), failures
    assert all(is_storage_unavailable(failure) for failure in failures), failures  # type: ignore[arg-type]
    await link.restore()
    assert (await linked_store.change_status(incident.id, Status.RESOLVED)).changed
    assert (await linked_store.list()).total == 1


@pytest.mark.postgresql_only
async def test_connections_ended_by_the_server_are_unavailable_then_replaced(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    incident = (await store.create(NewIncident("Disk full on db-1"))).incident
    async with engine.connect() as doomed:
        await doomed.execute(text("SELECT 1"))  # a transaction open, as a write's would be
        pid = await doomed.scalar(text("SELECT pg_backend_pid()"))
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as ended:
            await doomed.execute(text("SELECT 1"))

    assert is_storage_unavailable(ended.value)
    # Every pooled connection ended (a server restart): the pool replaces them unseen.
    async with engine.connect() as admin:
        await admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    assert (await store.change_status(incident.id, Status.RESOLVED)).changed
