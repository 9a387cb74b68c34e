"""The store's hot statements, each in one trip to the database driver's thread.

aiosqlite runs every call on a SQLite connection in that connection's own thread. Through
SQLAlchemy's asyncio layer a statement takes several such trips (open a cursor, execute,
fetch, close the cursor; for a read, a rollback when its connection goes back), and each
trip wakes two threads. On a small machine those wake-ups, not SQLite, are what a read
waits for, and with a dozen connections reading at once their threads take turns at the
GIL (`uv run python -m bench http` measures it). Here each statement is one call of
aiosqlite's (`execute_fetchall`, `executemany`): compiled once by SQLAlchemy for the
engine's dialect, with values converted in and out by the columns' own types, as
SQLAlchemy does; the driver's errors are wrapped as SQLAlchemy wraps them
(`sqlite3.OperationalError` becomes `sqlalchemy.exc.OperationalError`), so callers see
one kind of storage error whichever path a statement took. Other databases, statements
with expanding parameters and a store with its fast paths off (FAST_PATHS=off) take
SQLAlchemy's ordinary path; the store's contract tests run both.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Select, TextClause, Update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Processor = Callable[[Any], Any]
Statement = Select[Any] | Insert | Update | TextClause

# How many reads go to SQLite at once. Their work is the driver's, under the GIL for each
# row: more threads than the machine's cores only take turns, and each turn is a wake-up.
# Reads beyond it wait on the event loop, in order.
CONCURRENT_READS = 2

COMPILED_KEPT = 256
"""How many statements keep their compiled form (the least recently used goes first)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    compiled: Any
    """SQLAlchemy's compiled form: the SQL, the parameters' order and literal values."""
    bind_processors: Mapping[str, Processor | None]
    conversions: tuple[tuple[int, Processor], ...]
    """(column index, processor) for the result columns whose type converts values."""

    @property
    def sql(self) -> str:
        return str(self.compiled.string)

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        named = self.compiled.construct_params(params)
        values = []
        for name in self.compiled.positiontup:
            value = named[name]
            process = self.bind_processors[name]
            values.append(value if process is None or value is None else process(value))
        return values

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        row = list(raw)
        for index, process in self.conversions:
            row[index] = process(row[index])
        return tuple(row)


def _compile(statement: Statement, dialect: Dialect) -> _Compiled | None:
    """The statement compiled for one trip, or None if only SQLAlchemy's own path can run
    it: an expanding parameter (`in_([...])`, `in_(bindparam(..., expanding=True))`) is
    rendered only as the statement executes, once its values are known."""
    compiled: Any = statement.compile(dialect=dialect)
    if any(bind.expanding or bind.literal_execute for bind in compiled.binds.values()):
        return None
    binds = {
        name: bind.type.dialect_impl(dialect).bind_processor(dialect)
        for name, bind in compiled.binds.items()
    }
    if isinstance(statement, Select):
        types = [column.type for column in statement.selected_columns]
    elif isinstance(statement, Insert):
        types = [column["type"] for column in statement.returning_column_descriptions]
    else:
        types = []
    results = (type_.dialect_impl(dialect).result_processor(dialect, None) for type_ in types)
    conversions = tuple((index, process) for index, process in enumerate(results) if process)
    return _Compiled(compiled, binds, conversions)


class Statements:
    """Runs the store's statements: reads on a pooled connection of their own, writes in
    the caller's transaction.

    `before_read` is awaited before every read (`all`, `first`): the store passes its
    `settled`, so a read sees each write queued before it, whichever method it is in.

    With `single_trip` and SQLite, each statement is one call of aiosqlite's (see the
    module's docstring); otherwise, and for a statement one trip cannot run, it takes
    SQLAlchemy's ordinary path. Both give the same rows and raise the same errors.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        before_read: Callable[[], Awaitable[None]],
        single_trip: bool = True,
    ) -> None:
        self._engine = engine
        self._before_read = before_read
        self._single_trip = single_trip and engine.dialect.driver == "aiosqlite"
        self._compiled: OrderedDict[Statement, _Compiled | None] = OrderedDict()
        self._reading = asyncio.Semaphore(CONCURRENT_READS)

    def _compiled_form(self, statement: Statement) -> _Compiled | None:
        """The one-trip form of `statement`, compiled once while it is among the most
        recently used (the store's statements are few; a caller's one-off select() ages
        out rather than piling up)."""
        if statement in self._compiled:
            self._compiled.move_to_end(statement)
            return self._compiled[statement]
        compiled = self._compiled[statement] = _compile(statement, self._engine.dialect)
        if len(self._compiled) > COMPILED_KEPT:
            self._compiled.popitem(last=False)
        return compiled

    @property
    def kept(self) -> int:
        """How many statements have their compiled form kept now."""
        return len(self._compiled)

    async def all(
        self, statement: Select[Any], params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Every row of a read, on a pooled connection of its own.

        One trip takes the connection from the pool as the bare DBAPI connection: a SELECT
        opens no transaction, so none of `AsyncConnection`'s bookkeeping around one is
        needed.
        """
        await self._before_read()
        compiled = self._compiled_form(statement) if self._single_trip else None
        if compiled is None:
            async with self._engine.connect() as connection:
                return await self.all_in(connection, statement, params)
        async with self._reading:
            pooled = await self._engine.raw_connection()
            try:
                return await _fetch_all(pooled.driver_connection, compiled, params)
            finally:
                pooled.close()

    async def first(
        self, statement: Select[Any], params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def all_in(
        self, connection: AsyncConnection, statement: Statement, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Every row a statement returns, run on `connection` (in its transaction)."""
        compiled = self._compiled_form(statement) if self._single_trip else None
        if compiled is None:
            return [tuple(row) for row in await connection.execute(statement, params)]
        return await _fetch_all(await _driver(connection), compiled, params)

    async def execute_many(
        self,
        connection: AsyncConnection,
        statement: Statement,
        rows: Sequence[Mapping[str, Any]],
    ) -> int:
        """Run a write once per row on `connection`, in its transaction, in the rows'
        order; how many rows the statements matched in all."""
        compiled = self._compiled_form(statement) if self._single_trip else None
        if compiled is None:
            if connection.dialect.supports_sane_multi_rowcount:
                result: Any = await connection.execute(statement, rows)
                return int(result.rowcount)
            # asyncpg reports -1 for a statement executed with many rows: the count is
            # every statement's own, summed.
            matched = 0
            for row in rows:
                result = await connection.execute(statement, row)
                matched += int(result.rowcount)
            return matched
        driver = await _driver(connection)
        try:
            cursor = await driver.executemany(compiled.sql, [compiled.values(row) for row in rows])
        except sqlite3.Error as error:
            raise _wrapped(compiled.sql, error) from error
        return int(cursor.rowcount)


async def _fetch_all(
    driver: Any, compiled: _Compiled, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    try:
        raw = await driver.execute_fetchall(compiled.sql, compiled.values(params))
    except sqlite3.Error as error:
        raise _wrapped(compiled.sql, error) from error
    return [compiled.row(row) for row in raw]


async def _driver(connection: AsyncConnection) -> Any:
    """The aiosqlite connection under a pooled one."""
    return (await connection.get_raw_connection()).driver_connection


def _wrapped(sql: str, error: sqlite3.Error) -> StatementError:
    """The driver's error as SQLAlchemy's own path raises it (OperationalError, ...)."""
    # Parameters left out: a reporter's text has no place in a log line about the disk.
    return DBAPIError.instance(sql, None, error, sqlite3.Error, hide_parameters=True)
