"""The servers under test, each in its own process: the real service and the textbook app."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.load import request_once
from settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment() -> dict[str, str]:
    """This process's environment without any of the service's settings (no BOT_TOKEN)."""
    settings = {name.upper() for name in Settings.model_fields}
    return {key: value for key, value in os.environ.items() if key.upper() not in settings}


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes(self.process.pid)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                status, _ = await request_once(HOST, self.port, "GET", path)
            except OSError:
                status = 0
            if status == 200:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer {path} in {STARTUP_TIMEOUT}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _spawn(name: str, command: list[str], env: dict[str, str], workdir: Path, port: int) -> Server:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    return Server(name, process, port, log_path)


async def start_service(database_url: str, workdir: Path) -> Server:
    """`main.py` as it is deployed (default settings), HTTP only, over `database_url`."""
    port = free_port()
    env = clean_environment()
    env.update(DATABASE_URL=database_url, HTTP_HOST=HOST, HTTP_PORT=str(port))
    # The working directory holds no .env, so only these settings apply.
    server = _spawn("service", [sys.executable, str(REPO_ROOT / "main.py")], env, workdir, port)
    await server.wait_ready("/health")
    return server


def textbook_module(database_url: str) -> tuple[str, str]:
    """The reference app for the engine `database_url` names, and the URL it is given.

    On SQLite, the sync textbook app over the same file through the plain sqlite3 driver;
    on any other engine, the async one, through the URL's own (async) driver.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        sync_url = url.set(drivername="sqlite")
        return "bench.textbook_app", sync_url.render_as_string(hide_password=False)
    return "bench.textbook_async_app", database_url


async def start_textbook(database_url: str, workdir: Path) -> Server:
    """The reference app under uvicorn's command line with its defaults."""
    port = free_port()
    module, textbook_url = textbook_module(database_url)
    env = clean_environment()
    env.update(TEXTBOOK_DATABASE_URL=textbook_url, PYTHONPATH=str(REPO_ROOT))
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    server = _spawn("textbook", command, env, workdir, port)
    await server.wait_ready("/incidents?limit=1")
    return server
