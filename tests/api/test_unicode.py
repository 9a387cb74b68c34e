"""Descriptions and sources in any script come back exactly as they were sent."""
# ruff: noqa: RUF001 - text in other scripts is that text, not look-alike Latin

from __future__ import annotations

import json

import httpx
import pytest

from storage.rules import DESCRIPTION_MAX_LENGTH

pytestmark = pytest.mark.all_engines

TEXTS = {
    "cyrillic": "Склад: не отвечает сервер 1С, ошибка «Нет связи»",
    "emoji": "DB down 🔥🚒 👨‍👩‍👧‍👦 🇺🇦 ❤️ ok",
    "cjk": "数据库连接失败：サーバーが応答しません 서버 오류",
    "combining": "Cafe\u0301 vs Café: e\u0301 is not normalized",
    "rtl": "עברית العربية mixed with latin",
    "symbols": "quotes \" ' \\ <b>&amp;</b> tab\tin the middle",
}


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
async def test_create_round_trips_unicode_description_byte_for_byte(
    client: httpx.AsyncClient, text: str
) -> None:
    created = await client.post("/incidents", json={"description": text})
    fetched = await client.get(created.headers["Location"])
    [listed] = (await client.get("/incidents")).json()

    assert created.status_code == 201
    for description in (
        created.json()["description"],
        fetched.json()["description"],
        listed["description"],
    ):
        assert description.encode("utf-8") == text.encode("utf-8")


async def test_create_sends_unicode_as_utf8_not_escapes(client: httpx.AsyncClient) -> None:
    text = TEXTS["cyrillic"] + " " + TEXTS["cjk"] + " 🔥"

    response = await client.post("/incidents", json={"description": text})

    assert response.headers["Content-Type"] == "application/json"
    assert text.encode("utf-8") in response.content


async def test_create_round_trips_multiline_description(client: httpx.AsyncClient) -> None:
    text = "Первая строка\nвторая строка 🔥\r\n\tтретья"

    response = await client.post("/incidents", json={"description": text})

    assert (await client.get(response.headers["Location"])).json()["description"] == text


async def test_create_counts_description_limit_in_characters_not_bytes(
    client: httpx.AsyncClient,
) -> None:
    at_limit = await client.post("/incidents", json={"description": "🔥" * DESCRIPTION_MAX_LENGTH})
    over_limit = await client.post(
        "/incidents", json={"description": "🔥" * (DESCRIPTION_MAX_LENGTH + 1)}
    )

    assert at_limit.status_code == 201
    assert at_limit.json()["description"] == "🔥" * DESCRIPTION_MAX_LENGTH
    assert over_limit.status_code == 422


async def test_create_accepts_longest_description_fully_json_escaped(
    client: httpx.AsyncClient,
) -> None:
    # Each emoji escaped as a surrogate pair ("\ud83d\udd25") is 12 bytes of JSON.
    description = "🔥" * DESCRIPTION_MAX_LENGTH
    content = json.dumps({"description": description}, ensure_ascii=True).encode("ascii")

    response = await client.post(
        "/incidents", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 201
    assert response.json()["description"] == description


@pytest.mark.parametrize(
    ("given", "stored"), [("склад", "склад"), ("СКЛАД", "склад"), ("倉庫", "倉庫")]
)
async def test_create_accepts_sources_in_any_script(
    client: httpx.AsyncClient, given: str, stored: str
) -> None:
    response = await client.post("/incidents", json={"description": "x", "source": given})

    assert response.status_code == 201
    assert response.json()["source"] == stored
    listed = await client.get("/incidents", params={"source": given})
    assert [incident["id"] for incident in listed.json()] == [response.json()["id"]]
