"""The engines the store's contract runs on: SQLite always, PostgreSQL when TEST_DATABASE_URL
names a server the tests may create databases on.

Each PostgreSQL test gets a database of its own, created empty and dropped afterwards, so
that it starts as a SQLite test does from a new file, and a `main.py` subprocess reaches
it through an ordinary DATABASE_URL.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
from sqlalchemy.engine import URL, make_url

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

TEST_DATABASE_URL = "TEST_DATABASE_URL"
"""e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/incident_bot_test: the tests connect to
this database to create and drop their own, named after it."""

NOT_CONFIGURED = (
    f"PostgreSQL not tested: {TEST_DATABASE_URL} is not set"
    " (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/incident_bot_test)"
)


def server_url() -> URL | None:
    """TEST_DATABASE_URL, parsed; None when it is not set."""
    value = os.environ.get(TEST_DATABASE_URL, "").strip()
    if not value:
        return None
    url = make_url(value)
    if url.get_backend_name() != POSTGRESQL or url.get_driver_name() != "asyncpg":
        raise ValueError(f"{TEST_DATABASE_URL} must be a postgresql+asyncpg:// URL, not {url!r}")
    return url


async def _admin(server: URL) -> asyncpg.Connection:
    return await asyncpg.connect(
        user=server.username,
        password=server.password,
        host=server.host,
        port=server.port,
        database=server.database,
    )


async def create_database(server: URL) -> URL:
    """A new, empty database on `server`, named after its database; its URL."""
    name = f"{server.database}_{uuid.uuid4().hex[:16]}"
    admin = await _admin(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server.set(database=name)


async def drop_database(server: URL, database: URL) -> None:
    """Drop `database`, whatever still holds a connection to it (a killed process's)."""
    admin = await _admin(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database.database}" WITH (FORCE)')
    finally:
        await admin.close()
