"""The HTTP server's bounds, tried over real sockets the way an attacker would try them.

The server is the one main.py runs (api.server.create_server), on 127.0.0.1, in this
process with small limits, or as main.py itself where the process's memory is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiogram import Bot, Dispatcher
from fastapi import FastAPI
from pydantic import SecretStr

from api.app import MAX_BODY_BYTES, create_app
from api.server import create_server
from bot.webhook import SECRET_HEADER, create_webhook_router
from storage.store import IncidentStore
from tests.service import ServiceRunner, free_port

# Only an upper bound, so that a failing test fails instead of hanging.
WAIT = 15.0
MiB = 1024 * 1024
WEBHOOK_PATH = "/telegram/webhook"
SECRET = "s3cret_token-42"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> Response:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = dict(line.lower().split(": ", 1) for line in lines)
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Response(int(status_line.split()[1]), headers, body)

    async def closed_by_server(self) -> bool:
        """Wait for the server to end the connection; False if it answers more instead."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), WAIT)
        except ConnectionResetError:
            return True
        return rest == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


Connect = Callable[[], Awaitable[Connection]]


async def connect(port: int) -> Connection:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return Connection(reader, writer)


@contextlib.asynccontextmanager
async def running(app: FastAPI, **limits: Any) -> AsyncIterator[uvicorn.Server]:
    # A failing test may leave a connection open: shutdown then does not wait for it.
    server = create_server(
        app, host="127.0.0.1", port=free_port(), timeout_graceful_shutdown=1, **limits
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await serving


def port_of(server: uvicorn.Server) -> int:
    return server.config.port


async def flood(connection: Connection, head: bytes, size: int) -> None:
    """Send `head` and then `size` bytes of one header value, until the server hangs up."""
    chunk = b"a" * MiB
    with contextlib.suppress(ConnectionError):
        await connection.send(head)
        for _ in range(size // MiB):
            await connection.send(chunk)
        await connection.send(b"\r\n\r\n")


@pytest.fixture
def app(store: IncidentStore) -> FastAPI:
    return create_app(store, api_key=None)


@pytest.fixture
async def webhook_app(store: IncidentStore) -> AsyncIterator[FastAPI]:
    bot = Bot("42:TEST-TOKEN")
    app = create_app(store, api_key=None)
    app.include_router(
        create_webhook_router(Dispatcher(), bot, path=WEBHOOK_PATH, secret=SecretStr(SECRET))
    )
    try:
        yield app
    finally:
        await bot.session.close()


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: ", id="header"),
        pytest.param(b"GET /health?", id="request-line"),
    ],
)
async def test_head_over_size_bound_gets_431_and_connection_closes(
    app: FastAPI, head: bytes
) -> None:
    async with running(app, max_header_bytes=8 * 1024) as server:
        connection = await connect(port_of(server))
        sending = asyncio.create_task(flood(connection, head, 4 * MiB))

        response = await connection.response()

        assert response.status == 431
        assert response.json() == {
            "detail": "The request line and header fields exceed 8192 bytes"
        }
        assert response.headers["connection"] == "close"
        assert await connection.closed_by_server()
        await sending
        await connection.close()


async def test_request_within_bounds_arriving_in_one_read_with_its_body_is_served(
    app: FastAPI,
) -> None:
    # The head is small, but head and body together are far past the head's bound.
    body = b'{"description": "Disk full", "source": "zabbix"' + b" " * 40_000 + b"}"
    async with running(app, max_header_bytes=4 * 1024) as server:
        connection = await connect(port_of(server))

        await connection.send(
            b"POST /incidents HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        response = await connection.response()

        assert response.status == 201
        assert response.json()["description"] == "Disk full"
        await connection.close()


async def test_header_fields_over_count_bound_get_431_and_connection_closes(
    app: FastAPI,
) -> None:
    def request(fields: int) -> bytes:
        lines = b"".join(b"X-Field-%d: %d\r\n" % (number, number) for number in range(fields))
        return b"GET /health HTTP/1.1\r\nHost: test\r\n" + lines + b"\r\n"

    async with running(app, max_header_fields=20) as server:
        within = await connect(port_of(server))
        await within.send(request(19))  # with Host, 20 fields
        over = await connect(port_of(server))
        await over.send(request(20))

        assert (await within.response()).status == 200
        refused = await over.response()
        assert refused.status == 431
        assert refused.json() == {"detail": "The request has more than 20 header fields"}
        assert await over.closed_by_server()
        await within.close()
        await over.close()


async def test_stalled_request_head_gets_408_and_connection_closes(app: FastAPI) -> None:
    async with running(app, header_timeout=0.3) as server:
        connection = await connect(port_of(server))

        await connection.send(b"GET /health HTTP/1.1\r\nHost: te")
        response = await connection.response()

        assert response.status == 408
        assert "did not arrive" in response.json()["detail"]
        assert await connection.closed_by_server()
        await connection.close()


async def test_silent_connection_is_closed_after_header_timeout(app: FastAPI) -> None:
    async with running(app, header_timeout=0.3) as server:
        connection = await connect(port_of(server))

        assert await connection.closed_by_server()
        await connection.close()


async def test_trickled_bytes_after_a_response_do_not_keep_connection_open(
    app: FastAPI,
) -> None:
    # Any byte used to cancel the keep-alive timeout for good; the header timeout is a
    # total from the first byte of the next request, so a byte now and then cannot help.
    async with running(app, header_timeout=0.5, keep_alive_timeout=5) as server:
        connection = await connect(port_of(server))
        await connection.send(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await connection.response()).status == 200

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    await connection.send(b"\r\n")
                    await asyncio.sleep(0.1)

        trickling = asyncio.create_task(trickle())
        try:
            assert (await connection.response()).status == 408
            assert await connection.closed_by_server()
        finally:
            trickling.cancel()
            await connection.close()


@pytest.mark.parametrize("path", ["/incidents", WEBHOOK_PATH])
async def test_stalled_body_connection_is_closed_without_an_error_logged(
    webhook_app: FastAPI, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(webhook_app, body_timeout=0.3) as server:
        connection = await connect(port_of(server))

        await connection.send(
            b"POST %s HTTP/1.1\r\nHost: test\r\n%s: %s\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"description": '
            % (path.encode(), SECRET_HEADER.encode(), SECRET.encode())
        )

        assert await connection.closed_by_server()
        await connection.close()
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_connections_past_bound_are_closed_until_one_ends(app: FastAPI) -> None:
    async with running(app, max_connections=3) as server:
        open_ = [await connect(port_of(server)) for _ in range(3)]

        extra = await connect(port_of(server))
        assert await extra.closed_by_server()
        await extra.close()

        # The server ends this one itself: it has let go of it once the client sees it end.
        await open_[0].send(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        assert (await open_[0].response()).status == 200
        assert await open_[0].closed_by_server()
        later = await connect(port_of(server))
        await later.send(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await later.response()).status == 200
        for connection in [*open_, later]:
            await connection.close()


async def test_webhook_refuses_body_over_content_length_bound_with_413_before_reading(
    webhook_app: FastAPI,
) -> None:
    async with running(webhook_app) as server:
        connection = await connect(port_of(server))

        # 60 MB announced, none of it sent: the answer must not wait for the body.
        await connection.send(
            b"POST %s HTTP/1.1\r\nHost: test\r\n%s: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n"
            % (WEBHOOK_PATH.encode(), SECRET_HEADER.encode(), SECRET.encode(), 60 * MiB)
        )
        response = await connection.response()

        assert response.status == 413
        # Starlette's own answer when the announced length is over the bound.
        assert response.body == b"Content Too Large"
        await connection.close()


async def test_webhook_refuses_chunked_body_over_bound_with_413(webhook_app: FastAPI) -> None:
    async with running(webhook_app) as server:
        connection = await connect(port_of(server))

        async def send_chunks() -> None:
            await connection.send(
                b"POST %s HTTP/1.1\r\nHost: test\r\n%s: %s\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                % (WEBHOOK_PATH.encode(), SECRET_HEADER.encode(), SECRET.encode())
            )
            chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
            with contextlib.suppress(ConnectionError):
                for _ in range(2 * MAX_BODY_BYTES // (64 * 1024)):
                    await connection.send(chunk)
                await connection.send(b"0\r\n\r\n")

        sending = asyncio.create_task(send_chunks())
        response = await connection.response()
        await sending

        assert response.status == 413
        assert response.json() == {"detail": "Content Too Large"}
        await connection.close()


def memory_kib(pid: int) -> dict[str, int]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), in KiB."""
    fields = Path(f"/proc/{pid}/status").read_text().splitlines()
    values = dict(line.split(":", 1) for line in fields)
    return {name: int(values[name].split()[0]) for name in ("VmRSS", "VmHWM")}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_concurrent_header_floods_leave_main_memory_bounded(
    services: ServiceRunner,
) -> None:
    service = services.start()
    await service.wait_until_ready()
    port = int(service.base_url.rsplit(":", 1)[1])
    before = memory_kib(service.process.pid)

    async def one_flood() -> int:
        connection = await connect(port)
        sending = asyncio.create_task(
            flood(connection, b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: ", 32 * MiB)
        )
        try:
            return (await connection.response()).status
        finally:
            await sending
            await connection.close()

    statuses = await asyncio.gather(*(one_flood() for _ in range(8)))
    after = memory_kib(service.process.pid)
    await service.stop()

    # Eight 32 MB heads held at once would be 256 MB; bounded, they are a few kilobytes.
    assert after["VmRSS"] - before["VmRSS"] < 50 * 1024, (before, after)
    assert after["VmHWM"] - before["VmRSS"] < 50 * 1024, (before, after)
    assert statuses == [431] * 8
    assert "Traceback" not in service.log()
