"""The active instance's reminders: each round asks the store which incidents are due one
(`storage.reminders`) and records a reminder for each, which the sender then posts as a
reply to the incident's card, within the chat's limits.

Nothing is kept in memory between rounds: what is due is read from the database, so a
restart or a failover picks up where the last active instance left off.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from storage.errors import describe, is_storage_unavailable
from storage.reminders import ReminderPolicy
from storage.store import IncidentStore

logger = logging.getLogger(__name__)

ROUND_MAX_SECONDS = 30.0
"""The longest wait between two rounds; shorter durations make rounds more frequent."""
ROUND_MIN_SECONDS = 0.5
BATCH = 100
"""Incidents reminded per round at most; the rest are next round's."""


class Reminders:
    """Runs rounds until cancelled (by the end of the instance's term as active)."""

    def __init__(self, store: IncidentStore, policy: ReminderPolicy) -> None:
        self._store = store
        self._policy = policy
        shortest = policy.shortest
        every = ROUND_MAX_SECONDS if shortest is None else shortest.total_seconds() / 4
        self._interval = min(max(every, ROUND_MIN_SECONDS), ROUND_MAX_SECONDS)

    async def run(self) -> None:
        if not self._policy.enabled:
            return
        while True:
            try:
                await self.round()
            except Exception as error:
                if not is_storage_unavailable(error):
                    logger.exception("Reminders: a round failed")
                else:
                    logger.warning("Reminders: the database is unavailable (%s)", describe(error))
            await asyncio.sleep(self._interval)

    async def round(self) -> int:
        """Remind every incident due now (up to BATCH); how many were reminded."""
        now = datetime.now(UTC)
        due = await self._store.due_reminders(self._policy, now, limit=BATCH)
        reminded = 0
        for incident_id in due:
            if await self._store.remind(incident_id, self._policy, now):
                reminded += 1
        return reminded
