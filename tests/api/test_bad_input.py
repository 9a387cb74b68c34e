"""Bad input over HTTP: control and invisible characters, bodies that cannot be decoded,
errors that echo only a short excerpt, and the API key judged before anything else."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from api.app import create_app
from storage.rules import EXCERPT_MAX_LENGTH
from storage.store import IncidentStore
from tests.api.conftest import MakeIncident

pytestmark = pytest.mark.all_engines

JSON = {"Content-Type": "application/json"}
KEY = "s3cret"

# Bodies FastAPI reads without a schema: each must be a 422 (never its bare 400).
UNREADABLE_BODIES = {
    "not utf-8": b"<\xff!",
    "utf-8 then not": b'{"status": "\xff\xfe"}',
    # Within the 64 KiB body limit, far past what Python's JSON decoder can recurse into.
    "nested too deeply": b"[" * 30_000 + b"]" * 30_000,
    "number too long": b'{"status": ' + b"1" * 5000 + b"}",
}


async def test_create_removes_control_characters_from_description(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/incidents", json={"description": "\x00Disk\x07 full\x1b on db-1\tnow\r\nreally"}
    )

    assert response.status_code == 201
    assert response.json()["description"] == "Disk full on db-1\tnow\r\nreally"
    fetched = await client.get(response.headers["Location"])
    assert fetched.json()["description"] == "Disk full on db-1\tnow\r\nreally"


@pytest.mark.parametrize(
    "description",
    ["\u200b", "\ufeff", "\u200b\u200c\u200d\u2060\ufeff", " \u3164\u00a0", "\x00", "\x00 \x1b"],
)
async def test_create_refuses_description_with_nothing_visible_with_422(
    client: httpx.AsyncClient, description: str
) -> None:
    response = await client.post("/incidents", json={"description": description})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "description"]
    assert "Description is empty" in error["msg"]
    assert (await client.get("/incidents")).headers["X-Total-Count"] == "0"


@pytest.mark.parametrize("source", ["\x00", "monitoring\x00", "\x00monitoring", "\u200bops"])
async def test_create_and_list_refuse_source_with_control_or_invisible_characters(
    client: httpx.AsyncClient, source: str
) -> None:
    created = await client.post("/incidents", json={"description": "x", "source": source})
    listed = await client.get("/incidents", params={"source": source})

    for response, field in ((created, ["body", "source"]), (listed, ["query", "source"])):
        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == field
        assert "Invalid source" in error["msg"]


@pytest.mark.parametrize("content", UNREADABLE_BODIES.values(), ids=UNREADABLE_BODIES.keys())
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_body_that_cannot_be_decoded_gets_422_like_malformed_json(
    client: httpx.AsyncClient, make_incident: MakeIncident, content: bytes, method: str
) -> None:
    incident = await make_incident()
    path = "/incidents" if method == "POST" else f"/incidents/{incident.id}/status"

    response = await client.request(method, path, content=content, headers=JSON)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["type"], error["loc"], error["msg"]) == (
        "json_invalid",
        ["body"],
        "JSON decode error",
    )
    assert (await client.get(f"/incidents/{incident.id}")).json()["status"] == "open"


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return max((_longest_string(item) for item in value), default=0)
    if isinstance(value, dict):
        return max(
            (max(_longest_string(key), _longest_string(item)) for key, item in value.items()),
            default=0,
        )
    return 0


LONG = "x" * 60_000
# (method, path, body, headers): each refused with 422, each echoing a long input.
LONG_INPUTS: dict[str, tuple[str, str, Any, dict[str, str]]] = {
    "idempotency key": ("POST", "/incidents", {"description": "x"}, {"Idempotency-Key": LONG}),
    "source": ("POST", "/incidents", {"description": "x", "source": LONG}, {}),
    "status": ("POST", "/incidents", {"description": "x", "status": LONG}, {}),
    "extra field name": ("POST", "/incidents", {"description": "x", LONG: 1}, {}),
    "extra field value": ("POST", "/incidents", {"description": "x", "id": LONG}, {}),
    "body of the wrong type": ("POST", "/incidents", [LONG], {}),
    "missing field": ("POST", "/incidents", {"source": "ops", "notes": LONG[:4000]}, {}),
    "description too long": ("POST", "/incidents", {"description": LONG}, {}),
    "query": ("GET", f"/incidents?status={LONG[:4000]}&source={LONG[:4000]}", None, {}),
    "path": ("GET", f"/incidents/{'9' * 4000}", None, {}),
    "patch status": ("PATCH", "/incidents/1/status", {"status": LONG}, {}),
}


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"), LONG_INPUTS.values(), ids=LONG_INPUTS.keys()
)
async def test_validation_errors_echo_only_an_excerpt_of_long_input(
    client: httpx.AsyncClient,
    make_incident: MakeIncident,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    await make_incident()

    response = await client.request(method, path, json=body, headers=headers)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail
    # An excerpt is EXCERPT_MAX_LENGTH characters and "…"; a message may wrap one.
    assert _longest_string(detail) <= 3 * EXCERPT_MAX_LENGTH
    assert len(response.content) <= 1000 * len(detail)


async def test_idempotency_key_over_255_characters_is_refused_naming_the_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/incidents", json={"description": "x"}, headers={"Idempotency-Key": "k" * 1_000_000}
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert error["input"] == "k" * EXCERPT_MAX_LENGTH + "…"
    assert len(response.content) < 1000
    assert (await client.get("/incidents")).headers["X-Total-Count"] == "0"


async def test_idempotency_conflict_names_only_an_excerpt_of_the_key(
    client: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": "k" * 255}
    await client.post("/incidents", json={"description": "first"}, headers=key)

    response = await client.post("/incidents", json={"description": "second"}, headers=key)

    assert response.status_code == 409
    assert "k" * EXCERPT_MAX_LENGTH + "…" in response.json()["detail"]
    assert "k" * (EXCERPT_MAX_LENGTH + 1) not in response.json()["detail"]


@pytest.fixture
def keyed_app(store: IncidentStore) -> FastAPI:
    return create_app(store, api_key=SecretStr(KEY))


@pytest.fixture
async def keyed_client(keyed_app: FastAPI) -> Any:
    transport = httpx.ASGITransport(app=keyed_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


BAD_REQUESTS: dict[str, tuple[str, str, bytes, dict[str, str]]] = {
    "malformed json": ("POST", "/incidents", b'{"description": ', JSON),
    "not utf-8": ("PATCH", "/incidents/1/status", b"<\xff!", JSON),
    "nested too deeply": ("POST", "/incidents", UNREADABLE_BODIES["nested too deeply"], JSON),
    "schema-invalid body": ("POST", "/incidents", b'{"description": ""}', JSON),
    "text/plain body": ("POST", "/incidents", b"Disk full", {"Content-Type": "text/plain"}),
    "huge idempotency key": (
        "POST",
        "/incidents",
        b'{"description": "x"}',
        {**JSON, "Idempotency-Key": "k" * 1_000_000},
    ),
    "bad path id": ("GET", "/incidents/0", b"", {}),
    "bad query": ("GET", "/incidents?limit=-1&status=nope", b"", {}),
    "unknown incident": ("PATCH", "/incidents/999/status", b'{"status": "closed"}', JSON),
}


@pytest.mark.parametrize(
    ("method", "path", "content", "headers"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys()
)
@pytest.mark.parametrize("sent_key", [None, "wrong"])
async def test_request_without_right_key_gets_401_whatever_else_is_wrong(
    keyed_client: httpx.AsyncClient,
    method: str,
    path: str,
    content: bytes,
    headers: dict[str, str],
    sent_key: str | None,
) -> None:
    if sent_key is not None:
        headers = {**headers, "X-API-Key": sent_key}

    response = await keyed_client.request(method, path, content=content, headers=headers)

    assert response.status_code == 401
    assert response.json() == {
        "detail": "Missing or invalid API key (X-API-Key or Authorization: Bearer)"
    }
    assert response.headers["WWW-Authenticate"] == "APIKey"


@pytest.mark.parametrize(
    ("method", "path", "content", "headers"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys()
)
@pytest.mark.parametrize("keyed", [False, True], ids=["no key set", "key set and sent"])
async def test_every_status_answered_to_bad_input_is_documented_for_its_route(
    store: IncidentStore,
    make_incident: MakeIncident,
    method: str,
    path: str,
    content: bytes,
    headers: dict[str, str],
    keyed: bool,
) -> None:
    await make_incident()
    app = create_app(store, api_key=SecretStr(KEY) if keyed else None)
    if keyed:
        headers = {**headers, "X-API-Key": KEY}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        document = (await client.get("/openapi.json")).json()
        response = await client.request(method, path, content=content, headers=headers)
        oversized = await client.request(
            method, path, content=b" " * 100_000, headers={**headers, **JSON}
        )

    operation = next(
        methods[method.lower()]
        for template, methods in document["paths"].items()
        if _matches(template, path.split("?")[0]) and method.lower() in methods
    )
    assert 400 <= response.status_code < 500
    assert str(response.status_code) in operation["responses"]
    assert json.loads(response.content)["detail"]
    assert oversized.status_code == 413
    media_type = oversized.headers["Content-Type"].split(";")[0]
    assert media_type in operation["responses"]["413"]["content"]


def _matches(template: str, path: str) -> bool:
    parts, given = template.split("/"), path.split("/")
    return len(parts) == len(given) and all(
        part == value or part.startswith("{") for part, value in zip(parts, given, strict=True)
    )


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/incidents", "GET, POST"),
        ("DELETE", "/incidents", "GET, POST"),
        ("DELETE", "/incidents/1", "GET, PATCH"),
        ("POST", "/incidents/1/events", "GET"),
        ("PUT", "/incidents/1/status", "PATCH"),
        ("POST", "/health", "GET"),
    ],
)
async def test_method_not_allowed_names_every_method_the_path_has(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json() == {"detail": "Method Not Allowed"}
