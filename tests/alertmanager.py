"""Prometheus Alertmanager as a real process, for the tests of what it delivers itself.

Debian's `prometheus-alertmanager` package provides it (`.ci/run` installs it). Without
it the tests that need it are skipped, unless REQUIRE_ALERTMANAGER is set (as CI sets
it): then they fail, so that a machine missing it never passes for one that tested it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service import free_port

BINARIES = ("prometheus-alertmanager", "alertmanager")
REQUIRE = "REQUIRE_ALERTMANAGER"
START_TIMEOUT = 30.0
POLL_INTERVAL = 0.05

# A notification as soon as a group starts, its repeats every few seconds: the shortest
# intervals Alertmanager accepts are 1 s, and it repeats a group whose alerts did not
# change on the first group_interval tick once repeat_interval has passed (every 3 s).
ROUTE_TIMING = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "2s"}


def binary() -> str:
    """The Alertmanager executable; skips the test (fails it under REQUIRE_ALERTMANAGER)
    when there is none."""
    for name in BINARIES:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
        if found:
            return found
    reason = "Alertmanager is not installed (apt-get install prometheus-alertmanager)"
    if os.environ.get(REQUIRE):
        pytest.fail(f"{reason}, and {REQUIRE} is set")
    pytest.skip(reason)


def config(webhook_urls: Sequence[str], *, bearer_token: str) -> str:
    """A configuration routing every alert, grouped by alertname, to one receiver that
    posts each notification to every URL, with the key as a bearer token."""
    webhooks = "".join(
        f"      - url: {url}\n"
        "        send_resolved: true\n"
        "        http_config:\n"
        "          authorization:\n"
        "            type: Bearer\n"
        f"            credentials: {bearer_token}\n"
        for url in webhook_urls
    )
    timing = "".join(f"  {name}: {value}\n" for name, value in ROUTE_TIMING.items())
    return (
        "route:\n"
        "  receiver: incident-bot\n"
        "  group_by: [alertname]\n"
        f"{timing}"
        "receivers:\n"
        "  - name: incident-bot\n"
        "    webhook_configs:\n"
        f"{webhooks}"
    )


@dataclass
class Alertmanager:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"Alertmanager exited with {self.process.returncode}:\n{self.log()}")
            try:
                if (await self.http.get("/-/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(POLL_INTERVAL)
        pytest.fail(f"Alertmanager was not ready in {START_TIMEOUT}s:\n{self.log()}")

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """What Prometheus does: POST /api/v2/alerts."""
        response = await self.http.post("/api/v2/alerts", json=alerts)
        assert response.status_code == 200, response.text

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include these."""
        text = (await self.http.get("/metrics")).text
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                sample, _, value = line.rpartition(" ")
                if all(label in sample for label in wanted):
                    total += float(value)
        return total

    async def stop(self) -> None:
        await self.http.aclose()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)


def start(workdir: Path, configuration: str) -> Alertmanager:
    """Alertmanager on a free loopback port, its state in `workdir`, clustering off."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(configuration, encoding="utf-8")
    port = free_port()
    log_path = workdir / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary(),
                f"--config.file={config_path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Alertmanager(process, f"http://127.0.0.1:{port}", log_path)


def alerts(
    alertname: str, instances: Sequence[str], *, ended: bool = False
) -> list[dict[str, Any]]:
    """Alerts as Prometheus posts them: one per instance; `ended` says they are over."""
    posted = []
    for instance in instances:
        alert: dict[str, Any] = {
            "labels": {
                "alertname": alertname,
                "instance": instance,
                "job": "node",
                "severity": "critical",
            },
            "annotations": {"summary": "Disk almost full"},
            "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=disk_free",
        }
        if ended:
            alert["endsAt"] = datetime.now(UTC).isoformat()
        posted.append(alert)
    return posted
