"""GET /incidents/{id}: found, not found, and ids that cannot be ids."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import MakeIncident

pytestmark = pytest.mark.all_engines


async def test_get_returns_incident(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident("Disk full on db-1", source="zabbix")

    response = await client.get(f"/incidents/{incident.id}")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == incident.id
    assert body["description"] == "Disk full on db-1"
    assert body["source"] == "zabbix"
    assert body["status"] == "open"
    assert set(body) == {
        "id",
        "description",
        "status",
        "source",
        "created_at",
        "updated_at",
        "created_by",
        "owner",
        "updated_by",
    }


async def test_get_returns_404_for_missing_incident(client: httpx.AsyncClient) -> None:
    response = await client.get("/incidents/7")

    assert response.status_code == 404
    assert response.json() == {"detail": "Incident 7 not found"}


async def test_get_returns_404_for_largest_64_bit_id(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/incidents/{2**63 - 1}")

    assert response.status_code == 404


@pytest.mark.parametrize("incident_id", ["0", "-1", str(2**63), str(10**40), "abc", "1.5"])
async def test_get_rejects_invalid_id_with_422(
    client: httpx.AsyncClient, incident_id: str
) -> None:
    response = await client.get(f"/incidents/{incident_id}")

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["path", "incident_id"]
