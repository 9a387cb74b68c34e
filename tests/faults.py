"""Storage failures made for real: on a test's SQLite file, a write lock another
connection holds and a database that cannot grow (what a full disk does to it); on
PostgreSQL, the connection to the server lost."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

SHORT_BUSY_TIMEOUT_MS = 100
"""The busy timeout of the engines these tests use, in place of the 10 s default."""

# SQLite's largest max_page_count: no limit.
_UNLIMITED_PAGES = 4_294_967_294


def database_path(database_url: str) -> str:
    return database_url.partition(":///")[2]


@contextmanager
def write_lock_held(database_url: str) -> Iterator[None]:
    """Another process's writer holding SQLite's write lock (BEGIN IMMEDIATE)."""
    with closing(sqlite3.connect(database_path(database_url), isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")


class PageLimit:
    """SQLite's `max_page_count` on every connection `engine` hands out.

    A database that may not grow past its pages fails a write that needs a new page with
    SQLITE_FULL, "database or disk is full": what a full disk gives. The pragma belongs to
    a connection, so it is set at each checkout, and lifting it takes effect at once.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.pages: int | None = None
        event.listen(engine.sync_engine, "checkout", self._apply)

    def _apply(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA max_page_count = {self.pages or _UNLIMITED_PAGES}")
        cursor.close()


def fill_database(database_url: str) -> int:
    """Use up every free page and byte of the database's current pages; its page count.

    A filler table takes what room is left (on the freelist and in its own pages), so
    that after this any write needing a new page fails once the database may not grow.
    """
    with closing(sqlite3.connect(database_path(database_url), isolation_level=None)) as filler:
        filler.execute("PRAGMA synchronous = OFF")
        filler.execute("CREATE TABLE IF NOT EXISTS filler (data BLOB)")
        (pages,) = filler.execute("PRAGMA page_count").fetchone()
        filler.execute(f"PRAGMA max_page_count = {pages}")
        for size in (2048, 512, 128, 32, 8, 1):
            try:
                while True:
                    filler.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
            except sqlite3.OperationalError as error:
                assert error.sqlite_errorcode == sqlite3.SQLITE_FULL, error
        return int(pages)


class DatabaseLink:
    """A TCP relay between the engine and a PostgreSQL server on 127.0.0.1, that a test can
    cut (every connection dropped, new ones refused) and restore: the network to the
    database lost, or the server gone, as the driver meets it."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def __aenter__(self) -> DatabaseLink:
        await self.restore()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.cut()

    def url(self, database_url: str) -> str:
        """`database_url` through this link."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )
        for end in (writer, upstream_writer):
            self._writers.discard(end)
            end.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.transport.abort()
