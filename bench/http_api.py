"""Section 1, HTTP: the real service against the textbook app, same load, same run.

Both servers run as subprocesses over a fresh database of their own (a SQLite file, or a
database on the PostgreSQL server given with --database-url) and take turns under the
same closed-loop load: for each number of clients, creates, then lists, then status
changes. Each status change is a real change: every client owns a slice of the incidents
and moves each one back and forth between in_progress and resolved.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.databases import SQLITE, Databases
from bench.load import LoadResult, RequestFactory, run_load
from bench.processes import HOST, Server, start_service, start_textbook
from bench.report import TIMES, Row, megabytes, milliseconds, per_second, ratio, verdict

CLIENTS = (1, 8, 64)
LIST_PATH = "/incidents?status=open&limit=50"
NEXT_STATUS = {"open": "in_progress", "in_progress": "resolved", "resolved": "in_progress"}
STATUS_POOL = 640
"""How many incidents the status changes cycle through (split among the clients)."""
OPERATIONS = ("create", "list", "status change")
WARM_UP_SECONDS = 0.5
REQUEST_TIMEOUT = 5.0
TARGET_CLIENTS = 8
TARGETS = {"create": 4.0, "list": 3.0, "status change": 4.0}
"""The issue's targets: the service's requests/s over the textbook's, at 8 clients, on SQLite
(against the sync textbook app; PostgreSQL's reference is the async one, with none set)."""
RSS_LIMIT = 150 * 1024 * 1024


@dataclass
class Workload:
    """One server's requests; remembers which incidents exist and where each one is."""

    server: Server
    created: int = 0
    states: dict[int, str] = field(default_factory=dict)

    @staticmethod
    def create(client: int, number: int) -> tuple[str, str, Any]:
        body = {"description": f"Scooter #{client}.{number} is not responding", "source": "zabbix"}
        return "POST", "/incidents", body

    @staticmethod
    def list(client: int, number: int) -> tuple[str, str, Any]:
        return "GET", LIST_PATH, None

    def status_changes(self, clients: int) -> RequestFactory:
        pool = list(range(1, min(self.created, STATUS_POOL) + 1))
        if len(pool) < clients:
            raise RuntimeError(f"{self.server.name}: only {len(pool)} incidents to change")
        owned = [pool[client::clients] for client in range(clients)]

        def change(client: int, number: int) -> tuple[str, str, Any]:
            mine = owned[client]
            incident_id = mine[number % len(mine)]
            status = NEXT_STATUS[self.states.get(incident_id, "open")]
            self.states[incident_id] = status
            return "PATCH", f"/incidents/{incident_id}/status", {"status": status}

        return change

    def requests(self, operation: str, clients: int) -> RequestFactory:
        if operation == "create":
            return self.create
        if operation == "list":
            return self.list
        return self.status_changes(clients)

    async def run(self, operation: str, clients: int, seconds: float) -> LoadResult:
        result = await run_load(
            HOST,
            self.server.port,
            self.requests(operation, clients),
            clients=clients,
            max_requests=10**9,
            max_seconds=seconds,
            request_timeout=REQUEST_TIMEOUT,
        )
        if operation == "create":
            self.created += result.statuses.get(201, 0)
        return result


def successes(result: LoadResult) -> int:
    return sum(count for status, count in result.statuses.items() if 200 <= status < 300)


def errors(result: LoadResult) -> int:
    return result.requests - successes(result)


def rate(result: LoadResult) -> float:
    return successes(result) / result.seconds if result.seconds else 0.0


def describe(result: LoadResult) -> str:
    text = (
        f"{per_second(rate(result))} · p50 {milliseconds(result.median_ms)}"
        f" · p99 {milliseconds(result.percentile_ms(0.99))}"
    )
    failed = errors(result)
    if failed:
        timeouts = result.statuses.get(0, 0)
        text += f" · {failed:,} errors"
        if timeouts:
            text += f" ({timeouts:,} timeouts)"
    return text


def compare(
    operation: str, clients: int, service: LoadResult, textbook: LoadResult, *, targeted: bool
) -> Row:
    target = ""
    wanted = TARGETS.get(operation)
    if targeted and clients == TARGET_CLIENTS and wanted is not None:
        met = (
            rate(service) >= wanted * rate(textbook)
            and service.percentile_ms(0.99) <= textbook.percentile_ms(0.99)
            and errors(service) == 0
        )
        target = f"≥ {wanted:g}{TIMES}, p99 no worse: {verdict(met)}"
    # A reference that mostly failed (the textbook's pool deadlock) has no rate to divide by.
    failing = errors(textbook) > successes(textbook)
    return Row(
        "HTTP",
        f"{operation} · {clients} client{'s' if clients > 1 else ''}",
        describe(service),
        describe(textbook),
        "— (reference failing)" if failing else ratio(rate(service), rate(textbook)),
        target,
    )


async def run(databases: Databases, quick: bool, progress: Callable[[str], None]) -> list[Row]:
    seconds = 1.5 if quick else 8.0
    targeted = databases.engine == SQLITE
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as directory:
        workdir = Path(directory)
        async with (
            databases.fresh("ours", workdir) as service_database,
            databases.fresh("textbook", workdir) as textbook_database,
        ):
            service = await start_service(service_database, workdir)
            try:
                textbook = await start_textbook(textbook_database, workdir)
                try:
                    workloads = [Workload(service), Workload(textbook)]
                    for workload in workloads:  # warm-up: first requests, caches, a pool
                        for operation in OPERATIONS:
                            await workload.run(operation, 1, WARM_UP_SECONDS)
                    for clients in CLIENTS:
                        results: dict[str, list[LoadResult]] = {}
                        for operation in OPERATIONS:
                            for workload in workloads:
                                progress(
                                    f"HTTP: {operation}, {clients} clients, {workload.server.name}"
                                )
                                results.setdefault(operation, []).append(
                                    await workload.run(operation, clients, seconds)
                                )
                        rows.extend(
                            compare(operation, clients, *pair, targeted=targeted)
                            for operation, pair in results.items()
                        )
                    service_peak = service.peak_rss_bytes()
                    textbook_peak = textbook.peak_rss_bytes()
                finally:
                    textbook.stop()
            finally:
                service.stop()
    rows.append(
        Row(
            "memory",
            "peak RSS, HTTP (vs the textbook app)",
            megabytes(service_peak),
            megabytes(textbook_peak),
            ratio(service_peak, textbook_peak),
            f"< 150 MB: {verdict(service_peak < RSS_LIMIT)}",
        )
    )
    return rows
