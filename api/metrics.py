"""GET /metrics: the service's Prometheus metrics, open like /health (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from api.dependencies import Store
from api.routing import DocstringSummaryRoute
from api.schemas import ErrorOut
from metrics import CONTENT_TYPE, Metrics, read_stored
from storage.leadership import Leadership

METRICS_OFF = "Metrics are off (METRICS=off)"


class PrometheusText(Response):
    media_type = CONTENT_TYPE


router = APIRouter(tags=["metrics"], route_class=DocstringSummaryRoute)


@router.get(
    "/metrics",
    response_class=PrometheusText,
    responses={
        200: {
            "description": "Prometheus' text exposition format (version 0.0.4)",
            "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
        },
        404: {
            "description": "Metrics are off: the METRICS setting is off",
            # Errors are JSON, as on every route (a `model` would be documented in the
            # route's own media type, the text format's).
            "content": {"application/json": {"schema": ErrorOut.model_json_schema()}},
        },
    },
)
async def metrics(store: Store, request: Request) -> Response:
    """Get the service's metrics in Prometheus' text format."""
    collected: Metrics | None = request.app.state.metrics
    if collected is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=METRICS_OFF)
    leadership: Leadership | None = request.app.state.leadership
    role = "off" if leadership is None else leadership.role
    # Read before the text is made: generating it is synchronous, the database is not.
    stored = await read_stored(store)
    return PrometheusText(collected.exposition(stored, role))
