"""The benchmarks on PostgreSQL (`python -m bench --database-url ...`), in small: each server
under test and each plain-driver reference works in a database of its own on the server,
gone when the section ends. (The bot's ingestion is the same code on either engine: its
store is proven on PostgreSQL by the store's contract.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from bench.__main__ import parse_arguments
from bench.databases import NAME_PREFIX, Databases, connect_asyncpg
from bench.http_api import OPERATIONS, Workload, errors, successes
from bench.ingest import measure_asyncpg
from bench.processes import start_service, start_textbook
from tests import engines

SECONDS_PER_OPERATION = 0.2
REPORTS = 20


async def bench_databases(server: URL) -> set[str]:
    """The databases this process's benchmarks hold on the server now."""
    connection = await connect_asyncpg(server)
    try:
        rows = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            f"{NAME_PREFIX}\\_{os.getpid()}\\_%",
        )
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


async def on_the_test_server() -> tuple[URL, Databases]:
    server = engines.server_url()
    assert server is not None
    return server, await Databases.on_server(server.render_as_string(hide_password=False))


@pytest.mark.postgresql_only
async def test_the_service_and_the_textbook_app_each_answer_from_a_database_of_their_own(
    database_engine: str, tmp_path: Path
) -> None:
    server, databases = await on_the_test_server()
    answered: dict[tuple[str, str], tuple[int, int]] = {}

    async with (
        databases.fresh("ours", tmp_path) as ours,
        databases.fresh("textbook", tmp_path) as theirs,
    ):
        held = await bench_databases(server)
        service = await start_service(ours, tmp_path)
        try:
            textbook = await start_textbook(theirs, tmp_path)
            try:
                for workload in (Workload(service), Workload(textbook)):
                    for operation in OPERATIONS:
                        result = await workload.run(operation, 2, SECONDS_PER_OPERATION)
                        answered[workload.server.name, operation] = (
                            successes(result),
                            errors(result),
                        )
            finally:
                textbook.stop()
        finally:
            service.stop()

    prefix = f"{NAME_PREFIX}_{os.getpid()}"
    assert held == {f"{prefix}_ours", f"{prefix}_textbook"}
    assert await bench_databases(server) == set()
    assert databases.label.startswith("PostgreSQL ")
    for (name, operation), (succeeded, failed) in answered.items():
        assert succeeded > 0 and failed == 0, f"{name}, {operation}: {succeeded} ok, {failed} not"


@pytest.mark.postgresql_only
async def test_the_plain_asyncpg_reference_inserts_every_row_into_its_own_database(
    database_engine: str, tmp_path: Path
) -> None:
    server, databases = await on_the_test_server()

    async with databases.fresh("plain", tmp_path) as plain:
        rate = await measure_asyncpg(plain, REPORTS)
        connection = await connect_asyncpg(make_url(plain))
        try:
            stored = await connection.fetchval("SELECT count(*) FROM incidents")
        finally:
            await connection.close()

    assert rate > 0
    assert stored == REPORTS
    assert await bench_databases(server) == set()


def test_growth_is_sqlite_s_alone_and_the_url_must_name_postgresql(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

    everything = parse_arguments(["--quick", "--database-url", server])
    on_sqlite = parse_arguments(["--quick"])
    with pytest.raises(SystemExit):
        parse_arguments(["growth", "--database-url", server])
    growth_refused = capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_arguments(["--database-url", "sqlite+aiosqlite:///incidents.db"])
    sqlite_refused = capsys.readouterr().err

    assert everything.sections == ["http", "ingest"]
    assert everything.skipped == ["growth"]
    assert on_sqlite.sections == ["http", "growth", "ingest"]
    assert "growth runs on SQLite only" in growth_refused
    assert "postgresql+asyncpg://" in sqlite_refused
