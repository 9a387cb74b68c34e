"""main.py as a real process, for the tests where start-up, signals and crashes matter."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from settings import Settings

MAIN = Path(__file__).resolve().parent.parent / "main.py"
# Generous bounds for a loaded CI machine (importing aiogram alone can take seconds);
# readiness is polled in short steps, so a fast start is not slowed down by them.
START_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0
POLL_INTERVAL = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment_without_settings() -> dict[str, str]:
    """The test runner's environment less every variable the service reads."""
    names = {name.upper() for name in Settings.model_fields}
    return {key: value for key, value in os.environ.items() if key.upper() not in names}


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait_until_ready(self) -> None:
        """Poll GET /health until it answers 200; fail early if the process dies."""
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=0.5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"main.py exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if (await client.get(f"{self.base_url}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(POLL_INTERVAL)
        pytest.fail(f"main.py did not answer /health in {START_TIMEOUT}s:\n{self.log()}")

    async def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """Send `signum` and wait for the exit code."""
        self.process.send_signal(signum)
        return await asyncio.to_thread(self.process.wait, EXIT_TIMEOUT)


@dataclass
class ServiceRunner:
    """Starts main.py processes in `workdir` (no stray .env) and kills any left over."""

    workdir: Path
    environment: dict[str, str]
    started: list[Service] = field(default_factory=list)

    def start(self, **settings: str) -> Service:
        """Start main.py with these settings on top (HTTP_PORT: a free port unless given)."""
        port = int(settings.get("HTTP_PORT") or free_port())
        env = self.environment | {"HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port)} | settings
        log_path = self.workdir / f"service-{len(self.started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, str(MAIN)],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = Service(process, f"http://127.0.0.1:{port}", log_path)
        self.started.append(service)
        return service

    def run_to_exit(self, **settings: str) -> subprocess.CompletedProcess[str]:
        """Run main.py expecting it to stop by itself (a configuration error, say)."""
        return subprocess.run(
            [sys.executable, str(MAIN)],
            cwd=self.workdir,
            env=self.environment | settings,
            capture_output=True,
            text=True,
            timeout=EXIT_TIMEOUT,
            check=False,
        )

    def kill_all(self) -> None:
        for service in self.started:
            if service.process.poll() is None:
                service.process.kill()
                service.process.wait()
