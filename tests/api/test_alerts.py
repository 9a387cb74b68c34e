"""The /alerts receivers over HTTP: Alertmanager's, Grafana's and the generic bodies as
their documentation shows them, one incident per problem, resolved by the monitoring
system; bad bodies refused naming the field, nothing half-stored; the key as a bearer
token; and a database that cannot write answering 503."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from storage.alerts import AlertStore
from storage.database import create_engine, create_session_factory
from storage.store import IncidentStore
from tests.alert_samples import (
    ALERTMANAGER_EXAMPLE,
    GRAFANA_EXAMPLE,
    alertmanager_group,
    resolved,
)
from tests.api.test_storage_unavailable import assert_unavailable
from tests.faults import SHORT_BUSY_TIMEOUT_MS, DatabaseLink, write_lock_held
from tests.storage.counts import counts_match_incidents

pytestmark = pytest.mark.all_engines

ALERTMANAGER = "/alerts/alertmanager"
GRAFANA = "/alerts/grafana"
EVENTS = "/alerts"


async def total(client: httpx.AsyncClient) -> int:
    return int((await client.get("/incidents")).headers["X-Total-Count"])


async def test_alertmanager_example_raises_incident(client: httpx.AsyncClient) -> None:
    response = await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)

    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/incidents/1"
    body = response.json()
    assert body["outcome"] == "created"
    incident = body["incident"]
    assert incident["description"] == (
        "BlackBox Probe Failure: https://server.example.org\n"
        "Instance https://server.example.org has been down for over 5m. Job: http_checks\n"
        "1 firing: https://server.example.org · job http_checks\n"
        "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0&g0.tab=1"
    )
    assert (incident["status"], incident["source"], incident["severity"]) == (
        "open",
        "alertmanager",
        "critical",
    )
    assert (incident["created_by"], incident["repeat_count"], incident["previous_id"]) == (
        "Alertmanager",
        0,
        None,
    )
    assert incident["last_seen_at"] == incident["created_at"]
    fetched = (await client.get("/incidents/1")).json()
    assert fetched["description"] == incident["description"]


async def test_group_firing_repeatedly_then_resolved_is_one_incident(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    app = create_app(
        store, api_key=None, alert_store=AlertStore(store, repeat_min_gap=timedelta(0))
    )
    transport = httpx.ASGITransport(app=app)
    hosts = ["db-1:9100", "db-2:9100"]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.post(ALERTMANAGER, json=alertmanager_group(hosts))
        again = await client.post(ALERTMANAGER, json=alertmanager_group(hosts))
        grown = await client.post(ALERTMANAGER, json=alertmanager_group([*hosts, "db-3:9100"]))
        over = await client.post(
            ALERTMANAGER, json=alertmanager_group([*hosts, "db-3:9100"], status="resolved")
        )
        retried = await client.post(
            ALERTMANAGER, json=alertmanager_group([*hosts, "db-3:9100"], status="resolved")
        )
        listed = await client.get("/incidents")

    assert [r.status_code for r in (first, again, grown, over, retried)] == [
        201,
        200,
        200,
        200,
        200,
    ]
    assert [r.json()["outcome"] for r in (first, again, grown, over, retried)] == [
        "created",
        "repeated",
        "repeated",
        "resolved",
        "ignored",
    ]
    assert first.json()["incident"]["description"] == (
        "DiskFull\n2 firing: db-1:9100, db-2:9100 · job node\n"
        "http://prometheus:9090/graph?g0.expr=disk_free"
    )
    incident = over.json()["incident"]
    assert incident["description"].startswith("DiskFull\n3 firing: db-1:9100, db-2:9100, db-3")
    assert (incident["status"], incident["updated_by"], incident["repeat_count"]) == (
        "resolved",
        "Alertmanager",
        2,
    )
    assert incident["severity"] == "warning"
    assert listed.headers["X-Total-Count"] == "1"
    assert await counts_match_incidents(engine)


async def test_firing_again_after_resolve_names_the_earlier_incident(
    client: httpx.AsyncClient,
) -> None:
    await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)
    await client.post(ALERTMANAGER, json=resolved(ALERTMANAGER_EXAMPLE))

    again = await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)

    assert again.status_code == 201
    assert again.json()["incident"]["id"] == 2
    assert again.json()["incident"]["previous_id"] == 1
    assert (await client.get("/incidents/1")).json()["status"] == "resolved"


async def test_incident_closed_by_hand_stays_closed(client: httpx.AsyncClient) -> None:
    await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)
    await client.patch("/incidents/1/status", json={"status": "closed"})

    resolve = await client.post(ALERTMANAGER, json=resolved(ALERTMANAGER_EXAMPLE))
    fired = await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)

    assert resolve.status_code == 200
    assert resolve.json()["outcome"] == "ignored"
    assert resolve.json()["incident"]["status"] == "closed"
    assert fired.status_code == 201
    assert fired.json()["incident"]["previous_id"] == 1


async def test_source_label_names_the_source(client: httpx.AsyncClient) -> None:
    labelled = copy.deepcopy(ALERTMANAGER_EXAMPLE)
    labelled["commonLabels"]["source"] = "Blackbox"
    odd = copy.deepcopy(ALERTMANAGER_EXAMPLE)
    odd["groupKey"] = "another"
    odd["commonLabels"]["source"] = "not a source!"

    named = await client.post(ALERTMANAGER, json=labelled)
    fallback = await client.post(ALERTMANAGER, json=odd)

    assert named.json()["incident"]["source"] == "blackbox"
    assert fallback.json()["incident"]["source"] == "alertmanager"


async def test_large_group_within_bound_is_one_incident_naming_some_hosts(
    client: httpx.AsyncClient,
) -> None:
    hosts = [f"scooter-{n:04}.fleet.example.org:9100" for n in range(2000)]
    body = alertmanager_group(hosts)
    body["truncatedAlerts"] = 5
    assert 500_000 < len(json.dumps(body)) < 1024 * 1024

    response = await client.post(ALERTMANAGER, json=body)

    assert response.status_code == 201
    description = response.json()["incident"]["description"]
    assert "2005 firing: scooter-0000.fleet.example.org:9100, " in description
    assert "and 1990 more · job node" in description


async def test_grafana_example_raises_incident_and_resolves(client: httpx.AsyncClient) -> None:
    fired = await client.post(GRAFANA, json=GRAFANA_EXAMPLE)
    repeat = await client.post(GRAFANA, json=GRAFANA_EXAMPLE)
    other_org = await client.post(GRAFANA, json={**GRAFANA_EXAMPLE, "orgId": 2})
    over = await client.post(GRAFANA, json=resolved(GRAFANA_EXAMPLE))

    assert fired.status_code == 201, fired.text
    incident = fired.json()["incident"]
    assert incident["description"] == (
        "High memory usage, High CPU usage\n2 firing\n"
        "https://play.grafana.org/alerting/1afz29v7z/edit"
    )
    assert (incident["source"], incident["created_by"], incident["severity"]) == (
        "grafana",
        "Grafana",
        None,
    )
    assert repeat.json()["outcome"] == "repeated"
    assert other_org.status_code == 201  # group keys are per organisation
    assert over.json()["outcome"] == "resolved"
    assert over.json()["incident"]["id"] == 1
    assert over.json()["incident"]["updated_by"] == "Grafana"


async def test_grafana_prefers_the_panel_link(client: httpx.AsyncClient) -> None:
    body = copy.deepcopy(GRAFANA_EXAMPLE)
    body["alerts"][0]["panelURL"] = "https://play.grafana.org/d/abc?viewPanel=2"

    response = await client.post(GRAFANA, json=body)

    assert response.json()["incident"]["description"].endswith("?viewPanel=2")


async def test_generic_events_trigger_repeat_and_resolve(client: httpx.AsyncClient) -> None:
    trigger = {
        "dedup_key": "zabbix-trigger-18254",
        "action": "trigger",
        "description": "Zabbix: free disk space is less than 5% on db-1",
        "source": "zabbix",
        "severity": "High",
    }

    created = await client.post(EVENTS, json=trigger)
    repeated = await client.post(EVENTS, json=trigger)
    over = await client.post(
        EVENTS, json={"dedup_key": "zabbix-trigger-18254", "action": "resolve", "source": "zabbix"}
    )
    unknown = await client.post(EVENTS, json={"dedup_key": "never", "action": "resolve"})

    assert created.status_code == 201
    incident = created.json()["incident"]
    assert (incident["description"], incident["source"], incident["severity"]) == (
        "Zabbix: free disk space is less than 5% on db-1",
        "zabbix",
        "high",
    )
    assert repeated.json()["outcome"] == "repeated"
    assert over.json()["incident"]["status"] == "resolved"
    assert over.json()["incident"]["updated_by"] == "zabbix"
    assert (unknown.status_code, unknown.json()) == (200, {"outcome": "ignored", "incident": None})


async def test_generic_event_source_defaults_to_monitoring(client: httpx.AsyncClient) -> None:
    response = await client.post(
        EVENTS, json={"dedup_key": "uptime:shop", "action": "trigger", "description": "Shop down"}
    )

    assert response.json()["incident"]["source"] == "monitoring"


async def test_unknown_fields_are_ignored(client: httpx.AsyncClient) -> None:
    body = copy.deepcopy(ALERTMANAGER_EXAMPLE)
    body["somethingNew"] = {"added": "in a later version"}
    body["alerts"][0]["somethingElse"] = [1, 2]
    event = {"dedup_key": "k", "action": "trigger", "description": "x", "priority": 3}

    assert (await client.post(ALERTMANAGER, json=body)).status_code == 201
    assert (await client.post(EVENTS, json=event)).status_code == 201


@pytest.mark.sqlite_only
@pytest.mark.parametrize("busy_timeout_ms", [SHORT_BUSY_TIMEOUT_MS])
async def test_alert_while_database_locked_answers_503_and_is_applied_on_retry(
    client: httpx.AsyncClient, database_url: str
) -> None:
    with write_lock_held(database_url):
        refused = await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)

    retried = await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)

    assert_unavailable(refused)
    assert retried.status_code == 201
    assert await total(client) == 1


@pytest.mark.postgresql_only
async def test_alert_while_server_out_of_reach_answers_503(
    engine: AsyncEngine, database_url: str, link: DatabaseLink
) -> None:
    linked = create_engine(link.url(database_url))
    try:
        app = create_app(IncidentStore(create_session_factory(linked)), api_key=None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await link.cut()
            refused = await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)
            await link.restore()
            retried = await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)
    finally:
        await linked.dispose()

    assert_unavailable(refused)
    assert retried.status_code == 201
