"""The FastAPI application factory: routers, dependencies and error translation."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from api import alerts, health, incidents
from api.dependencies import ApiKeyDocumented, BearerDocumented
from api.metrics import router as metrics_router
from api.request_metrics import RequestMetrics
from api.schemas import STORAGE_UNAVAILABLE, ErrorOut, TransitionErrorOut, retry_after
from metrics import Metrics
from storage.alerts import AlertRaceError, AlertStore
from storage.errors import describe, is_storage_unavailable
from storage.leadership import Leadership
from storage.rules import EXCERPT_MAX_LENGTH, InvalidIncidentError, excerpt
from storage.store import (
    IncidentNotFoundError,
    IncidentStore,
    TransitionNotAllowedError,
    VersionMismatchError,
)

logger = logging.getLogger(__name__)

API_VERSION = "0.1.0"

# The body bound of every route that sets no narrower one (the /incidents routes take
# 64 KiB). It is there for the webhook: a Telegram update is at most a few tens of
# kilobytes (4096 characters of text, a quoted reply, their entities), and an update
# refused for its size would be redelivered forever, so the bound leaves ample room.
MAX_BODY_BYTES = 1024 * 1024

DESCRIPTION = """\
Incidents reported by on-call chats, monitoring systems and people, tracked through
`open → in_progress | resolved | closed`, `in_progress → resolved | closed`,
`resolved → in_progress | closed`; `closed` is final.

Monitoring systems post their own alert formats to `/alerts/alertmanager`,
`/alerts/grafana` and `/alerts`: one incident per problem (a group, a `dedup_key`) while
it lasts, resolved when it is over.

When the service has an `API_KEY`, every `/incidents` and `/alerts` route needs it, in
the `X-API-Key` header or as `Authorization: Bearer <key>`. `/health` and `/metrics` are
always open.
"""


def create_app(
    store: IncidentStore,
    *,
    api_key: SecretStr | None,
    announce_chat_id: int | None = None,
    leadership: Leadership | None = None,
    metrics: Metrics | None = None,
    alert_store: AlertStore | None = None,
) -> FastAPI:
    """Build the HTTP API over `store`; with `api_key`, /incidents and /alerts require it.

    With `announce_chat_id`, each incident created here is announced in that Telegram
    chat: its card is queued in the outbox with the incident, for the bot to post.
    `leadership` (when the bot runs) is what /health reports as the instance's bot role.
    With `metrics`, every request is counted in them and /metrics serves them; without,
    /metrics answers 404.
    `alert_store` applies what /alerts receives (by default one over `store`).
    """
    app = FastAPI(
        title="incident-bot",
        description=DESCRIPTION,
        version=API_VERSION,
        max_body_size=MAX_BODY_BYTES,
        openapi_tags=[
            {"name": "incidents", "description": "Report, list and move incidents."},
            {
                "name": "alerts",
                "description": "Alerts from monitoring systems, in their own formats.",
            },
            {"name": "health", "description": "Liveness and database readiness."},
            {"name": "metrics", "description": "Prometheus metrics (METRICS=off: 404)."},
        ],
    )
    app.state.store = store
    app.state.api_key = api_key
    app.state.announce_chat_id = announce_chat_id
    app.state.leadership = leadership
    app.state.metrics = metrics
    if metrics is not None:
        app.add_middleware(RequestMetrics, metrics=metrics)
    app.state.alerts = alert_store or AlertStore(store)

    app.exception_handler(RequestValidationError)(_request_invalid)
    app.exception_handler(405)(_method_not_allowed)
    app.exception_handler(IncidentNotFoundError)(_incident_not_found)
    app.exception_handler(TransitionNotAllowedError)(_transition_not_allowed)
    app.exception_handler(VersionMismatchError)(_version_mismatch)
    app.exception_handler(InvalidIncidentError)(_invalid_incident)
    app.exception_handler(AlertRaceError)(_alert_kept_changing)
    app.exception_handler(DBAPIError)(_storage_failed)
    app.exception_handler(PoolTimeoutError)(_storage_failed)
    # A database server that cannot be reached: the driver's socket error, as it is.
    app.exception_handler(OSError)(_storage_failed)

    app.include_router(health.router)
    app.include_router(metrics_router)
    for router in (incidents.router, alerts.router):
        if api_key is None:
            app.include_router(router, responses=STORAGE_UNAVAILABLE)
            continue
        app.include_router(
            router,
            dependencies=[ApiKeyDocumented, BearerDocumented],
            responses={
                401: {
                    "model": ErrorOut,
                    "description": "Missing or wrong key (X-API-Key or Authorization: Bearer)",
                    "headers": {
                        "WWW-Authenticate": {
                            "description": "APIKey",
                            "schema": {"type": "string"},
                        }
                    },
                },
                **STORAGE_UNAVAILABLE,
            },
        )
    return app


async def _request_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    # FastAPI's own 422, except for what it echoes of the input. A lone surrogate
    # ("\ud800" in the JSON body) cannot be encoded as UTF-8: it is shown as U+FFFD. And
    # only the start of a long input comes back (a megabyte header must not return
    # whole), nor of a field name the body made up, nor of the value a rule refused.
    detail = [
        _shortened(item) for item in _without_lone_surrogates(jsonable_encoder(error.errors()))
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


def _shortened(item: dict[str, Any]) -> dict[str, Any]:
    shortened = dict(item)
    shortened["loc"] = [excerpt(part) if isinstance(part, str) else part for part in item["loc"]]
    if "input" in item:
        shortened["input"] = _excerpt_of(item["input"])
    if isinstance(item.get("ctx"), dict):
        shortened["ctx"] = {key: _excerpt_of(value) for key, value in item["ctx"].items()}
    return shortened


def _excerpt_of(value: Any) -> Any:
    """A string's excerpt; an object or array whose JSON is long, as that JSON's excerpt."""
    if isinstance(value, str):
        return excerpt(value)
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
        return value if len(text) <= EXCERPT_MAX_LENGTH else excerpt(text)
    return value


def _without_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {key: _without_lone_surrogates(item) for key, item in value.items()}
    return value


async def _method_not_allowed(request: Request, error: HTTPException) -> JSONResponse:
    # Starlette's Allow names only the methods of the first route it tried on the path
    # (POST for /incidents, not GET); the OpenAPI document knows them all.
    path = request.scope["path"]
    documented = sorted(
        method.upper()
        for template, methods in request.app.openapi()["paths"].items()
        if compile_path(template)[0].fullmatch(path)
        for method in methods
    )
    headers = dict(error.headers or {})
    if documented:
        headers["Allow"] = ", ".join(documented)
    return JSONResponse(status_code=405, content={"detail": error.detail}, headers=headers)


async def _incident_not_found(request: Request, error: IncidentNotFoundError) -> JSONResponse:
    return JSONResponse(status_code=404, content=ErrorOut(detail=str(error)).model_dump())


async def _transition_not_allowed(
    request: Request, error: TransitionNotAllowedError
) -> JSONResponse:
    body = TransitionErrorOut(
        detail=str(error),
        current=error.current,
        requested=error.requested,
        allowed=list(error.allowed),
    )
    return JSONResponse(status_code=409, content=body.model_dump(mode="json"))


async def _version_mismatch(request: Request, error: VersionMismatchError) -> JSONResponse:
    return JSONResponse(
        status_code=412,
        content=ErrorOut(detail=str(error)).model_dump(),
        headers={"ETag": incidents.entity_tag(error.incident)},
    )


async def _storage_failed(request: Request, error: Exception) -> JSONResponse:
    # A locked, full or unreachable database: the same request may succeed shortly.
    # Anything else the database refused is a bug, left to the server's 500 and traceback.
    if not is_storage_unavailable(error):
        raise error
    logger.warning(
        "%s %s: answered 503, the database is unavailable: %s",
        request.method,
        request.url.path,
        describe(error),
    )
    body = ErrorOut(detail="The database is unavailable right now; try again later.")
    return JSONResponse(status_code=503, content=body.model_dump(), headers=retry_after())


async def _alert_kept_changing(request: Request, error: AlertRaceError) -> JSONResponse:
    # Other instances kept changing the alert's incident under this one: the monitoring
    # system's retry will find it settled.
    logger.warning("%s %s: answered 503: %s", request.method, request.url.path, error)
    body = ErrorOut(detail="The alert's incident kept changing; try again later.")
    return JSONResponse(status_code=503, content=body.model_dump(), headers=retry_after())


async def _invalid_incident(request: Request, error: InvalidIncidentError) -> JSONResponse:
    # The schemas check the same rules first, so this is a safety net; it answers in the
    # shape of FastAPI's own validation errors, so clients see one kind of 422.
    return JSONResponse(
        status_code=422,
        content={"detail": [{"type": "value_error", "loc": ["body"], "msg": str(error)}]},
    )
