"""A database that cannot write (a SQLite file locked or full, a PostgreSQL server out of
reach) answers JSON 503 with Retry-After, on every route and on /health, logs one line,
stores nothing by halves, and is forgotten once it writes again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from storage.database import create_engine, create_session_factory, migrate
from storage.health import PROBE_INTERVAL
from storage.store import IncidentStore
from tests.api.conftest import MakeIncident
from tests.faults import (
    SHORT_BUSY_TIMEOUT_MS,
    DatabaseLink,
    PageLimit,
    fill_database,
    write_lock_held,
)

UNAVAILABLE = {"detail": "The database is unavailable right now; try again later."}


@pytest.fixture
def busy_timeout_ms() -> int:
    return SHORT_BUSY_TIMEOUT_MS


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == UNAVAILABLE
    assert int(response.headers["Retry-After"]) > 0


async def health_once_writable(client: httpx.AsyncClient) -> httpx.Response:
    """/health once the outcome it remembers has made way for a fresh probe."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5 * PROBE_INTERVAL
    while True:
        response = await client.get("/health")
        if response.status_code == 200 or loop.time() > deadline:
            return response
        await asyncio.sleep(0.05)


@pytest.mark.sqlite_only
async def test_writes_while_locked_answer_503_and_store_nothing(
    client: httpx.AsyncClient,
    make_incident: MakeIncident,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    incident = await make_incident()

    with write_lock_held(database_url):
        created = await client.post("/incidents", json={"description": "Payments are down"})
        changed = await client.patch(
            f"/incidents/{incident.id}/status", json={"status": "resolved"}
        )
        health = await client.get("/health")
        listed = await client.get("/incidents")  # reads go on meanwhile

    assert_unavailable(created)
    assert_unavailable(changed)
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "database": "unavailable", "bot": "off"}
    assert int(health.headers["Retry-After"]) > 0
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()] == [incident.id]
    assert listed.json()[0]["status"] == "open"
    refusals = [r for r in caplog.records if "answered 503" in r.getMessage()]
    assert [r.getMessage() for r in refusals] == [
        "POST /incidents: answered 503, the database is unavailable:"
        " OperationalError: database is locked",
        f"PATCH /incidents/{incident.id}/status: answered 503, the database is unavailable:"
        " OperationalError: database is locked",
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in refusals)

    health = await health_once_writable(client)
    assert health.status_code == 200
    assert (await client.post("/incidents", json={"description": "Payments"})).status_code == 201
    changed = await client.patch(f"/incidents/{incident.id}/status", json={"status": "resolved"})
    assert changed.status_code == 200
    listed = await client.get("/incidents")
    assert listed.headers["X-Total-Count"] == "2"


@pytest.mark.sqlite_only
async def test_create_while_database_full_answers_503_and_stores_nothing(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    store: IncidentStore,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    page_limit = PageLimit(engine)
    report = {"description": "x" * 4000, "source": "monitoring"}  # needs pages of its own
    assert (await client.post("/incidents", json=report)).status_code == 201
    page_limit.pages = fill_database(database_url)

    created = await client.post("/incidents", json=report)
    health = await client.get("/health")

    assert_unavailable(created)
    assert "database or disk is full" in caplog.text
    assert health.status_code == 503
    assert int(health.headers["Retry-After"]) > 0
    listed = await client.get("/incidents")
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "1"
    assert len(listed.json()) == 1
    page_limit.pages = None  # room again

    assert (await health_once_writable(client)).status_code == 200
    assert (await client.post("/incidents", json=report)).status_code == 201
    assert (await store.list()).total == 2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs of its own: a disk that fills up for real (root only)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


async def test_create_on_a_full_disk_answers_503_until_there_is_room(small_disk: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{small_disk / 'incidents.db'}")
    try:
        await migrate(engine)
        app = create_app(IncidentStore(create_session_factory(engine)), api_key=None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            report = {"description": "x" * 4000}
            assert (await client.post("/incidents", json=report)).status_code == 201
            filler = small_disk / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as file:
                while True:
                    file.write(bytes(64 * 1024))
                    file.flush()

            created = await client.post("/incidents", json=report)
            health = await client.get("/health")
            listed = await client.get("/incidents")

            assert_unavailable(created)
            assert health.status_code == 503
            assert listed.headers["X-Total-Count"] == "1"
            filler.unlink()
            assert (await health_once_writable(client)).status_code == 200
            assert (await client.post("/incidents", json=report)).status_code == 201
    finally:
        await engine.dispose()


@pytest.mark.postgresql_only
async def test_server_out_of_reach_answers_503_until_it_is_back(
    engine: AsyncEngine, database_url: str, link: DatabaseLink, caplog: pytest.LogCaptureFixture
) -> None:
    linked = create_engine(link.url(database_url))
    try:
        app = create_app(IncidentStore(create_session_factory(linked)), api_key=None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post("/incidents", json={"description": "Disk full"})
            assert created.status_code == 201
            incident_id = created.json()["id"]

            await link.cut()
            responses = [
                await client.post("/incidents", json={"description": "Payments are down"}),
                await client.patch(
                    f"/incidents/{incident_id}/status", json={"status": "resolved"}
                ),
                await client.get("/incidents"),
                await client.get(f"/incidents/{incident_id}"),
            ]
            health = await client.get("/health")

            for response in responses:
                assert_unavailable(response)
            assert health.status_code == 503
            assert health.json() == {
                "status": "unavailable",
                "database": "unavailable",
                "bot": "off",
            }
            assert "Traceback" not in caplog.text
            await link.restore()
            assert (await health_once_writable(client)).status_code == 200
            listed = await client.get("/incidents")
            assert listed.headers["X-Total-Count"] == "1"
            assert listed.json()[0]["status"] == "open"
    finally:
        await linked.dispose()
