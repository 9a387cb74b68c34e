"""GET /metrics: Prometheus' text format, read with the client library's own parser, whose
figures move with what was done through the real app over a real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from metrics import Metrics
from storage.database import create_engine, create_session_factory
from storage.leadership import Leadership
from storage.models import utcnow
from storage.store import IncidentStore
from tests.faults import DatabaseLink
from tests.prometheus import Scrape, scrape

NOTIFY_CHAT_ID = -1_009_000_000_042
LEASE = timedelta(seconds=60)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def store(engine: AsyncEngine, metrics: Metrics) -> IncidentStore:
    """The store as main.py wires it: its status changes are observed by the metrics."""
    return IncidentStore(create_session_factory(engine), on_status_changed=metrics.status_changed)


@pytest.fixture
def app(store: IncidentStore, metrics: Metrics) -> FastAPI:
    return create_app(store, api_key=None, metrics=metrics)


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def create(client: httpx.AsyncClient, description: str, source: str) -> int:
    response = await client.post("/incidents", json={"description": description, "source": source})
    assert response.status_code == 201, response.text
    incident_id: int = response.json()["id"]
    return incident_id


async def move(client: httpx.AsyncClient, incident_id: int, status: str) -> None:
    response = await client.patch(f"/incidents/{incident_id}/status", json={"status": status})
    assert response.status_code == 200, response.text


@pytest.mark.all_engines
async def test_metrics_count_incidents_and_times_after_real_changes(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    disk = await create(client, "Disk full on db-1", "monitoring")
    await create(client, "Scooter #42 is not responding", "monitoring")
    refunds = await create(client, "Refunds stuck since 14:00", "склад")
    await move(client, disk, "resolved")
    await move(client, refunds, "in_progress")
    await move(client, refunds, "in_progress")  # already: a no-op, not a second take

    after = await scrape(client)

    assert before.labelled("incident_bot_incidents") == []
    assert before.value("incident_bot_time_to_resolve_seconds_count") == 0
    assert after.types["incident_bot_incidents"] == "gauge"
    assert after.value("incident_bot_incidents", status="open", source="monitoring") == 1
    assert after.value("incident_bot_incidents", status="resolved", source="monitoring") == 1
    assert after.value("incident_bot_incidents", status="in_progress", source="склад") == 1
    assert after.value("incident_bot_incidents", status="open", source="склад") == 0
    assert after.types["incident_bot_time_to_resolve_seconds"] == "histogram"
    assert after.value("incident_bot_time_to_resolve_seconds_count") == 1
    assert after.value("incident_bot_time_to_take_seconds_count") == 1
    # Resolved within the test, so within its first bucket (a minute).
    assert after.value("incident_bot_time_to_resolve_seconds_bucket", le="60.0") == 1
    assert 0 <= after.value("incident_bot_time_to_resolve_seconds_sum") < 60


async def test_resolving_again_after_reopening_is_another_time_to_resolve(
    client: httpx.AsyncClient,
) -> None:
    incident = await create(client, "Disk full on db-1", "monitoring")
    for status in ("resolved", "in_progress", "resolved", "closed"):
        await move(client, incident, status)

    scraped = await scrape(client)

    assert scraped.value("incident_bot_time_to_resolve_seconds_count") == 2
    # Only open -> in_progress is a take; resolved -> in_progress is a reopening.
    assert scraped.value("incident_bot_time_to_take_seconds_count") == 0


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient,
) -> None:
    incident = await create(client, "Disk full on db-1", "monitoring")
    for incident_id in (incident, 7, 8):
        await client.get(f"/incidents/{incident_id}")
    await client.get("/incidents", params={"status": "open"})
    await client.get("/no/such/page")
    await client.request("BREW", "/incidents")

    scraped = await scrape(client)

    requests = "incident_bot_http_requests_total"
    one = "/incidents/{incident_id}"
    assert scraped.value(requests, method="POST", route="/incidents", status="201") == 1
    assert scraped.value(requests, method="GET", route=one, status="200") == 1
    assert scraped.value(requests, method="GET", route=one, status="404") == 2
    assert scraped.value(requests, method="GET", route="/incidents", status="200") == 1
    assert scraped.value(requests, method="GET", route="unmatched", status="404") == 1
    assert scraped.value(requests, method="other", route="/incidents", status="405") == 1
    routes = {labels["route"] for labels in scraped.labelled(requests)}
    assert routes == {"/incidents", one, "unmatched"}  # never a raw path
    duration = "incident_bot_http_request_duration_seconds_count"
    assert scraped.value(duration, method="GET", route=one) == 3


async def test_each_scrape_counts_the_one_before(client: httpx.AsyncClient) -> None:
    await scrape(client)

    scraped = await scrape(client)

    assert (
        scraped.value(
            "incident_bot_http_requests_total", method="GET", route="/metrics", status="200"
        )
        == 1
    )


@pytest.mark.all_engines
async def test_outbox_by_state_and_oldest_pending_age(
    store: IncidentStore, metrics: Metrics
) -> None:
    app = create_app(store, api_key=None, announce_chat_id=NOTIFY_CHAT_ID, metrics=metrics)
    async with client_of(app) as client:
        empty = await scrape(client)
        for n in range(3):
            await create(client, f"Scooter #{n} is not responding", "monitoring")
        [first, second, _] = await store.outbox.due()
        await store.outbox.mark_sent([first.delivery.id])
        await store.outbox.mark_failed([second.delivery.id], "Bad Request: chat not found")
        queued_at = (await store.outbox.due())[0].delivery.created_at
        scraped = await scrape(client)
    age_now = (utcnow() - queued_at).total_seconds()

    deliveries = "incident_bot_outbox_deliveries"
    assert {labels["state"] for labels in empty.labelled(deliveries)} == {
        "pending",
        "sent",
        "folded",
        "failed",
    }
    assert empty.value("incident_bot_outbox_oldest_pending_age_seconds") == 0
    assert scraped.value(deliveries, state="pending") == 1
    assert scraped.value(deliveries, state="sent") == 1
    assert scraped.value(deliveries, state="failed") == 1
    assert scraped.value(deliveries, state="folded") == 0
    age = scraped.value("incident_bot_outbox_oldest_pending_age_seconds")
    assert 0 < age <= age_now


async def test_metrics_need_no_api_key(store: IncidentStore, metrics: Metrics) -> None:
    app = create_app(store, api_key=SecretStr("s3cret"), metrics=metrics)
    async with client_of(app) as client:
        refused = await client.get("/incidents")
        scraped = await scrape(client)

    assert refused.status_code == 401
    assert (
        scraped.value(
            "incident_bot_http_requests_total", method="GET", route="/incidents", status="401"
        )
        == 1
    )


async def test_metrics_off_answer_404(store: IncidentStore) -> None:
    async with client_of(create_app(store, api_key=None)) as client:
        response = await client.get("/metrics")

    assert response.status_code == 404
    assert response.json() == {"detail": "Metrics are off (METRICS=off)"}


async def test_each_instance_reports_its_own_role_and_counts(store: IncidentStore) -> None:
    lease = store.lease
    first = Leadership(lease("telegram", "a", LEASE), check_every=0.05, renew_every=0.05)
    second = Leadership(lease("telegram", "b", LEASE), check_every=0.05, renew_every=0.05)
    first_metrics, second_metrics = Metrics(), Metrics()
    first_app = create_app(store, api_key=None, leadership=first, metrics=first_metrics)
    second_app = create_app(store, api_key=None, leadership=second, metrics=second_metrics)
    leading = asyncio.Event()

    @asynccontextmanager
    async def lead() -> AsyncIterator[None]:
        leading.set()
        yield

    async with client_of(first_app) as one, client_of(second_app) as two:
        starting = await scrape(one)
        running = asyncio.create_task(first.run(lead))
        await asyncio.wait_for(leading.wait(), 5)
        standing_by = asyncio.create_task(second.run(lead))
        await wait_until(lambda: second.role == "standby")
        active, standby = await scrape(one), await scrape(two)
        first.stop()
        second.stop()
        await asyncio.gather(running, standing_by)

    assert roles(starting) == {"off": 0, "starting": 1, "active": 0, "standby": 0}
    assert roles(active) == {"off": 0, "starting": 0, "active": 1, "standby": 0}
    assert roles(standby) == {"off": 0, "starting": 0, "active": 0, "standby": 1}
    # Each app counts its own requests in its own registry: one scrape before on the
    # first, none on the second.
    metrics_requests: dict[str, Any] = {"method": "GET", "route": "/metrics", "status": "200"}
    assert active.value("incident_bot_http_requests_total", **metrics_requests) == 1
    assert standby.find("incident_bot_http_requests_total", **metrics_requests) is None


async def test_role_is_off_without_the_bot(client: httpx.AsyncClient) -> None:
    assert roles(await scrape(client)) == {"off": 1, "starting": 0, "active": 0, "standby": 0}


@pytest.mark.postgresql_only
async def test_database_out_of_reach_leaves_the_process_figures(
    engine: AsyncEngine, database_url: str, link: DatabaseLink, metrics: Metrics
) -> None:
    linked = create_engine(link.url(database_url))
    store = IncidentStore(create_session_factory(linked), on_status_changed=metrics.status_changed)
    try:
        async with client_of(create_app(store, api_key=None, metrics=metrics)) as client:
            await create(client, "Disk full on db-1", "monitoring")
            await link.cut()
            response = await client.get("/metrics")
            await link.restore()
            recovered = await scrape(client)
    finally:
        await linked.dispose()

    assert response.status_code == 200
    scraped = Scrape(response.text)
    assert scraped.value("incident_bot_store_readable") == 0
    assert scraped.labelled("incident_bot_incidents") == []
    assert (
        scraped.value(
            "incident_bot_http_requests_total", method="POST", route="/incidents", status="201"
        )
        == 1
    )
    assert recovered.value("incident_bot_store_readable") == 1
    assert recovered.value("incident_bot_incidents", status="open", source="monitoring") == 1


def roles(scraped: Scrape) -> dict[str, float]:
    return {
        labels["role"]: scraped.value("incident_bot_role", **labels)
        for labels in scraped.labelled("incident_bot_role")
    }


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)
