"""The store's reads: one SELECT each, on SQLite in a single trip to the driver's thread.

aiosqlite runs every call on a SQLite connection in that connection's own thread. Through
SQLAlchemy's asyncio layer a SELECT takes five such trips (open a cursor, execute, fetch,
close the cursor, roll back), and each trip wakes two threads; on a small machine those
wake-ups, not SQLite, were most of a read's time, and with a dozen connections reading at
once their threads spent it fighting over the GIL. Here a read is one `execute_fetchall`
on a pooled connection: the statement compiled once by SQLAlchemy for the engine's
dialect, values converted in and out by the columns' own types, as SQLAlchemy would.
Other databases take SQLAlchemy's ordinary path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

Processor = Callable[[Any], Any] | None

# How many reads go to SQLite at once. The work is the driver's, under the GIL for its
# rows: more threads than the machine's cores only take turns, and each turn is a
# wake-up. Reads beyond it wait on the event loop, in order.
CONCURRENT_READS = 2


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    compiled: Any
    """SQLAlchemy's compiled form: knows the parameters' order and literal values."""
    bind_processors: Mapping[str, Processor]
    conversions: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(column index, processor) for the result columns whose type converts values."""

    def values(self, params: dict[str, Any]) -> list[Any]:
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


def _compile(statement: Select[Any], dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    binds = {
        name: bind.type.dialect_impl(dialect).bind_processor(dialect)
        for name, bind in compiled.binds.items()
    }
    results = (
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in statement.selected_columns
    )
    conversions = tuple((index, process) for index, process in enumerate(results) if process)
    return _Compiled(compiled.string, compiled, binds, conversions)


class Reads:
    """Runs SELECTs for the store, each on a connection of `engine`'s pool."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single_trip = engine.dialect.driver == "aiosqlite"
        self._compiled: dict[Select[Any], _Compiled] = {}
        self._turns = asyncio.Semaphore(CONCURRENT_READS)

    async def all(self, statement: Select[Any], params: dict[str, Any]) -> list[tuple[Any, ...]]:
        if not self._single_trip:
            async with self._engine.connect() as connection:
                return [tuple(row) for row in await connection.execute(statement, params)]
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = _compile(statement, self._engine.dialect)
        values = compiled.values(params)
        async with self._turns, self._engine.connect() as connection:
            driver: Any = (await connection.get_raw_connection()).driver_connection
            raw = await driver.execute_fetchall(compiled.sql, values)
        return [compiled.row(row) for row in raw]

    async def first(
        self, statement: Select[Any], params: dict[str, Any]
    ) -> tuple[Any, ...] | None:
        rows = await self.all(statement, params)
        return rows[0] if rows else None
