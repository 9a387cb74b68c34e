"""Checking the kept `incident_counts` against a count of the incidents themselves."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

COUNTED = text(
    "SELECT chat_id, status, source, total FROM incident_counts WHERE total != 0"
    " ORDER BY chat_id, status, source"
)
RECOUNTED = text(
    "SELECT coalesce(chat_id, 0) AS chat, status, source, count(*) FROM incidents"
    " GROUP BY chat, status, source ORDER BY chat, status, source"
)


async def counts_match_incidents(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        kept = (await connection.execute(COUNTED)).all()
        recounted = (await connection.execute(RECOUNTED)).all()
    return list(map(tuple, kept)) == list(map(tuple, recounted))
