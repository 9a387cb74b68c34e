"""Webhook mode's door: the real FastAPI app with the webhook route and the real dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from api.app import create_app
from bot.factory import create_bot, create_dispatcher
from bot.webhook import SECRET_HEADER, create_webhook_router
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher, make_settings
from tests.service import START_TIMEOUT, ServiceRunner, free_port
from tests.telegram_stub import TelegramStub

WEBHOOK_URL = "https://bot.example.com/telegram/webhook"
SECRET = "s3cret_token-42"
GROUP = {"id": -1_009_000_000_042, "type": "supergroup", "title": "On-call"}


def report_update(update_id: int, message_id: int, text: str) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "date": 1_795_000_000,
            "chat": GROUP,
            "from": {"id": 7, "is_bot": False, "first_name": "Alice", "language_code": "en"},
            "text": text,
        },
    }


@pytest.fixture
async def client(
    stub: TelegramStub, store: IncidentStore, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(stub, database_url, webhook_url=WEBHOOK_URL, webhook_secret=SECRET)
    assert settings.webhook_path is not None and settings.webhook_secret is not None
    bot = create_bot(settings)
    app = create_app(store, api_key=None)
    app.include_router(
        create_webhook_router(
            create_dispatcher(store, settings),
            bot,
            path=settings.webhook_path,
            secret=settings.webhook_secret,
        )
    )
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await bot.session.close()


async def test_webhook_with_right_secret_is_processed_once(
    client: httpx.AsyncClient, store: IncidentStore
) -> None:
    update = report_update(1, 5, "[monitoring] Самокат #42 не отвечает")

    first = await client.post("/telegram/webhook", json=update, headers={SECRET_HEADER: SECRET})
    again = await client.post("/telegram/webhook", json=update, headers={SECRET_HEADER: SECRET})

    assert (first.status_code, again.status_code) == (200, 200)
    page = await store.list()
    assert page.total == 1
    assert (page.items[0].source, page.items[0].description) == (
        "monitoring",
        "Самокат #42 не отвечает",
    )


@pytest.mark.parametrize("headers", [{}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: ""}])
async def test_webhook_without_right_secret_is_refused(
    client: httpx.AsyncClient, store: IncidentStore, headers: dict[str, str]
) -> None:
    update = report_update(1, 5, "[monitoring] Самокат #42 не отвечает")

    response = await client.post("/telegram/webhook", json=update, headers=headers)

    assert response.status_code == 401
    assert SECRET_HEADER in response.json()["detail"]
    assert (await store.list()).total == 0


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"update_id": "x"}'])
async def test_webhook_body_that_is_not_an_update_gets_400(
    client: httpx.AsyncClient, store: IncidentStore, body: bytes
) -> None:
    response = await client.post(
        "/telegram/webhook", content=body, headers={SECRET_HEADER: SECRET}
    )

    assert response.status_code == 400
    assert (await store.list()).total == 0


async def test_webhook_route_is_not_in_the_public_api_document(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()

    assert "/telegram/webhook" not in document["paths"]


async def test_main_in_webhook_mode_registers_and_receives_updates(
    stub: TelegramStub, services: ServiceRunner, store: IncidentStore
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    chat, alice = stub.supergroup("On-call"), stub.user("Alice")
    service = services.start(
        BOT_TOKEN=stub.token,
        TELEGRAM_API_URL=stub.base_url,
        HTTP_PORT=str(port),
        WEBHOOK_URL=url,
        WEBHOOK_SECRET=SECRET,
    )
    try:
        await stub.wait_for(lambda: stub.webhook.get("url") == url, timeout=START_TIMEOUT)
        report = await stub.send_user_message(chat, alice, "[monitoring] Самокат #42 не отвечает")
        card = await stub.wait_for_message(chat, reply_to=report, timeout=START_TIMEOUT)
    finally:
        returncode = await service.stop()

    assert returncode == 0, service.log()
    assert stub.webhook["secret_token"] == SECRET
    assert not stub.calls("getUpdates")
    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring")
    assert sum(delivery.ok for delivery in stub.webhook_deliveries) == 1
    assert (await store.list()).total == 1


async def test_long_polling_after_webhook_mode_removes_the_webhook(
    stub: TelegramStub, launch_bot: BotLauncher
) -> None:
    old_mode = Bot(
        stub.token, session=AiohttpSession(api=TelegramAPIServer.from_base(stub.base_url))
    )
    async with old_mode.context():
        await old_mode.set_webhook("https://bot.example.com/telegram/webhook")
    chat, alice = stub.supergroup("On-call"), stub.user("Alice")
    report = await stub.send_user_message(chat, alice, "[monitoring] Самокат #42 не отвечает")

    async with launch_bot():
        card = await stub.wait_for_message(chat, reply_to=report)

    assert stub.webhook == {}
    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring")
