"""A small closed-loop HTTP/1.1 load generator for the benchmarks.

Each simulated client keeps one connection open and sends its next request as soon as
the previous answer arrived, so `clients` is the number of requests in flight. Runs are
bounded both in requests and in seconds. It talks to loopback servers only.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RequestFactory = Callable[[int, int], tuple[str, str, Any]]
"""(client number, request number) -> (method, path, JSON body or None)."""


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
        return ordered[index] * 1000

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


def encode_request(method: str, path: str, body: Any, host: str) -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    return head.encode() + b"\r\n" + payload


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = bytearray()
    while True:
        size = int((await reader.readline()).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, bytes(body)
        body += chunk[:-2]


async def request_once(
    host: str, port: int, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """One request on a fresh connection; the JSON answer decoded."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(encode_request(method, path, body, host))
        await writer.drain()
        status, payload = await _read_response(reader)
    finally:
        writer.close()
        await writer.wait_closed()
    return status, json.loads(payload) if payload else None


async def run_load(
    host: str,
    port: int,
    make_request: RequestFactory,
    *,
    clients: int,
    max_requests: int,
    max_seconds: float,
    request_timeout: float = 5.0,
) -> LoadResult:
    """Closed-loop load; a request that times out counts under status 0 and its client
    reconnects (a stuck server must not stall the whole benchmark)."""
    result = LoadResult()
    deadline = time.perf_counter() + max_seconds
    issued = 0

    async def client(number: int) -> None:
        nonlocal issued
        reader, writer = await asyncio.open_connection(host, port)
        try:
            sequence = 0
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                method, path, body = make_request(number, sequence)
                sequence += 1
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(request_timeout):
                        writer.write(encode_request(method, path, body, host))
                        await writer.drain()
                        status, _ = await _read_response(reader)
                except TimeoutError:
                    status = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    result.seconds = time.perf_counter() - started
    result.requests = len(result.latencies)
    return result
