"""main.py as a real process: /metrics is open without the API key and counts what the
service did (METRICS=off's 404 is the app's, tests/api/test_metrics.py)."""

from __future__ import annotations

import httpx

from tests.prometheus import scrape
from tests.service import ServiceRunner


async def test_main_serves_metrics_without_the_api_key(services: ServiceRunner) -> None:
    service = services.start(API_KEY="s3cret")
    await service.wait_until_ready()

    key = {"X-API-Key": "s3cret"}
    async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
        created = await client.post(
            "/incidents", json={"description": "Disk full on db-1"}, headers=key
        )
        resolved = await client.patch(
            f"{created.headers['Location']}/status", json={"status": "resolved"}, headers=key
        )
        scraped = await scrape(client)

    assert (created.status_code, resolved.status_code) == (201, 200)
    assert scraped.value("incident_bot_incidents", status="resolved", source="operator") == 1
    assert scraped.value("incident_bot_time_to_resolve_seconds_count") == 1
    assert scraped.value("incident_bot_role", role="off") == 1
    assert scraped.value("process_resident_memory_bytes") > 0
    assert await service.stop() == 0
