"""PATCH /incidents/{id} (status, description_append, owner in one transaction), ETags with
If-Match / If-None-Match, and GET /incidents/{id}/events."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from storage.rules import Status
from storage.store import Actor, IncidentStore
from tests.api.conftest import MakeIncident

pytestmark = pytest.mark.all_engines


async def test_one_patch_changes_status_description_and_owner_with_an_event_each(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident("Router down")

    response = await client.patch(
        f"/incidents/{incident.id}",
        json={
            "status": "in_progress",
            "description_append": "Restarted it; watching.",
            "owner": {"id": 42, "name": "Oleg"},
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "in_progress"
    assert body["description"] == "Router down\nRestarted it; watching."
    assert body["owner"] == {"id": 42, "name": "Oleg"}
    assert response.headers["ETag"] == '"v2"'
    events = (await client.get(f"/incidents/{incident.id}/events")).json()
    assert [(e["kind"], e["actor"]) for e in events] == [
        ("created", None),
        ("status_changed", "api"),
        ("description_appended", "api"),
        ("owner_set", "api"),
    ]
    assert (events[1]["status_from"], events[1]["status_to"]) == ("open", "in_progress")
    assert events[2]["text"] == "Restarted it; watching."
    assert events[3]["text"] == "Oleg"


async def test_owner_null_gives_the_incident_back(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident()
    await client.patch(f"/incidents/{incident.id}", json={"owner": {"name": "Night shift"}})

    response = await client.patch(f"/incidents/{incident.id}", json={"owner": None})

    assert response.json()["owner"] is None
    assert (await client.get(f"/incidents/{incident.id}")).json()["owner"] is None
    kinds = [e["kind"] for e in (await client.get(f"/incidents/{incident.id}/events")).json()]
    assert kinds == ["created", "owner_set", "owner_released"]


async def test_if_match_with_an_old_version_is_412_and_changes_nothing(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident()
    seen = (await client.get(f"/incidents/{incident.id}")).headers["ETag"]
    await client.patch(f"/incidents/{incident.id}", json={"description_append": "More."})

    stale = await client.patch(
        f"/incidents/{incident.id}", json={"status": "closed"}, headers={"If-Match": seen}
    )
    current = await client.get(f"/incidents/{incident.id}")
    fresh = await client.patch(
        f"/incidents/{incident.id}",
        json={"status": "closed"},
        headers={"If-Match": current.headers["ETag"]},
    )

    assert stale.status_code == 412
    assert "changed since" in stale.json()["detail"]
    assert stale.headers["ETag"] == current.headers["ETag"]
    assert current.json()["status"] == "open"
    assert fresh.status_code == 200
    assert fresh.json()["status"] == "closed"


async def test_if_none_match_with_the_current_version_is_304(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident()
    first = await client.get(f"/incidents/{incident.id}")

    unchanged = await client.get(
        f"/incidents/{incident.id}", headers={"If-None-Match": first.headers["ETag"]}
    )
    await client.patch(f"/incidents/{incident.id}/status", json={"status": "resolved"})
    changed = await client.get(
        f"/incidents/{incident.id}", headers={"If-None-Match": first.headers["ETag"]}
    )

    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert changed.status_code == 200
    assert changed.headers["ETag"] != first.headers["ETag"]


async def test_a_patch_breaking_the_transition_rules_is_409_and_nothing_is_half_done(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident(status=Status.CLOSED)

    response = await client.patch(
        f"/incidents/{incident.id}",
        json={"status": "open", "description_append": "should not stick"},
    )

    assert response.status_code == 409
    assert response.json()["allowed"] == []
    body = (await client.get(f"/incidents/{incident.id}")).json()
    assert "should not stick" not in body["description"]
    assert len((await client.get(f"/incidents/{incident.id}/events")).json()) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"colour": "red"}, "colour"),
        ({"description_append": "   "}, "description_append"),
        ({"owner": {"name": ""}}, "name"),
        ({"owner": {"id": 0, "name": "x"}}, "id"),
        ({"status": "done"}, "status"),
    ],
)
async def test_a_bad_patch_is_422_naming_the_field(
    client: httpx.AsyncClient, make_incident: MakeIncident, body: dict[str, object], field: str
) -> None:
    incident = await make_incident()

    response = await client.patch(f"/incidents/{incident.id}", json=body)

    assert response.status_code == 422
    assert field in str(response.json()["detail"])


async def test_patch_and_events_of_a_missing_incident_are_404(client: httpx.AsyncClient) -> None:
    patched = await client.patch("/incidents/999", json={"status": "closed"})
    events = await client.get("/incidents/999/events")

    assert (patched.status_code, events.status_code) == (404, 404)
    assert patched.json() == {"detail": "Incident 999 not found"}


async def test_events_are_paged_oldest_first_with_the_total(
    client: httpx.AsyncClient, make_incident: MakeIncident, store: IncidentStore
) -> None:
    incident = await make_incident()
    for n in range(5):
        await store.add_note(incident.id, f"note {n}", Actor("Oleg", 42))

    page = await client.get(f"/incidents/{incident.id}/events", params={"limit": 2, "offset": 1})

    assert page.headers["X-Total-Count"] == "6"
    assert [(e["kind"], e["text"]) for e in page.json()] == [
        ("note", "note 0"),
        ("note", "note 1"),
    ]
    assert page.json()[0]["actor_id"] == 42


async def test_concurrent_patches_each_land_once_on_the_timeline(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    incident = await make_incident()

    responses = await asyncio.gather(
        *(
            client.patch(f"/incidents/{incident.id}", json={"description_append": f"line {n}"})
            for n in range(10)
        )
    )

    assert {r.status_code for r in responses} == {200}
    final = (await client.get(f"/incidents/{incident.id}")).json()
    assert sorted(final["description"].split("\n")[1:]) == sorted(f"line {n}" for n in range(10))
    events = (await client.get(f"/incidents/{incident.id}/events")).json()
    assert len(events) == 11
    assert (await client.get(f"/incidents/{incident.id}")).headers["ETag"] == '"v11"'
