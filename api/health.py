"""GET /health: is the service up and does its database answer."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response

from api.dependencies import Store
from api.routing import DocstringSummaryRoute
from api.schemas import Health

logger = logging.getLogger(__name__)

# A probe must answer quickly even when the database hangs rather than fails.
PING_TIMEOUT_SECONDS = 5

router = APIRouter(tags=["health"], route_class=DocstringSummaryRoute)


@router.get(
    "/health",
    responses={503: {"model": Health, "description": "The database does not answer"}},
)
async def health(store: Store, response: Response) -> Health:
    """Check that the service runs and its database answers."""
    try:
        async with asyncio.timeout(PING_TIMEOUT_SECONDS):
            await store.ping()
    except Exception:
        # Whatever the reason the database cannot answer, the answer is the same: 503.
        logger.warning("Health check failed: the database does not answer", exc_info=True)
        response.status_code = 503
        return Health(status="unavailable", database="unavailable")
    return Health(status="ok", database="ok")
