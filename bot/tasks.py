"""The bot's background tasks (polling, the sender, webhook registration) and their ends."""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


def log_failure(task: asyncio.Task[None]) -> None:
    """A done-callback: a background task that died of an error says so in the log.

    Nobody awaits these tasks until shutdown, so without it the error would go unseen.
    """
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.error("%s stopped: %s", task.get_name(), error, exc_info=error)
