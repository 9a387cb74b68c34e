"""Whether the database takes writes now: what /health reports.

A read proves little: a full disk, a write lock another process holds and a read-only
file all leave reads working. Nor does a write that is rolled back: SQLite keeps a
transaction's pages in memory until it commits, so nothing reaches the disk. What proves
that a write can commit is a write that commits. So the answer is the outcome of the
latest write transaction: a real one (`Writers` remembers how each ended), or, when none
has ended within `interval`, a probe that inserts a row into `write_probes` and deletes
it again in one committed transaction.

The probe's row is larger than a page, so it needs pages of its own, as a new incident
does: on a database that cannot grow (a full disk, SQLite's `max_page_count`) it fails
where rewriting a row in place would still succeed. Deleted in the same transaction, it
leaves the table empty, and its pages are freed for the next write: the file grows once
by a few pages, not with every probe. At most one probe runs per `interval`, shared by
every caller that asks meanwhile, and a service busy writing needs none.
"""

from __future__ import annotations

import asyncio
import os
import time

from sqlalchemy import delete, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import Writers
from storage.errors import describe
from storage.models import WriteProbe

PROBE_INTERVAL = 1.0
"""Seconds an outcome (a real write's or a probe's) stands for the next ones."""
PROBE_BYTES = 8 * 1024
"""More than a page (4 KiB in SQLite, 8 KiB in PostgreSQL): the probe needs new pages.
Random, so that PostgreSQL cannot compress it into its row."""
PROBE_BUSY_TIMEOUT_MS = 1_000
"""How long the probe waits for a write lock another process holds (SQLite)."""
PROBE_TURN_TIMEOUT = 2.0
"""How long the probe waits for this process's writers: longer means they are stuck."""


class StorageUnavailableError(Exception):
    """The database does not take writes now; the cause is chained."""


class WriteCheck:
    def __init__(
        self, engine: AsyncEngine, writers: Writers, *, interval: float = PROBE_INTERVAL
    ) -> None:
        self._engine = engine
        self._writers = writers
        self._interval = interval
        self._probe: asyncio.Task[None] | None = None

    async def check(self) -> None:
        """Raise StorageUnavailableError unless the latest write committed."""
        outcome = self._writers.last_outcome
        if outcome is None or time.monotonic() - outcome.at >= self._interval:
            if self._probe is None:
                self._probe = asyncio.create_task(self._run_probe(), name="write-probe")
            # Shielded: a caller that gives up (a client that hung up) does not cancel
            # the probe the others wait for.
            await asyncio.shield(self._probe)
            outcome = self._writers.last_outcome
        if outcome is not None and outcome.error is not None:
            raise StorageUnavailableError(describe(outcome.error)) from outcome.error

    async def _run_probe(self) -> None:
        try:
            try:
                async with self._writers.turn(wait_at_most=PROBE_TURN_TIMEOUT):
                    await self._write_probe()
            except TimeoutError:
                raise TimeoutError(
                    f"writes have waited more than {PROBE_TURN_TIMEOUT:g} s for their turn"
                ) from None
        except Exception as error:
            # Whatever kept the probe from committing keeps a write from committing.
            self._writers.record(error)
        else:
            self._writers.record(None)
        finally:
            self._probe = None

    async def _write_probe(self) -> None:
        async with self._engine.connect() as connection:
            on_sqlite = connection.dialect.name == "sqlite"
            if on_sqlite:
                # A lock held elsewhere fails the probe within a second, not after the
                # writers' full busy timeout: /health answers quickly either way.
                usual = int(await connection.scalar(text("PRAGMA busy_timeout")) or 0)
                brief = min(usual, PROBE_BUSY_TIMEOUT_MS)
                await connection.exec_driver_sql(f"PRAGMA busy_timeout = {brief}")
            try:
                probe = insert(WriteProbe).values(payload=os.urandom(PROBE_BYTES))
                await connection.execute(probe)
                await connection.execute(delete(WriteProbe))
                await connection.commit()
            finally:
                if on_sqlite:
                    await connection.rollback()
                    await connection.exec_driver_sql(f"PRAGMA busy_timeout = {usual}")
                    await connection.commit()
