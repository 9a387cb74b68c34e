"""Engine and session set-up, and applying the schema migrations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from storage.errors import is_storage_unavailable

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# How long a writer waits for another writer (the bot and the HTTP API, or a second
# process) before SQLite gives up with "database is locked" (the HTTP API then answers 503).
SQLITE_BUSY_TIMEOUT_MS = 10_000
# How many connections the pool keeps open: as many as it may ever hand out at once
# (SQLAlchemy's default 5, plus its 10 overflow). An overflow connection is otherwise
# closed as soon as it is returned, and opening one (for SQLite a thread, the file, four
# PRAGMAs; for PostgreSQL a server process and authentication) costs several requests'
# worth: under a handful of concurrent clients the pool would keep opening them.
POOL_SIZE = 15
# The PostgreSQL advisory lock `migrate` holds (any bigint this database's other users
# leave alone): "incident" in ASCII.
MIGRATION_LOCK_KEY = 0x696E636964656E74


def _configure_sqlite(
    busy_timeout_ms: int, dbapi_connection: Any, _connection_record: Any
) -> None:
    # WAL lets readers and one writer work at once; NORMAL sync is durable in WAL mode
    # short of a power cut; foreign keys are off in SQLite unless asked for.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _roll_back_if_in_transaction(
    dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    # The pool's reset for connections going back, in place of its unconditional
    # rollback: a read opens no transaction, and a rollback is a trip to the driver's
    # thread for nothing. aiosqlite knows whether one is open without that trip.
    # (A connection being thrown away, not checked in, takes its transaction with it.)
    if state.transaction_was_reset or state.terminate_only or not state.asyncio_safe:
        return
    driver: Any = record.driver_connection
    if driver.in_transaction:
        dbapi_connection.rollback()


def create_engine(
    database_url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> AsyncEngine:
    """The engine for `database_url`; `busy_timeout_ms` is SQLite's wait for the write lock."""
    url = make_url(database_url)
    is_sqlite = url.get_backend_name() == "sqlite"
    on_aiosqlite = is_sqlite and url.get_driver_name() == "aiosqlite"
    options: dict[str, Any] = {"pool_pre_ping": not is_sqlite}
    if not is_sqlite:
        options.update(pool_size=POOL_SIZE, max_overflow=0)
    if is_sqlite and url.database and url.database != ":memory:":
        # A fresh checkout should just work, even with DATABASE_URL pointing into a
        # directory that does not exist yet.
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        options.update(pool_size=POOL_SIZE, max_overflow=0)
    if on_aiosqlite:
        options.update(pool_reset_on_return=None)  # _roll_back_if_in_transaction instead
    engine = create_async_engine(url, **options)
    if is_sqlite:
        event.listen(engine.sync_engine, "connect", partial(_configure_sqlite, busy_timeout_ms))
    if on_aiosqlite:
        event.listen(engine.sync_engine, "reset", _roll_back_if_in_transaction)
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """How a write transaction ended: committed (`error` None) or failed for the database."""

    at: float
    """`time.monotonic()` when it ended."""
    error: BaseException | None


class Writers:
    """Sessions for write transactions, handed out one at a time within this process.

    SQLite has a single write lock. A writer that finds it taken does not queue for it:
    its busy handler sleeps (1, 2, 5, 10... ms) and tries again, so a handful of
    concurrent writers spend most of their time asleep while the lock is free. Taking
    turns here first means each write finds the lock free; other processes are still
    covered by the busy timeout.

    The last write's outcome is kept (`last_outcome`): /health asks whether the database
    takes writes, and a write that has just committed or just failed says so best.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._turn = asyncio.Lock()
        self.last_outcome: WriteOutcome | None = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.turn(), self._sessions() as session:
            try:
                yield session
            except Exception as error:
                if is_storage_unavailable(error):
                    self.record(error)
                raise
            # Ended with its transaction committed (one left open only read, or wrote
            # nothing yet, and proves nothing about writing).
            if not session.in_transaction():
                self.record(None)

    @asynccontextmanager
    async def turn(self, *, wait_at_most: float | None = None) -> AsyncIterator[None]:
        """This process's turn to write; TimeoutError if it has not come in `wait_at_most` s."""
        async with asyncio.timeout(wait_at_most):
            await self._turn.acquire()
        try:
            yield
        finally:
            self._turn.release()

    def record(self, error: BaseException | None) -> None:
        """Remember how the latest write ended (None: it committed)."""
        self.last_outcome = WriteOutcome(time.monotonic(), error)


def alembic_config() -> Config:
    """Alembic's configuration without an alembic.ini: migrations live in this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema up to the newest migration (creating it on a new database).

    Processes started at once take turns: each would otherwise find no `alembic_version`
    table and create it, and all but the first would fail. The turn is a lock held until
    the migrations are committed (PostgreSQL's advisory lock, SQLite's write lock, taken
    before the first statement: sqlite3 would run the DDL outside any transaction); the
    next process then finds the schema at the newest version and does nothing.
    """
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        elif connection.dialect.name == "sqlite":
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        await connection.run_sync(_upgrade)
