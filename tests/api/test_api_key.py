"""API_KEY: when set, every /incidents route needs X-API-Key; /health stays open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from api.app import create_app
from storage.store import IncidentStore
from tests.api.conftest import MakeIncident

KEY = "s3cret-ключ"
GOOD = {b"X-API-Key": KEY.encode("utf-8")}


@pytest.fixture
def api_key() -> SecretStr | None:
    return SecretStr(KEY)


@pytest.fixture
async def open_client(store: IncidentStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store, api_key=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/incidents", {"description": "Disk full"}),
    ("GET", "/incidents", None),
    ("GET", "/incidents/{id}", None),
    ("PATCH", "/incidents/{id}/status", {"status": "resolved"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize(
    "sent",
    [None, b"", b"wrong", KEY[:-1].encode("utf-8"), "ключ".encode(), b"\xff\xfe"],
    ids=["missing", "empty", "wrong", "prefix", "non-ascii", "not-utf8"],
)
async def test_incidents_routes_reject_missing_or_wrong_key_with_401(
    client: httpx.AsyncClient,
    make_incident: MakeIncident,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    sent: bytes | None,
) -> None:
    incident = await make_incident()
    headers = {} if sent is None else {b"X-API-Key": sent}

    response = await client.request(
        method, path.format(id=incident.id), json=body, headers=headers
    )

    assert response.status_code == 401
    assert response.json() == {
        "detail": "Missing or invalid API key (X-API-Key or Authorization: Bearer)"
    }
    assert response.headers["WWW-Authenticate"] == "APIKey"
    assert (await client.get(f"/incidents/{incident.id}", headers=GOOD)).json()["status"] == "open"


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_incidents_routes_accept_right_key(
    client: httpx.AsyncClient,
    make_incident: MakeIncident,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    incident = await make_incident()

    response = await client.request(method, path.format(id=incident.id), json=body, headers=GOOD)

    assert response.status_code in {200, 201}


async def test_incidents_reject_missing_key_before_reading_invalid_body(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/incidents", json={"description": ""})

    assert response.status_code == 401


async def test_health_stays_open_when_key_is_set(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200


async def test_openapi_documents_key_when_set(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    assert document["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The key set in the service's API_KEY setting.",
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            secured = path.startswith(("/incidents", "/alerts"))
            assert ("security" in operation) is secured
            assert ("401" in operation["responses"]) is secured


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_incidents_routes_need_no_key_when_unset(
    open_client: httpx.AsyncClient,
    make_incident: MakeIncident,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    incident = await make_incident()

    response = await open_client.request(method, path.format(id=incident.id), json=body)

    assert response.status_code in {200, 201}


async def test_openapi_documents_no_key_when_unset(open_client: httpx.AsyncClient) -> None:
    document = (await open_client.get("/openapi.json")).json()

    assert "securitySchemes" not in document.get("components", {})
    for operations in document["paths"].values():
        for operation in operations.values():
            assert "security" not in operation
            assert "401" not in operation["responses"]
