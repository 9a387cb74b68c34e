"""Connections going back to the pool: rolled back only where a transaction is open."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.database import create_engine

pytestmark = pytest.mark.sqlite_only  # aiosqlite's own reset (storage.database)


async def _driver(connection: AsyncConnection) -> Any:
    return (await connection.get_raw_connection()).driver_connection


async def test_a_connection_returned_inside_a_transaction_comes_back_without_it(
    engine: AsyncEngine, database_url: str
) -> None:
    # `engine` has migrated the file. A second engine that opens one connection only:
    # its second checkout gets the first one back.
    single = create_engine(database_url)
    try:
        async with single.connect() as connection:
            driver = await _driver(connection)
            # Straight to the driver, past SQLAlchemy's own transaction: only the
            # pool's reset can end it.
            await driver.execute(
                "INSERT INTO incidents (description, status, source, created_at,"
                " updated_at) VALUES ('x', 'open', 'ops', '2026-01-01', '2026-01-01')"
            )
            assert driver.in_transaction
        async with single.connect() as connection:
            again = await _driver(connection)
            count = await connection.scalar(text("SELECT count(*) FROM incidents"))

        assert again is driver
        assert not again.in_transaction
        assert count == 0
    finally:
        await single.dispose()
