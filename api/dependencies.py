"""What endpoints depend on: the store, and the API-key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import SecretStr

from storage.alerts import AlertStore
from storage.store import CardRequest, IncidentStore

API_KEY_HEADER = "X-API-Key"

_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The key set in the service's API_KEY setting.",
)
# Monitoring systems send credentials as `Authorization: Bearer <token>` (Alertmanager's
# and Grafana's http_config): the same key is accepted that way.
_bearer = HTTPBearer(
    auto_error=False,
    description="The key set in the service's API_KEY setting, as a bearer token.",
)


async def get_store(request: Request) -> IncidentStore:
    store: IncidentStore = request.app.state.store
    return store


Store = Annotated[IncidentStore, Depends(get_store)]


async def get_alert_store(request: Request) -> AlertStore:
    alerts: AlertStore = request.app.state.alerts
    return alerts


Alerts = Annotated[AlertStore, Depends(get_alert_store)]


async def get_announcement(request: Request) -> CardRequest | None:
    """Where a new incident's card goes (NOTIFY_CHAT_ID), if anywhere."""
    chat_id: int | None = request.app.state.announce_chat_id
    return None if chat_id is None else CardRequest(chat_id)


Announcement = Annotated[CardRequest | None, Depends(get_announcement)]


async def require_api_key(request: Request) -> None:
    """Refuse the request with 401 unless it carries the configured key, in X-API-Key or
    as `Authorization: Bearer <key>`.

    Called by the /incidents and /alerts routes' route class (`api.routing.KeyFirstRoute`)
    before anything else of the request is read, so a stranger learns nothing from how
    the body or other headers are judged.
    """
    expected: SecretStr | None = request.app.state.api_key
    if expected is None:
        return
    key = expected.get_secret_value().encode("utf-8")
    bearer = await _bearer(request)
    offered = [await _api_key_header(request), None if bearer is None else bearer.credentials]
    # Compare bytes: header values arrive as latin-1 text, and compare_digest refuses
    # non-ASCII str. Encoding back to latin-1 gives the exact bytes the client sent.
    # Every offer is compared, so the time taken tells nothing about which one failed.
    matches = [
        secrets.compare_digest(value.encode("latin-1"), key)
        for value in offered
        if value is not None
    ]
    if not any(matches):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=f"Missing or invalid API key ({API_KEY_HEADER} or Authorization: Bearer)",
            headers={"WWW-Authenticate": "APIKey"},
        )


ApiKeyDocumented = Security(_api_key_header)
"""For a router's `dependencies=[...]`: puts the X-API-Key scheme in the OpenAPI document.

It refuses nothing (`auto_error=False`): `require_api_key` checks the key, earlier than
any dependency could run, since FastAPI reads and parses the body before dependencies.
"""

BearerDocumented = Security(_bearer)
"""The same for `Authorization: Bearer <key>` (`require_api_key` checks it)."""
