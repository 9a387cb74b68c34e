"""Move a database into another: `uv run python -m storage.move FROM_URL TO_URL`.

For teams that started on the default SQLite file and outgrew it:

    uv run python -m storage.move sqlite+aiosqlite:///incidents.db \\
        postgresql+asyncpg://incidents:secret@db.example.com:5432/incidents

Both are brought to the newest schema first. Everything the service keeps is copied, ids
kept: incidents (with their cards and alert keys), the outbox, the kept counts and the chat
migrations.
On PostgreSQL each id sequence is then set past the highest id copied, so new incidents
continue the numbering. The target must not hold incidents yet; stop the service before
moving, and start it with the new DATABASE_URL after.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.database import create_engine, migrate
from storage.models import (
    AlertKey,
    Base,
    ChatMigration,
    Delivery,
    Incident,
    IncidentCount,
    IncidentEvent,
)

MOVED: tuple[str, ...] = (
    Incident.__tablename__,
    IncidentEvent.__tablename__,
    AlertKey.__tablename__,
    IncidentCount.__tablename__,
    Delivery.__tablename__,
    ChatMigration.__tablename__,
)
"""What is moved, in an order that keeps foreign keys satisfied. Not moved: the leases
(instances take them anew) and the write probes (always empty)."""
BATCH_ROWS = 1000


class MoveError(Exception):
    """The move cannot be made (a target that already holds incidents, say)."""


async def move(
    source_url: str, target_url: str, *, progress: Callable[[str], None] = lambda _: None
) -> dict[str, int]:
    """Copy every table in MOVED from the source into the target; rows copied per table.

    All of it is one transaction on the target: a move that fails leaves it as it was.
    """
    source, target = create_engine(source_url), create_engine(target_url)
    try:
        await migrate(source)
        await migrate(target)
        moved: dict[str, int] = {}
        async with source.connect() as reading, target.begin() as writing:
            incidents = _table(Incident.__tablename__)
            if await writing.scalar(select(func.count()).select_from(incidents)):
                raise MoveError("the target already holds incidents; move into an empty one")
            for name in MOVED:
                table = _table(name)
                # The target's migrations may have filled a table (counts start empty, but
                # a future migration may seed one): the source's rows replace them.
                await writing.execute(table.delete())
                moved[name] = await _copy(table, reading, writing)
                progress(f"{name}: {moved[name]} rows")
            await _continue_numbering(writing)
        return moved
    finally:
        await source.dispose()
        await target.dispose()


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


async def _copy(table: Table, reading: AsyncConnection, writing: AsyncConnection) -> int:
    """Rows in primary-key order, a batch at a time, ids included."""
    key = list(table.primary_key.columns)
    by_id = len(key) == 1 and key[0].name == "id"
    copied = 0
    last_id: Any = None
    while True:
        query = select(table).order_by(*key)
        if by_id:
            if last_id is not None:
                query = query.where(key[0] > last_id)
            query = query.limit(BATCH_ROWS)
        rows = [dict(row._mapping) for row in await reading.execute(query)]
        if rows:
            await writing.execute(insert(table), rows)
            copied += len(rows)
        if not by_id or len(rows) < BATCH_ROWS:
            return copied
        last_id = rows[-1]["id"]


async def _continue_numbering(writing: AsyncConnection) -> None:
    """PostgreSQL hands out ids from sequences that copied rows did not advance."""
    if writing.dialect.name != "postgresql":
        return
    for name in (Incident.__tablename__, IncidentEvent.__tablename__, Delivery.__tablename__):
        await writing.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'),"
                f" coalesce((SELECT max(id) FROM {name}), 1),"
                f" (SELECT max(id) FROM {name}) IS NOT NULL)"
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m storage.move", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("source", help="the database to copy from (a DATABASE_URL)")
    parser.add_argument("target", help="the database to copy into (a DATABASE_URL)")
    options = parser.parse_args(argv)
    try:
        for url in (options.source, options.target):
            make_url(url)
    except ArgumentError as error:
        print(f"Not a database URL: {error}", file=sys.stderr)
        return 2
    try:
        moved = asyncio.run(move(options.source, options.target, progress=print))
    except (MoveError, SQLAlchemyError, OSError) as error:
        print(f"Not moved: {error}", file=sys.stderr)
        return 1
    print(f"Moved {moved[Incident.__tablename__]} incidents.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
