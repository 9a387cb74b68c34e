"""/openapi.json and /docs describe every route, its summary and its errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api import alerts, health, incidents, metrics
from storage.rules import DESCRIPTION_PATTERN

EXPECTED_OPERATIONS = {
    ("/health", "get"): (health.health, {"200", "503"}),
    ("/metrics", "get"): (metrics.metrics, {"200", "404"}),
    ("/incidents", "post"): (
        incidents.create_incident,
        {"200", "201", "409", "413", "422", "503"},
    ),
    ("/incidents", "get"): (incidents.list_incidents, {"200", "413", "422", "503"}),
    ("/incidents/{incident_id}", "get"): (
        incidents.get_incident,
        {"200", "304", "404", "413", "422", "503"},
    ),
    ("/incidents/{incident_id}", "patch"): (
        incidents.amend_incident,
        {"200", "404", "409", "412", "413", "422", "503"},
    ),
    ("/incidents/{incident_id}/events", "get"): (
        incidents.list_incident_events,
        {"200", "404", "413", "422", "503"},
    ),
    ("/incidents/{incident_id}/status", "patch"): (
        incidents.change_incident_status,
        {"200", "404", "409", "413", "422", "503"},
    ),
    ("/alerts/alertmanager", "post"): (
        alerts.receive_alertmanager,
        {"200", "201", "413", "422", "503"},
    ),
    ("/alerts/grafana", "post"): (alerts.receive_grafana, {"200", "201", "413", "422", "503"}),
    ("/alerts", "post"): (alerts.receive_event, {"200", "201", "413", "422", "503"}),
}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_openapi_lists_every_route(document: dict[str, Any]) -> None:
    operations = {
        (path, method) for path, methods in document["paths"].items() for method in methods
    }

    assert operations == set(EXPECTED_OPERATIONS)
    assert document["info"]["title"] == "incident-bot"
    assert document["info"]["version"]


@pytest.mark.parametrize(("path", "method"), EXPECTED_OPERATIONS)
async def test_openapi_uses_docstring_as_summary(
    document: dict[str, Any], path: str, method: str
) -> None:
    endpoint, _ = EXPECTED_OPERATIONS[path, method]
    operation = document["paths"][path][method]

    assert endpoint.__doc__
    assert operation["summary"] == endpoint.__doc__.strip()
    assert "\n" not in operation["summary"]


@pytest.mark.parametrize(("path", "method"), EXPECTED_OPERATIONS)
async def test_openapi_documents_error_responses(
    document: dict[str, Any], path: str, method: str
) -> None:
    _, codes = EXPECTED_OPERATIONS[path, method]

    assert set(document["paths"][path][method]["responses"]) == codes


async def test_openapi_documents_409_body_of_forbidden_transition(
    document: dict[str, Any],
) -> None:
    responses = document["paths"]["/incidents/{incident_id}/status"]["patch"]["responses"]
    reference = responses["409"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][reference.rsplit("/", 1)[-1]]

    assert set(schema["required"]) == {"detail", "current", "requested", "allowed"}


async def test_openapi_documents_incident_create_rules(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["IncidentCreate"]["properties"]

    assert schema["description"]["maxLength"] == 4096
    # Something visible: not only spaces, controls or zero-width characters.
    assert schema["description"]["pattern"] == DESCRIPTION_PATTERN
    assert schema["source"]["default"] == "operator"
    assert schema["source"]["pattern"] == r"^[\w-]{1,32}$"


async def test_openapi_documents_location_and_total_count_headers(
    document: dict[str, Any],
) -> None:
    created = document["paths"]["/incidents"]["post"]["responses"]
    listed = document["paths"]["/incidents"]["get"]["responses"]

    assert "Location" in created["201"]["headers"]
    assert "Location" in created["200"]["headers"]
    assert "X-Total-Count" in listed["200"]["headers"]


@pytest.mark.parametrize(
    ("path", "method"),
    [operation for operation, (_, codes) in EXPECTED_OPERATIONS.items() if "503" in codes],
)
async def test_openapi_documents_retry_after_of_503(
    document: dict[str, Any], path: str, method: str
) -> None:
    unavailable = document["paths"][path][method]["responses"]["503"]

    assert "Retry-After" in unavailable["headers"]


async def test_openapi_documents_metrics_as_text_and_404_as_json(
    document: dict[str, Any],
) -> None:
    responses = document["paths"]["/metrics"]["get"]["responses"]

    assert list(responses["200"]["content"]) == ["text/plain; version=0.0.4; charset=utf-8"]
    assert list(responses["404"]["content"]) == ["application/json"]


async def test_docs_serves_swagger_ui(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")

    assert response.status_code == 200
    assert "swagger-ui" in response.text
