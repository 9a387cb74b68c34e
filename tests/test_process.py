"""main.py as a real process: serving, stopping on signals, and refusing bad settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# Generous bounds for a loaded CI machine (importing aiogram alone can take seconds);
# readiness is polled in short steps, so a fast start is not slowed down by them.
STARTUP_TIMEOUT = 60.0
POLL_INTERVAL = 0.05
EXIT_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    base_url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_until_ready(self) -> None:
        """Poll GET /health until it answers 200; fail early if the process dies."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"main.py exited with {self.process.returncode}:\n{self.stderr()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(POLL_INTERVAL)
        pytest.fail(f"main.py did not answer /health in {STARTUP_TIMEOUT}s:\n{self.stderr()}")

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=EXIT_TIMEOUT)


StartService = Callable[..., Service]


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """The test runner's environment without any of the service's settings."""
    settings = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in settings}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'incidents.db'}"
    return env


@pytest.fixture
def start_service(tmp_path: Path, environment: dict[str, str]) -> Iterator[StartService]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> Service:
        port = free_port()
        env = environment | {"HTTP_PORT": str(port)} | settings
        stderr_path = tmp_path / f"stderr-{len(processes)}.log"
        with stderr_path.open("wb") as stderr:
            # cwd=tmp_path: no stray .env from the checkout is read.
            process = subprocess.Popen(
                [sys.executable, str(REPO_ROOT / "main.py")],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        processes.append(process)
        return Service(process, f"http://127.0.0.1:{port}", stderr_path)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_main(environment: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py")],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
        check=False,
    )


def test_main_keeps_incident_across_sigterm_and_restart(start_service: StartService) -> None:
    service = start_service()
    service.wait_until_ready()
    created = httpx.post(
        f"{service.base_url}/incidents",
        json={"description": "Склад: disk full 🔥", "source": "monitoring"},
        timeout=5,
    )
    assert created.status_code == 201

    assert service.stop(signal.SIGTERM) == 0

    restarted = start_service()
    restarted.wait_until_ready()
    fetched = httpx.get(f"{restarted.base_url}{created.headers['Location']}", timeout=5)
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert restarted.stop(signal.SIGTERM) == 0
    assert "Traceback" not in service.stderr() + restarted.stderr()


def test_main_exits_0_on_sigint(start_service: StartService) -> None:
    service = start_service()
    service.wait_until_ready()

    assert service.stop(signal.SIGINT) == 0
    assert "Traceback" not in service.stderr()


def test_main_logs_once_that_bot_is_off_without_configuration(
    start_service: StartService,
) -> None:
    service = start_service()
    service.wait_until_ready()
    service.stop()

    lines = [line for line in service.stderr().splitlines() if "Bot is off" in line]
    assert len(lines) == 1
    assert "BOT_TOKEN" in lines[0]


def test_main_requires_api_key_when_configured(start_service: StartService) -> None:
    service = start_service(API_KEY="s3cret")
    service.wait_until_ready()

    without_key = httpx.get(f"{service.base_url}/incidents", timeout=5)
    with_key = httpx.get(
        f"{service.base_url}/incidents", headers={"X-API-Key": "s3cret"}, timeout=5
    )

    assert without_key.status_code == 401
    assert with_key.status_code == 200
    assert service.stop() == 0


@pytest.mark.parametrize("port", ["abc", "70000"])
def test_main_exits_2_with_one_line_when_http_port_is_invalid(
    environment: dict[str, str], tmp_path: Path, port: str
) -> None:
    result = run_main(environment | {"HTTP_PORT": port}, tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert "HTTP_PORT" in line
    assert not (tmp_path / "incidents.db").exists()
