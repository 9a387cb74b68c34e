"""GET /health: 200 while the database answers, 503 when it does not."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from storage.database import create_engine, create_session_factory
from storage.store import IncidentStore

pytestmark = pytest.mark.all_engines


@pytest.fixture
async def unreachable_store(tmp_path: Path) -> AsyncIterator[IncidentStore]:
    # A directory where the database file should be: SQLite cannot open it.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}")
    yield IncidentStore(create_session_factory(engine))
    await engine.dispose()
    # aiosqlite's thread for a connection that failed to open reports its end to the
    # event loop after the failure: let it, before the test's loop closes.
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, 5)


async def test_health_returns_ok_when_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "bot": "off"}


async def test_health_returns_503_when_database_does_not_answer(
    unreachable_store: IncidentStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(unreachable_store, api_key=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/health")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unavailable", "bot": "off"}
    assert "the database cannot take writes" in caplog.text
    assert response.headers["Retry-After"].isdigit()
