"""main.py as a real process: serving, stopping on signals, and refusing bad settings."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.service import ServiceRunner


async def test_main_keeps_incident_across_sigterm_and_restart(services: ServiceRunner) -> None:
    service = services.start()
    await service.wait_until_ready()
    async with httpx.AsyncClient(timeout=5) as client:
        created = await client.post(
            f"{service.base_url}/incidents",
            json={"description": "Склад: disk full 🔥", "source": "monitoring"},
        )
        assert created.status_code == 201

        assert await service.stop(signal.SIGTERM) == 0

        restarted = services.start()
        await restarted.wait_until_ready()
        fetched = await client.get(f"{restarted.base_url}{created.headers['Location']}")
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert await restarted.stop(signal.SIGTERM) == 0
    assert "Traceback" not in service.log() + restarted.log()


async def test_main_exits_0_on_sigint(services: ServiceRunner) -> None:
    service = services.start()
    await service.wait_until_ready()

    assert await service.stop(signal.SIGINT) == 0
    assert "Traceback" not in service.log()


async def test_main_logs_once_that_bot_is_off_without_configuration(
    services: ServiceRunner,
) -> None:
    service = services.start()
    await service.wait_until_ready()
    await service.stop()

    lines = [line for line in service.log().splitlines() if "Bot is off" in line]
    assert len(lines) == 1
    assert "BOT_TOKEN" in lines[0]


async def test_main_requires_api_key_when_configured(services: ServiceRunner) -> None:
    service = services.start(API_KEY="s3cret")
    await service.wait_until_ready()

    async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
        without_key = await client.get("/incidents")
        with_key = await client.get("/incidents", headers={"X-API-Key": "s3cret"})

    assert without_key.status_code == 401
    assert with_key.status_code == 200
    assert await service.stop() == 0


@pytest.mark.parametrize("port", ["abc", "70000"])
def test_main_exits_2_with_one_line_when_http_port_is_invalid(
    services: ServiceRunner, port: str
) -> None:
    result = services.run_to_exit(HTTP_PORT=port)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert "HTTP_PORT" in line
    assert not (services.workdir / "incidents.db").exists()
