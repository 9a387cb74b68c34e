"""Errors outside any one route: unknown paths and methods, and the store's rule errors."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from storage.rules import InvalidIncidentError

pytestmark = pytest.mark.all_engines


async def test_unknown_path_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/incident")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_unsupported_method_returns_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/incidents")

    assert response.status_code == 405


async def test_invalid_incident_error_becomes_422(app: FastAPI, client: httpx.AsyncClient) -> None:
    # The schemas check the rules before the store does, so no route can reach this
    # handler with bad input; a route added for the test raises the store's error itself.
    @app.get("/raises-invalid-incident")
    async def raises() -> None:
        raise InvalidIncidentError("Description is empty")

    response = await client.get("/raises-invalid-incident")

    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"type": "value_error", "loc": ["body"], "msg": "Description is empty"}]
    }
