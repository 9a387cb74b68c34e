"""End to end: NOTIFY_CHAT_ID. Incidents created over HTTP are announced in the chat as
cards with buttons, an HTTP status change edits the card, and an outage of Telegram holds
up neither the HTTP API nor, once it is over, the announcements."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiogram.types import Chat

from api.app import create_app
from storage.rules import Status
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher, all_delivered
from tests.bot.test_e2e_delivery import incidents_shown
from tests.telegram_stub import FaultKind, TelegramStub

NOTIFY_CHAT_ID = -1_009_000_000_077
SERVED_CHAT_ID = -1_009_000_000_042


@pytest.fixture
def notify_chat(stub: TelegramStub) -> Chat:
    return stub.supergroup("Incidents", chat_id=NOTIFY_CHAT_ID)


@pytest.fixture
async def http(store: IncidentStore) -> AsyncIterator[httpx.AsyncClient]:
    """The real HTTP API, announcing in NOTIFY_CHAT_ID as main.py wires it."""
    app = create_app(store, api_key=None, announce_chat_id=NOTIFY_CHAT_ID)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_http_incident_is_announced_with_buttons_and_follows_status(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    http: httpx.AsyncClient,
    notify_chat: Chat,
) -> None:
    async with launch_bot(
        notify_chat_id=NOTIFY_CHAT_ID, allowed_chat_ids=frozenset({SERVED_CHAT_ID})
    ):
        created = await http.post(
            "/incidents", json={"description": "Disk full on db-1", "source": "zabbix"}
        )
        card = await stub.wait_for_message(notify_chat)
        announced = (card.text, card.button_texts)
        await all_delivered(store)

        changed = await http.patch("/incidents/1/status", json={"status": "in_progress"})
        await stub.wait_for(lambda: "in progress" in (card.text or ""))

        # The chat is served (ALLOWED_CHAT_IDS names another one): its buttons work.
        query = await stub.press_button(notify_chat, stub.user("Oleg"), card, text="Resolved")
        answer = await stub.wait_for_answer(query)
        await stub.wait_for(lambda: "resolved" in (card.text or ""))

    assert (created.status_code, changed.status_code) == (201, 200)
    assert announced == (
        "🔴 Incident #1 · open · zabbix\nDisk full on db-1\n\nReported by api",
        ["🛠 In progress", "✅ Resolved", "🔒 Close", "🙋 Take", "🔕 1h", "🔕 4h", "📜 History"],
    )
    assert answer.text == "Incident #1 is now resolved."
    final = stub.message(notify_chat, card.message_id)
    assert final.text == (
        "🟢 Incident #1 · resolved · zabbix\nDisk full on db-1\n\n"
        "Reported by api\nStatus set by Oleg"
    )
    assert len(stub.sent_messages(notify_chat)) == 1
    assert (await store.get(1)).status == Status.RESOLVED


@pytest.mark.parametrize("outage_kind", [FaultKind.BAD_GATEWAY, FaultKind.DISCONNECT])
async def test_telegram_down_holds_up_neither_http_nor_announcements_after(
    outage_kind: FaultKind,
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    http: httpx.AsyncClient,
    notify_chat: Chat,
) -> None:
    async with launch_bot(notify_chat_id=NOTIFY_CHAT_ID):
        outage = stub.inject_fault(outage_kind, duration=1.0)
        statuses = [
            (
                await http.post(
                    "/incidents", json={"description": f"problem {n}", "source": "monitoring"}
                )
            ).status_code
            for n in range(1, 13)
        ]
        during_outage = outage.until is not None and stub.now() < outage.until
        await all_delivered(store, timeout=10)

    assert statuses == [201] * 12
    assert during_outage
    refused = [call for call in stub.calls("sendMessage") if call.fault == outage_kind.value]
    assert refused, "the outage should have refused some sends"
    assert len(refused) <= 8, "retries back off instead of hammering Telegram"
    shown = incidents_shown(stub.sent_messages(notify_chat))
    assert sorted(shown) == list(range(1, 13)), "every incident shown exactly once"
