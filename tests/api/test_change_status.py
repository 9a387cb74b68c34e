"""PATCH /incidents/{id}/status: allowed moves, no-ops, forbidden moves and bad input."""

from __future__ import annotations

from datetime import datetime
from itertools import product
from typing import Any

import httpx
import pytest

from storage.rules import TRANSITIONS, Status
from tests.api.conftest import MakeIncident

pytestmark = pytest.mark.all_engines


async def test_change_status_returns_updated_incident(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident()

    response = await client.patch(f"/incidents/{incident.id}/status", json={"status": "resolved"})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "resolved"
    assert body["updated_by"] == "api"
    assert datetime.fromisoformat(body["updated_at"]) > incident.updated_at
    assert (await client.get(f"/incidents/{incident.id}")).json() == body


async def test_change_status_is_noop_when_status_is_current(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident(status=Status.IN_PROGRESS)
    before = (await client.get(f"/incidents/{incident.id}")).json()

    response = await client.patch(
        f"/incidents/{incident.id}/status", json={"status": "in_progress"}
    )

    assert response.status_code == 200
    assert response.json() == before


@pytest.mark.parametrize(("current", "requested"), list(product(Status, Status)))
async def test_change_status_follows_transition_table(
    client: httpx.AsyncClient, make_incident: MakeIncident, current: Status, requested: Status
) -> None:
    incident = await make_incident(status=current)

    response = await client.patch(
        f"/incidents/{incident.id}/status", json={"status": requested.value}
    )

    if requested == current or requested in TRANSITIONS[current]:
        assert response.status_code == 200
        assert response.json()["status"] == requested.value
    else:
        assert response.status_code == 409
        assert response.json()["allowed"] == [status.value for status in TRANSITIONS[current]]


async def test_change_status_explains_forbidden_transition_with_409(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident(status=Status.IN_PROGRESS)

    response = await client.patch(f"/incidents/{incident.id}/status", json={"status": "open"})

    assert response.status_code == 409
    body = response.json()
    assert body == {
        "detail": body["detail"],
        "current": "in_progress",
        "requested": "open",
        "allowed": ["resolved", "closed"],
    }
    assert "from in_progress to open" in body["detail"]
    assert "resolved, closed" in body["detail"]
    assert (await client.get(f"/incidents/{incident.id}")).json()["status"] == "in_progress"


async def test_change_status_says_closed_is_final_with_409(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident(status=Status.CLOSED)

    response = await client.patch(f"/incidents/{incident.id}/status", json={"status": "open"})

    assert response.status_code == 409
    assert response.json()["allowed"] == []
    assert "final" in response.json()["detail"]


async def test_change_status_returns_404_for_missing_incident(client: httpx.AsyncClient) -> None:
    response = await client.patch("/incidents/7/status", json={"status": "resolved"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Incident 7 not found"}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"status": "done"}, ["body", "status"]),
        ({"status": "Resolved"}, ["body", "status"]),
        ({"status": None}, ["body", "status"]),
        ({"status": 1}, ["body", "status"]),
        ({}, ["body", "status"]),
        ({"status": "resolved", "by": "me"}, ["body", "by"]),
        ([], ["body"]),
    ],
)
async def test_change_status_rejects_invalid_body_with_422(
    client: httpx.AsyncClient, make_incident: MakeIncident, body: Any, loc: list[str]
) -> None:
    incident = await make_incident()

    response = await client.patch(f"/incidents/{incident.id}/status", json=body)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == loc
    assert (await client.get(f"/incidents/{incident.id}")).json()["status"] == "open"


async def test_change_status_names_valid_statuses_when_unknown(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident()

    response = await client.patch(f"/incidents/{incident.id}/status", json={"status": "done"})

    [error] = response.json()["detail"]
    for status in Status:
        assert f"'{status.value}'" in error["msg"]


async def test_change_status_rejects_malformed_json_with_422(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident()

    response = await client.patch(
        f"/incidents/{incident.id}/status",
        content=b'{"status": resolved}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("incident_id", ["0", "-5", str(2**64), "x"])
async def test_change_status_rejects_invalid_id_with_422(
    client: httpx.AsyncClient, incident_id: str
) -> None:
    response = await client.patch(f"/incidents/{incident_id}/status", json={"status": "closed"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "incident_id"]
