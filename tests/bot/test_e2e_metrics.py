"""End to end: the bot's Telegram calls (429s included), the updates it handled and the
statuses changed in the chat show up in GET /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import SendMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from bot.metrics import call_outcome
from bot.pipeline import UpdatePipeline
from metrics import Metrics
from storage.database import create_session_factory
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher, all_delivered, all_handled
from tests.prometheus import scrape
from tests.telegram_stub import FaultKind, TelegramStub

pytestmark = pytest.mark.all_engines


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def store(engine: AsyncEngine, delivery_queued: asyncio.Event, metrics: Metrics) -> IncidentStore:
    """The store as main.py wires it with the bot and metrics on."""
    return IncidentStore(
        create_session_factory(engine),
        on_delivery_queued=delivery_queued.set,
        on_status_changed=metrics.status_changed,
    )


@pytest.fixture
async def client(store: IncidentStore, metrics: Metrics) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store, api_key=None, metrics=metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_calls_updates_and_a_resolve_by_button_are_counted(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    metrics: Metrics,
    client: httpx.AsyncClient,
    pipeline: UpdatePipeline,
) -> None:
    chat, alice = stub.supergroup(), stub.user("Alice")
    # The card's first try is refused with a 429, the next with a 502; the third arrives.
    stub.fail_next(1, FaultKind.TOO_MANY_REQUESTS, methods={"sendMessage"}, retry_after=1)
    stub.fail_next(1, FaultKind.BAD_GATEWAY, methods={"sendMessage"})

    async with launch_bot(metrics=metrics):
        report = await stub.send_user_message(chat, alice, "[monitoring] Scooter #42 down")
        card = await stub.wait_for_message(chat, reply_to=report, timeout=10)
        query = await stub.press_button(chat, alice, card, text="✅ Resolved")
        await stub.wait_for_answer(query)
        await all_handled(stub, pipeline)
        await all_delivered(store)
        scraped = await scrape(client)

    calls = "incident_bot_telegram_calls_total"
    assert scraped.value(calls, method="sendMessage", outcome="429") == 1
    assert scraped.value(calls, method="sendMessage", outcome="server_error") == 1
    assert scraped.value(calls, method="sendMessage", outcome="ok") == 1
    assert scraped.value(calls, method="answerCallbackQuery", outcome="ok") == 1
    assert scraped.value(calls, method="editMessageText", outcome="ok") == 1
    assert scraped.value(calls, method="getUpdates", outcome="ok") >= 1
    assert scraped.value("incident_bot_updates_handled_total", type="message") == 1
    assert scraped.value("incident_bot_updates_handled_total", type="callback_query") == 1
    assert scraped.value("incident_bot_time_to_resolve_seconds_count") == 1
    assert scraped.value("incident_bot_incidents", status="resolved", source="monitoring") == 1
    assert scraped.value("incident_bot_outbox_deliveries", state="sent") == 2


def test_failed_calls_are_counted_by_kind() -> None:
    method = SendMessage(chat_id=1, text="hi")

    assert call_outcome(TelegramRetryAfter(method, "Too Many Requests", 3)) == "429"
    assert call_outcome(TelegramBadRequest(method, "chat not found")) == "bad_request"
    assert call_outcome(TelegramForbiddenError(method, "bot was kicked")) == "forbidden"
    assert call_outcome(TelegramServerError(method, "Bad Gateway")) == "server_error"
    assert call_outcome(TelegramNetworkError(method, "timeout")) == "network_error"
    assert call_outcome(ValueError("unexpected")) == "other"
