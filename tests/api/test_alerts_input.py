"""Bad input to the /alerts receivers: a body not in its format gets a 422 naming the
field and stores nothing, one over a mebibyte a 413, and without the key (in X-API-Key
or as a bearer token) a 401 before the body is judged."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import storage.alerts
from tests.alert_samples import ALERTMANAGER_EXAMPLE, GRAFANA_EXAMPLE, alertmanager_group
from tests.api.test_alerts import ALERTMANAGER, EVENTS, GRAFANA, total


def _without(body: dict[str, Any], *path: str | int) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return changed


def _with(body: dict[str, Any], value: Any, *path: str | int) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


BAD_BODIES: dict[str, tuple[str, Any, list[str | int]]] = {
    "alertmanager without groupKey": (
        ALERTMANAGER,
        _without(ALERTMANAGER_EXAMPLE, "groupKey"),
        ["body", "groupKey"],
    ),
    "alertmanager with empty groupKey": (
        ALERTMANAGER,
        _with(ALERTMANAGER_EXAMPLE, "", "groupKey"),
        ["body", "groupKey"],
    ),
    "alertmanager of another version": (
        ALERTMANAGER,
        _with(ALERTMANAGER_EXAMPLE, "3", "version"),
        ["body", "version"],
    ),
    "alertmanager with unknown status": (
        ALERTMANAGER,
        _with(ALERTMANAGER_EXAMPLE, "burning", "status"),
        ["body", "status"],
    ),
    "alertmanager alerts not a list": (
        ALERTMANAGER,
        _with(ALERTMANAGER_EXAMPLE, {"status": "firing"}, "alerts"),
        ["body", "alerts"],
    ),
    "alertmanager alert without labels": (
        ALERTMANAGER,
        _without(ALERTMANAGER_EXAMPLE, "alerts", 0, "labels"),
        ["body", "alerts", 0, "labels"],
    ),
    "alertmanager label not a string": (
        ALERTMANAGER,
        _with(ALERTMANAGER_EXAMPLE, 7, "commonLabels", "severity"),
        ["body", "commonLabels", "severity"],
    ),
    "grafana without orgId": (GRAFANA, _without(GRAFANA_EXAMPLE, "orgId"), ["body", "orgId"]),
    "grafana value not a number": (
        GRAFANA,
        _with(GRAFANA_EXAMPLE, "high", "alerts", 1, "values", "B"),
        ["body", "alerts", 1, "values", "B"],
    ),
    "event without dedup_key": (
        EVENTS,
        {"action": "trigger", "description": "x"},
        ["body", "trigger", "dedup_key"],
    ),
    "trigger without description": (
        EVENTS,
        {"dedup_key": "k", "action": "trigger"},
        ["body", "trigger", "description"],
    ),
    "trigger with empty description": (
        EVENTS,
        {"dedup_key": "k", "action": "trigger", "description": " \u200b"},
        ["body", "trigger", "description"],
    ),
    "event with bad source": (
        EVENTS,
        {"dedup_key": "k", "action": "resolve", "source": "two words"},
        ["body", "resolve", "source"],
    ),
    "event with long dedup_key": (
        EVENTS,
        {"dedup_key": "k" * 256, "action": "resolve"},
        ["body", "resolve", "dedup_key"],
    ),
    "event with long severity": (
        EVENTS,
        {"dedup_key": "k", "action": "trigger", "description": "x", "severity": "s" * 33},
        ["body", "trigger", "severity"],
    ),
}


@pytest.mark.parametrize(("path", "body", "loc"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_body_not_in_format_gets_422_naming_the_field(
    client: httpx.AsyncClient, path: str, body: Any, loc: list[str | int]
) -> None:
    response = await client.post(path, json=body)

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [loc]
    assert await total(client) == 0


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"dedup_key": "k"}, "'action'"),
        ({"dedup_key": "k", "action": "acknowledge"}, "'trigger', 'resolve'"),
    ],
)
async def test_event_without_known_action_gets_422_naming_action(
    client: httpx.AsyncClient, body: dict[str, Any], named: str
) -> None:
    response = await client.post(EVENTS, json=body)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body"]
    assert named in error["msg"]


@pytest.mark.parametrize("path", [ALERTMANAGER, GRAFANA, EVENTS])
@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b"<\xff!"], ids=["empty", "cut", "list", "bytes"]
)
async def test_body_that_is_no_object_gets_422(
    client: httpx.AsyncClient, path: str, content: bytes
) -> None:
    response = await client.post(
        path, content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"]


@pytest.mark.parametrize("path", [ALERTMANAGER, GRAFANA, EVENTS])
async def test_body_over_a_mebibyte_gets_413(client: httpx.AsyncClient, path: str) -> None:
    body = alertmanager_group([f"host-{n}.example.org:9100" for n in range(5000)])
    content = json.dumps(body).encode()
    assert len(content) > 1024 * 1024

    announced = await client.post(
        path, content=content, headers={"Content-Type": "application/json"}
    )

    async def chunks() -> Any:
        for start in range(0, len(content), 64 * 1024):
            yield content[start : start + 64 * 1024]

    streamed = await client.post(
        path, content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert announced.status_code == 413
    assert streamed.status_code == 413
    assert await total(client) == 0


class TestWithKey:
    KEY = "s3cret-alerts"

    @pytest.fixture
    def api_key(self) -> SecretStr | None:
        return SecretStr(self.KEY)

    @pytest.mark.parametrize("path", [ALERTMANAGER, GRAFANA, EVENTS])
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic czNjcmV0LWFsZXJ0cw=="},
            {"Authorization": f"Bearer {KEY}x"},
            {"X-API-Key": "wrong", "Authorization": "Bearer"},
        ],
        ids=["none", "wrong", "basic", "longer", "empty-bearer"],
    )
    async def test_alerts_without_the_key_get_401_before_the_body_is_judged(
        self, client: httpx.AsyncClient, path: str, headers: dict[str, str]
    ) -> None:
        response = await client.post(path, json={"not": "a body"}, headers=headers)

        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "APIKey"

    @pytest.mark.parametrize(
        "headers",
        [
            {"Authorization": f"Bearer {KEY}"},
            {"Authorization": f"bearer {KEY}"},
            {"X-API-Key": KEY},
            {"X-API-Key": "wrong", "Authorization": f"Bearer {KEY}"},
        ],
        ids=["bearer", "lower-case-scheme", "x-api-key", "either"],
    )
    async def test_alerts_accept_the_key_as_bearer_token_or_header(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        response = await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE, headers=headers)

        assert response.status_code in {200, 201}

    async def test_incidents_accept_the_key_as_bearer_token(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/incidents", headers={"Authorization": f"Bearer {self.KEY}"})

        assert response.status_code == 200


async def test_alert_whose_incident_keeps_changing_gets_503_to_retry(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if other instances won the race for the key every time it was tried.
    monkeypatch.setattr(storage.alerts, "MAX_ATTEMPTS", 0)

    response = await client.post(ALERTMANAGER, json=ALERTMANAGER_EXAMPLE)

    assert response.status_code == 503
    assert response.json() == {"detail": "The alert's incident kept changing; try again later."}
    assert int(response.headers["Retry-After"]) > 0
