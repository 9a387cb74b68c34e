"""The real app over the real SQLite store, an HTTP client for it, and an incident factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from api.app import create_app
from storage.models import Incident
from storage.rules import Status
from storage.store import IncidentStore, NewIncident

MakeIncident = Callable[..., Awaitable[Incident]]


@pytest.fixture
def api_key() -> SecretStr | None:
    """No API key by default; a test module overrides this fixture to switch it on."""
    return None


@pytest.fixture
def app(store: IncidentStore, api_key: SecretStr | None) -> FastAPI:
    return create_app(store, api_key=api_key)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def make_incident(store: IncidentStore) -> MakeIncident:
    """Store an incident directly, as another door (the bot) would."""

    async def make(
        description: str = "Disk full on db-1",
        *,
        source: str = "monitoring",
        status: Status = Status.OPEN,
    ) -> Incident:
        created = await store.create(
            NewIncident(description=description, source=source, status=status)
        )
        return created.incident

    return make
