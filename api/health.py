"""GET /health: is the service up and does its database take writes."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response

from api.dependencies import Store
from api.routing import DocstringSummaryRoute
from api.schemas import STORAGE_UNAVAILABLE, Health, retry_after
from storage.leadership import Leadership

logger = logging.getLogger(__name__)

# A probe must answer quickly even when the database hangs rather than fails.
PING_TIMEOUT_SECONDS = 5

router = APIRouter(tags=["health"], route_class=DocstringSummaryRoute)


@router.get(
    "/health",
    responses={
        503: {
            **STORAGE_UNAVAILABLE[503],
            "model": Health,
            "description": "The database does not answer or cannot take writes",
        }
    },
)
async def health(store: Store, request: Request, response: Response) -> Health:
    """Check that the service runs and its database takes writes, and say its bot role."""
    leadership: Leadership | None = request.app.state.leadership
    bot = "off" if leadership is None else leadership.role
    try:
        async with asyncio.timeout(PING_TIMEOUT_SECONDS):
            # Writes, not a read: a full disk or a lock held elsewhere leaves reads
            # working while every report fails (see storage.health).
            await store.check_writable()
    except Exception as error:
        # Whatever the reason the database cannot write, the answer is the same: 503.
        reason = str(error) or type(error).__name__
        logger.warning("Health check failed: the database cannot take writes: %s", reason)
        response.status_code = 503
        response.headers.update(retry_after())
        return Health(status="unavailable", database="unavailable", bot=bot)
    return Health(status="ok", database="ok", bot=bot)
