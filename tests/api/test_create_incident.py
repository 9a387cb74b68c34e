"""POST /incidents: creating, defaults, validation and Idempotency-Key retries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from storage.rules import DESCRIPTION_MAX_LENGTH, STATUS_VALUES
from storage.store import IncidentStore

pytestmark = pytest.mark.all_engines


async def test_create_returns_201_with_location(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/incidents", json={"description": "Disk full on db-1", "source": "monitoring"}
    )

    assert response.status_code == 201
    body = response.json()
    assert response.headers["Location"] == f"/incidents/{body['id']}"
    assert body["description"] == "Disk full on db-1"
    assert body["source"] == "monitoring"
    assert body["status"] == "open"
    assert body["created_by"] == body["updated_by"] == "api"
    created_at = datetime.fromisoformat(body["created_at"])
    assert created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created_at) < timedelta(minutes=1)
    assert (await client.get(response.headers["Location"])).json() == body


async def test_create_applies_defaults_when_only_description_given(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/incidents", json={"description": "Printer on fire"})

    assert response.status_code == 201
    assert response.json()["source"] == "operator"
    assert response.json()["status"] == "open"


async def test_create_normalizes_description_and_source(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/incidents", json={"description": "  \n Queue stuck \t", "source": " Склад "}
    )

    assert response.status_code == 201
    assert response.json()["description"] == "Queue stuck"
    assert response.json()["source"] == "склад"


@pytest.mark.parametrize("status", STATUS_VALUES)
async def test_create_keeps_given_status(client: httpx.AsyncClient, status: str) -> None:
    response = await client.post("/incidents", json={"description": "x", "status": status})

    assert response.status_code == 201
    assert response.json()["status"] == status


async def test_create_accepts_description_at_limit_after_trimming(
    client: httpx.AsyncClient,
) -> None:
    description = "я" * DESCRIPTION_MAX_LENGTH

    response = await client.post("/incidents", json={"description": f"  {description}\n"})

    assert response.status_code == 201
    assert response.json()["description"] == description


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "description", "Field required"),
        ({"description": ""}, "description", "Description is empty"),
        ({"description": " \n\t "}, "description", "Description is empty"),
        ({"description": "\u001f"}, "description", "Description is empty"),
        (
            {"description": "x" * (DESCRIPTION_MAX_LENGTH + 1)},
            "description",
            "the limit is 4096",
        ),
        ({"description": None}, "description", "valid string"),
        ({"description": 42}, "description", "valid string"),
        ({"description": ["a"]}, "description", "valid string"),
        ({"description": "x", "source": ""}, "source", "Invalid source"),
        ({"description": "x", "source": "two words"}, "source", "Invalid source"),
        ({"description": "x", "source": "zabbix.prod"}, "source", "Invalid source"),
        ({"description": "x", "source": "s" * 33}, "source", "Invalid source"),
        ({"description": "x", "source": 7}, "source", "valid string"),
        ({"description": "x", "status": "done"}, "status", "'open', 'in_progress'"),
        ({"description": "x", "status": "OPEN"}, "status", "'open', 'in_progress'"),
        ({"description": "x", "id": 5}, "id", "Extra inputs are not permitted"),
    ],
)
async def test_create_rejects_invalid_body_with_422(
    client: httpx.AsyncClient, body: dict[str, Any], field: str, message: str
) -> None:
    response = await client.post("/incidents", json=body)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert message in error["msg"]
    assert (await client.get("/incidents")).headers["X-Total-Count"] == "0"


async def test_create_rejects_lone_surrogate_with_422(client: httpx.AsyncClient) -> None:
    # Valid JSON, but "\ud800" alone is no character: it cannot be stored or echoed.
    response = await client.post(
        "/incidents",
        content=b'{"description": "\\ud800 alone"}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "description"]
    assert "valid Unicode" in error["msg"]
    assert error["input"] == "\ufffd alone"


@pytest.mark.parametrize(
    "content",
    [b'{"description": ', b"not json", b'{"description": "a",}', b""],
)
async def test_create_rejects_malformed_json_with_422(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(
        "/incidents", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"]


@pytest.mark.parametrize("content", [b"[]", b'"Disk full"', b"42", b"null"])
async def test_create_rejects_json_that_is_not_an_object_with_422(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(
        "/incidents", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422


async def test_create_rejects_body_without_json_content_type_with_422(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/incidents", content=b'{"description": "x"}', headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 422


async def test_create_rejects_invalid_utf8_with_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/incidents",
        content=b'{"description": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("json_invalid", ["body"])
    assert error["ctx"] == {"error": "Body is not valid UTF-8"}


async def test_create_rejects_oversized_body_with_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/incidents", json={"description": "x" * 100_000})

    assert response.status_code == 413


async def test_create_returns_same_incident_when_idempotency_key_repeats(
    client: httpx.AsyncClient,
) -> None:
    body = {"description": "Disk full on db-1", "source": "zabbix"}
    headers = {"Idempotency-Key": "zabbix-event-1001"}

    first = await client.post("/incidents", json=body, headers=headers)
    retry = await client.post("/incidents", json=body, headers=headers)

    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.json() == first.json()
    assert retry.headers["Location"] == first.headers["Location"]
    assert (await client.get("/incidents")).headers["X-Total-Count"] == "1"


async def test_create_treats_retry_with_same_normalized_body_as_same_request(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "k1"}
    first = await client.post(
        "/incidents", json={"description": "Disk full", "source": "zabbix"}, headers=headers
    )

    retry = await client.post(
        "/incidents", json={"description": " Disk full\n", "source": "ZABBIX"}, headers=headers
    )

    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]


async def test_create_returns_current_state_when_retried_after_status_change(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "k1"}
    first = await client.post("/incidents", json={"description": "x"}, headers=headers)
    await client.patch(f"/incidents/{first.json()['id']}/status", json={"status": "resolved"})

    retry = await client.post("/incidents", json={"description": "x"}, headers=headers)

    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["status"] == "resolved"


async def test_create_makes_separate_incidents_for_different_keys(
    client: httpx.AsyncClient,
) -> None:
    body = {"description": "Disk full on db-1"}

    first = await client.post("/incidents", json=body, headers={"Idempotency-Key": "a"})
    second = await client.post("/incidents", json=body, headers={"Idempotency-Key": "b"})
    third = await client.post("/incidents", json=body)

    assert [first.status_code, second.status_code, third.status_code] == [201, 201, 201]
    assert len({first.json()["id"], second.json()["id"], third.json()["id"]}) == 3


@pytest.mark.parametrize(
    "changed",
    [{"description": "Another problem"}, {"source": "partner"}],
)
async def test_create_rejects_reused_idempotency_key_for_different_incident_with_409(
    client: httpx.AsyncClient, changed: dict[str, str]
) -> None:
    body = {"description": "Disk full on db-1", "source": "zabbix"}
    headers = {"Idempotency-Key": "zabbix-event-1001"}
    first = await client.post("/incidents", json=body, headers=headers)

    response = await client.post("/incidents", json=body | changed, headers=headers)

    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "zabbix-event-1001" in detail
    assert f"incident {first.json()['id']}" in detail
    assert "different description or source" in detail
    assert (await client.get("/incidents")).headers["X-Total-Count"] == "1"


async def test_create_makes_one_incident_for_concurrent_retries(
    client: httpx.AsyncClient, store: IncidentStore
) -> None:
    body = {"description": "Disk full on db-1", "source": "zabbix"}
    headers = {"Idempotency-Key": "zabbix-event-1001"}

    responses = await asyncio.gather(
        *(client.post("/incidents", json=body, headers=headers) for _ in range(10))
    )

    assert sorted(response.status_code for response in responses) == [200] * 9 + [201]
    assert len({response.json()["id"] for response in responses}) == 1
    assert (await store.list()).total == 1


async def test_create_accepts_idempotency_key_of_255_characters(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "k" * 255}

    first = await client.post("/incidents", json={"description": "x"}, headers=headers)
    retry = await client.post("/incidents", json={"description": "x"}, headers=headers)

    assert (first.status_code, retry.status_code) == (201, 200)


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_create_rejects_invalid_idempotency_key_with_422(
    client: httpx.AsyncClient, key: str
) -> None:
    response = await client.post(
        "/incidents", json={"description": "x"}, headers={"Idempotency-Key": key}
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
