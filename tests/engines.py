"""The engines the store's contract runs on: SQLite always, PostgreSQL when TEST_DATABASE_URL
names a server the tests may create databases on.

Each PostgreSQL test gets an empty database of its own, as a SQLite test gets a new file,
and a `main.py` subprocess reaches it through an ordinary DATABASE_URL. The databases are
emptied and handed to the next test, and dropped when the test run ends.
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


async def take_database(server: URL) -> URL:
    """An empty database on `server` for one test, named after `server`'s database."""
    if _free:
        return server.set(database=_free.pop())
    name = f"{server.database}_{uuid.uuid4().hex[:16]}"
    admin = await _admin(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    _created.append(name)
    return server.set(database=name)


async def give_back(database: URL) -> None:
    """Empty `database` again for the next test: whatever still holds a connection to it
    (a killed process's, a pool left open) is disconnected, and its schema is new.

    Creating a database costs more than most short tests take; emptying one is quick.
    Nothing of a test outlives it: the tables, sequences and types are the schema's, and
    session state (advisory locks, settings) goes with the connections.
    """
    connection = await _admin(database)
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()
    assert database.database is not None
    _free.append(database.database)


async def drop_databases(server: URL) -> None:
    """Drop every database `take_database` created in this process."""
    admin = await _admin(server)
    try:
        while _created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{_created.pop()}" WITH (FORCE)')
    finally:
        await admin.close()
    _free.clear()


_created: list[str] = []
_free: list[str] = []
