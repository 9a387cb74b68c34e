"""GET /incidents: newest first, filters, pagination and X-Total-Count."""

from __future__ import annotations

import httpx
import pytest

from storage.rules import Status
from tests.api.conftest import MakeIncident

pytestmark = pytest.mark.all_engines


async def test_list_returns_empty_page_when_no_incidents(client: httpx.AsyncClient) -> None:
    response = await client.get("/incidents")

    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["X-Total-Count"] == "0"


async def test_list_returns_newest_first(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    ids = [(await make_incident(f"incident {n}")).id for n in range(3)]

    response = await client.get("/incidents")

    assert [incident["id"] for incident in response.json()] == ids[::-1]
    assert response.headers["X-Total-Count"] == "3"


async def test_list_pages_through_all_incidents_without_overlap(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    ids = [(await make_incident(f"incident {n}")).id for n in range(7)]

    pages = [
        await client.get("/incidents", params={"limit": 3, "offset": offset})
        for offset in (0, 3, 6, 9)
    ]

    assert [len(page.json()) for page in pages] == [3, 3, 1, 0]
    assert [incident["id"] for page in pages for incident in page.json()] == ids[::-1]
    assert {page.headers["X-Total-Count"] for page in pages} == {"7"}


async def test_list_pages_by_key_with_before(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    ids = [(await make_incident(f"incident {n}")).id for n in range(7)]
    await make_incident("resolved", status=Status.RESOLVED)

    pages = []
    params: dict[str, str | int] = {"limit": 3, "status": "open"}
    while True:
        page = await client.get("/incidents", params=params)
        pages.append(page)
        if not page.json():
            break
        params["before"] = page.json()[-1]["id"]

    assert [len(page.json()) for page in pages] == [3, 3, 1, 0]
    assert [incident["id"] for page in pages for incident in page.json()] == ids[::-1]
    assert {page.headers["X-Total-Count"] for page in pages} == {"7"}


async def test_list_defaults_to_50_and_allows_up_to_200(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    for n in range(201):
        await make_incident(f"incident {n}")

    default = await client.get("/incidents")
    largest = await client.get("/incidents", params={"limit": 200})

    assert len(default.json()) == 50
    assert len(largest.json()) == 200
    assert largest.headers["X-Total-Count"] == "201"


async def test_list_filters_by_status_and_source(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    wanted = await make_incident("a", source="zabbix", status=Status.RESOLVED)
    await make_incident("b", source="zabbix", status=Status.OPEN)
    await make_incident("c", source="operator", status=Status.RESOLVED)

    by_status = await client.get("/incidents", params={"status": "resolved"})
    by_source = await client.get("/incidents", params={"source": "ZABBIX"})
    by_both = await client.get("/incidents", params={"status": "resolved", "source": "zabbix"})

    assert by_status.headers["X-Total-Count"] == "2"
    assert {incident["status"] for incident in by_status.json()} == {"resolved"}
    assert by_source.headers["X-Total-Count"] == "2"
    assert {incident["source"] for incident in by_source.json()} == {"zabbix"}
    assert [incident["id"] for incident in by_both.json()] == [wanted.id]
    assert by_both.headers["X-Total-Count"] == "1"


async def test_list_counts_all_matches_when_page_is_past_the_end(
    client: httpx.AsyncClient, make_incident: MakeIncident
) -> None:
    await make_incident()

    response = await client.get("/incidents", params={"offset": 2**63 - 1})

    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["X-Total-Count"] == "1"


async def test_list_rejects_unknown_status_naming_valid_ones(client: httpx.AsyncClient) -> None:
    response = await client.get("/incidents", params={"status": "done"})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "status"]
    for status in Status:
        assert f"'{status.value}'" in error["msg"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 2**63}, "offset"),
        ({"offset": 10**30}, "offset"),
        ({"before": 0}, "before"),
        ({"before": 2**63}, "before"),
        ({"before": "last"}, "before"),
        ({"source": "two words"}, "source"),
        ({"source": "s" * 33}, "source"),
    ],
)
async def test_list_rejects_invalid_query_with_422(
    client: httpx.AsyncClient, params: dict[str, str | int], field: str
) -> None:
    response = await client.get("/incidents", params=params)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", field]
