"""Where the benchmarks keep their data: each server under test gets a database of its own.

By default that is a new SQLite file in the section's temporary directory. Given a
PostgreSQL server (`--database-url`), it is a new database on that server, named after
this process (`incident_bench_<pid>_<role>`), created for one section and dropped when the
section ends: runs never see each other's rows, and nothing else on the server is touched.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from storage.database import create_engine, migrate

SQLITE = "SQLite"
POSTGRESQL = "PostgreSQL"
NAME_PREFIX = "incident_bench"
CONNECT_TIMEOUT = 10.0


async def connect_asyncpg(url: URL) -> asyncpg.Connection:
    """A plain asyncpg connection to the database `url` names."""
    return await asyncpg.connect(
        user=url.username,
        password=url.password,
        host=url.host,
        port=url.port,
        database=url.database,
        timeout=CONNECT_TIMEOUT,
    )


async def create_schema(database_url: str) -> None:
    """The service's schema in an empty database, built by its own migrations."""
    engine = create_engine(database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Databases:
    """SQLite files (`server` None), or databases on the PostgreSQL server `server` names."""

    server: URL | None
    """A database on the server to connect to while creating and dropping the bench's own."""
    version: str

    @classmethod
    def sqlite(cls) -> Databases:
        return cls(None, sqlite3.sqlite_version)

    @classmethod
    async def on_server(cls, database_url: str) -> Databases:
        """The PostgreSQL server `database_url` (postgresql+asyncpg://...) points at."""
        server = parse_server_url(database_url)
        connection = await connect_asyncpg(server)
        try:
            version = str(await connection.fetchval("SHOW server_version")).split()[0]
        finally:
            await connection.close()
        return cls(server, version)

    @property
    def engine(self) -> str:
        return SQLITE if self.server is None else POSTGRESQL

    @property
    def driver(self) -> str:
        """The service's driver for this engine."""
        return "aiosqlite" if self.server is None else "asyncpg"

    @property
    def label(self) -> str:
        """The engine and its version, e.g. "PostgreSQL 15.20"."""
        return f"{self.engine} {self.version}"

    @property
    def where(self) -> str:
        """The engine, and for a server where it runs."""
        if self.server is None:
            return self.label
        return f"{self.label} at {self.server.host}:{self.server.port or 5432}"

    @asynccontextmanager
    async def fresh(self, role: str, directory: Path) -> AsyncIterator[str]:
        """A new, empty database for `role` ("ours", "textbook"...), as a SQLAlchemy async
        URL; a PostgreSQL one is dropped on the way out, whatever still holds it open."""
        if self.server is None:
            yield f"sqlite+aiosqlite:///{directory / f'{role}.db'}"
            return
        name = f"{NAME_PREFIX}_{os.getpid()}_{role}"
        await self._run(f'CREATE DATABASE "{name}"')
        try:
            yield self.server.set(database=name).render_as_string(hide_password=False)
        finally:
            await self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _run(self, statement: str) -> None:
        assert self.server is not None
        connection = await connect_asyncpg(self.server)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()


def parse_server_url(database_url: str) -> URL:
    """`--database-url`, parsed; ValueError unless it is a postgresql+asyncpg:// URL."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" or url.get_driver_name() != "asyncpg":
        raise ValueError(f"expected a postgresql+asyncpg://user@host:port/database URL, not {url}")
    if not url.database:
        raise ValueError("the URL needs a database to connect to (e.g. /postgres)")
    return url
