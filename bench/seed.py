"""Fast set-up for the benchmarks: a migrated database, and many incidents in it at once.

Seeding goes around the store on purpose: a million rows one request at a time would make
the growth section mostly waiting. Plain `sqlite3.executemany` in one transaction writes
the rows the store would have written (same columns, same value formats) into the
migrated schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.databases import create_schema

SOURCES = ("monitoring", "operator", "partner", "zabbix")
STATUSES = ("open", "in_progress", "resolved", "closed")
"""Seeded in turn (row i gets STATUSES[i % 4]): a quarter of the store is open."""
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
CHAT_ID = -1_001_000_000_001
"""The chat every seeded incident belongs to: the stand-in's supergroup, whose /list the
growth bench reads (a chat sees only its own incidents)."""
# How SQLAlchemy's SQLite DateTime stores a UTC time.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
# Tables whose rows are derived from incidents, rebuilt after seeding: name -> SQL.
DERIVED_TABLES = {
    "incident_counts": (
        "INSERT INTO incident_counts (chat_id, status, source, total)"
        " SELECT coalesce(chat_id, 0), status, source, count(*) FROM incidents"
        " GROUP BY coalesce(chat_id, 0), status, source"
    ),
}


def database_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def create_database(path: Path) -> None:
    """An empty database with the service's schema, built by its own migrations."""
    await create_schema(database_url(path))


def seeded_status(incident_id: int) -> str:
    return STATUSES[incident_id % len(STATUSES)]


def _rows(first_id: int, last_id: int) -> Iterator[tuple[object, ...]]:
    for incident_id in range(first_id, last_id + 1):
        created = (EPOCH + timedelta(seconds=incident_id * 7)).strftime(TIME_FORMAT)
        yield (
            incident_id,
            f"Scooter #{incident_id} is not responding since the last firmware update",
            seeded_status(incident_id),
            SOURCES[incident_id // 7 % len(SOURCES)],
            created,
            created,
            "seed",
            "seed",
            CHAT_ID,
        )


def connect(path: Path) -> sqlite3.Connection:
    """A plain connection with the service's pragmas (WAL, synchronous=NORMAL)."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def table_exists(connection: sqlite3.Connection, name: str) -> bool:
    found = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return found is not None


def seed(path: Path, total: int) -> int:
    """Fill the store up to `total` incidents (ids 1..total); returns how many were added."""
    connection = connect(path)
    try:
        current = int(
            connection.execute("SELECT coalesce(max(id), 0) FROM incidents").fetchone()[0]
        )
        if current >= total:
            return 0
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO incidents (id, description, status, source, created_at, updated_at,"
            " created_by, updated_by, chat_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _rows(current + 1, total),
        )
        for table, rebuild in DERIVED_TABLES.items():
            if table_exists(connection, table):
                connection.execute(f"DELETE FROM {table}")
                connection.execute(rebuild)
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return total - current
    finally:
        connection.close()


def file_size(path: Path) -> int:
    """The database's size on disk, its write-ahead log included."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
