"""The store's hot statements, each in one trip to the database driver's thread.

aiosqlite runs every call on a SQLite connection in that connection's own thread. Through
SQLAlchemy's asyncio layer a statement takes several such trips (open a cursor, execute,
fetch, close the cursor; for a read, a rollback when its connection goes back), and each
trip wakes two threads. On a small machine those wake-ups, not SQLite, were most of a
read's time, and with a dozen connections reading at once their threads spent it taking
turns at the GIL. Here each statement is one call of aiosqlite's (`execute_fetchall`,
`executemany`): compiled once by SQLAlchemy for the engine's dialect, with values
converted in and out by the columns' own types, as SQLAlchemy does; the driver's errors
are wrapped as SQLAlchemy wraps them (`sqlite3.OperationalError` becomes
`sqlalchemy.exc.OperationalError`), so callers see one kind of storage error whichever
path a statement took. Other databases take SQLAlchemy's ordinary path.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
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


def _compile(statement: Statement, dialect: Dialect) -> _Compiled:
    # Every parameter is bound as it is compiled: a statement with an expanding one
    # (`in_(bindparam(..., expanding=True))`), which SQLAlchemy renders only as it
    # executes, would not run here; the store spells its id lists out instead.
    compiled: Any = statement.compile(dialect=dialect)
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
    """Runs the store's reads on `engine`'s pool, and its batched writes in a transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single_trip = engine.dialect.driver == "aiosqlite"
        self._compiled: dict[Statement, _Compiled] = {}
        self._reading = asyncio.Semaphore(CONCURRENT_READS)

    def _compiled_form(self, statement: Statement) -> _Compiled:
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = _compile(statement, self._engine.dialect)
        return compiled

    async def all(
        self, statement: Select[Any], params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Every row of a read, on a pooled connection of its own.

        The connection is taken from the pool as the bare DBAPI connection: a SELECT opens
        no transaction, so none of `AsyncConnection`'s bookkeeping around one is needed.
        """
        if not self._single_trip:
            async with self._engine.connect() as connection:
                return await self.all_in(connection, statement, params)
        async with self._reading:
            pooled = await self._engine.raw_connection()
            try:
                return await self._fetch_all(pooled.driver_connection, statement, params)
            finally:
                pooled.close()

    async def all_in(
        self, connection: AsyncConnection, statement: Statement, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Every row a statement returns, run on `connection` (in its transaction)."""
        if not self._single_trip:
            return [tuple(row) for row in await connection.execute(statement, params)]
        return await self._fetch_all(await _driver(connection), statement, params)

    async def _fetch_all(
        self, driver: Any, statement: Statement, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        compiled = self._compiled_form(statement)
        try:
            raw = await driver.execute_fetchall(compiled.sql, compiled.values(params))
        except sqlite3.Error as error:
            raise _wrapped(compiled.sql, error) from error
        return [compiled.row(row) for row in raw]

    async def first(
        self, statement: Select[Any], params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def execute_many(
        self,
        connection: AsyncConnection,
        statement: Statement,
        rows: Sequence[Mapping[str, Any]],
    ) -> int:
        """Run a write once per row on `connection`, in its transaction, in the rows'
        order; how many rows the statements matched in all."""
        if not self._single_trip:
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
        compiled = self._compiled_form(statement)
        driver = await _driver(connection)
        try:
            cursor = await driver.executemany(compiled.sql, [compiled.values(row) for row in rows])
        except sqlite3.Error as error:
            raise _wrapped(compiled.sql, error) from error
        return int(cursor.rowcount)


async def _driver(connection: AsyncConnection) -> Any:
    """The aiosqlite connection under a pooled one."""
    return (await connection.get_raw_connection()).driver_connection


def _wrapped(sql: str, error: sqlite3.Error) -> StatementError:
    """The driver's error as SQLAlchemy's own path raises it (OperationalError, ...)."""
    # Parameters left out: a reporter's text has no place in a log line about the disk.
    return DBAPIError.instance(sql, None, error, sqlite3.Error, hide_parameters=True)
