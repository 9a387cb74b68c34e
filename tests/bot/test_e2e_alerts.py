"""End to end: alerts posted to the HTTP API reach the chat through the outbox. One card
per problem, its edits for repeats folded to one per interval, and a resolve that edits
the card at once and replies to it; many resolves at once are one message."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from aiogram.types import Chat

from api.app import create_app
from storage.alerts import AlertStore
from storage.store import IncidentStore
from tests.alert_samples import alertmanager_group
from tests.bot.conftest import BotLauncher, all_delivered
from tests.telegram_stub import TelegramStub

NOTIFY_CHAT_ID = -1_009_000_000_077
EDIT_INTERVAL = 0.8
"""Seconds between two edits of a card for repeats (a minute in service)."""
HOSTS = ["db-1:9100", "db-2:9100", "db-3:9100"]


@pytest.fixture
def notify_chat(stub: TelegramStub) -> Chat:
    return stub.supergroup("Incidents", chat_id=NOTIFY_CHAT_ID)


@pytest.fixture
async def http(store: IncidentStore) -> AsyncIterator[httpx.AsyncClient]:
    """The real HTTP API announcing in NOTIFY_CHAT_ID, card edits folded per EDIT_INTERVAL
    and every trigger counted as a repeat."""
    alerts = AlertStore(
        store, edit_interval=timedelta(seconds=EDIT_INTERVAL), repeat_min_gap=timedelta(0)
    )
    app = create_app(store, api_key=None, announce_chat_id=NOTIFY_CHAT_ID, alert_store=alerts)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_repeats_edit_the_card_at_most_once_per_interval_and_resolve_replies(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    http: httpx.AsyncClient,
    notify_chat: Chat,
) -> None:
    async with launch_bot(notify_chat_id=NOTIFY_CHAT_ID):
        await http.post("/alerts/alertmanager", json=alertmanager_group(HOSTS[:2]))
        card = await stub.wait_for_message(notify_chat)
        first_text = card.text
        await all_delivered(store)
        loop = asyncio.get_running_loop()
        repeating_until = loop.time() + 2.5 * EDIT_INTERVAL
        repeats = 0
        while loop.time() < repeating_until:
            await http.post("/alerts/alertmanager", json=alertmanager_group(HOSTS))
            repeats += 1
            await asyncio.sleep(0.05)
        await stub.wait_for(
            lambda: f"Repeats: {repeats}" in (card.text or ""),
            timeout=3 * EDIT_INTERVAL,
            what="the card to show every repeat",
        )
        resolved = await http.post(
            "/alerts/alertmanager", json=alertmanager_group(HOSTS, status="resolved")
        )
        notice = await stub.wait_for_message(notify_chat, reply_to=card.message_id)
        await stub.wait_for(lambda: "resolved" in (card.text or ""), what="the resolved card")
        await all_delivered(store)

    assert resolved.json()["outcome"] == "resolved"
    assert (first_text or "").startswith(
        "🔴 Incident #1 · open · alertmanager\nDiskFull\n2 firing: db-1:9100, db-2:9100"
    )
    assert "Severity: warning" in (first_text or "")
    assert notice.text == "✅ Resolved by Alertmanager"
    final = card.text or ""
    assert final.startswith("🟢 Incident #1 · resolved · alertmanager\nDiskFull\n3 firing")
    assert f"Repeats: {repeats} · last seen" in final
    assert final.endswith("Reported by Alertmanager\nStatus set by Alertmanager")
    assert len(stub.sent_messages(notify_chat)) == 2  # the card and the notice
    edits = [
        call.at
        for call in stub.calls("editMessageText")
        if call.params.get("message_id") == str(card.message_id) and call.ok
    ]
    assert len(edits) >= 2
    repeat_edits = edits[:-1]  # the last one shows the resolve: not held back
    gaps = [later - earlier for earlier, later in itertools.pairwise(repeat_edits)]
    assert all(gap >= EDIT_INTERVAL * 0.95 for gap in gaps), gaps
    assert card.sent_at + EDIT_INTERVAL * 0.95 <= edits[0]
    assert len(repeat_edits) <= 4, "no more than one edit per interval for repeats"


async def test_resolve_before_the_card_went_out_replies_to_the_card(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    http: httpx.AsyncClient,
    notify_chat: Chat,
) -> None:
    await http.post("/alerts/alertmanager", json=alertmanager_group(HOSTS))
    await http.post("/alerts/alertmanager", json=alertmanager_group(HOSTS, status="resolved"))

    async with launch_bot(notify_chat_id=NOTIFY_CHAT_ID):
        card = await stub.wait_for_message(notify_chat)
        notice = await stub.wait_for_message(notify_chat, after=card.message_id)
        await all_delivered(store)

    assert (card.text or "").startswith("🟢 Incident #1 · resolved · alertmanager")
    assert not card.edited
    assert (notice.text, notice.reply_to_message_id) == (
        "✅ Resolved by Alertmanager",
        card.message_id,
    )


async def test_many_resolves_at_once_are_one_message(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    http: httpx.AsyncClient,
    notify_chat: Chat,
) -> None:
    names = [f"Check{n}" for n in range(1, 8)]
    async with launch_bot(notify_chat_id=NOTIFY_CHAT_ID):
        for name in names[:3]:
            await http.post("/alerts/alertmanager", json=alertmanager_group(HOSTS, alertname=name))
            await stub.wait_for_message(notify_chat, contains=name)
        await all_delivered(store)
    for name in names[3:]:  # while the bot is away: its cards fold into a summary
        await http.post("/alerts/alertmanager", json=alertmanager_group(HOSTS, alertname=name))
    for name in names:
        await http.post(
            "/alerts/alertmanager",
            json=alertmanager_group(HOSTS, alertname=name, status="resolved"),
        )

    async with launch_bot(notify_chat_id=NOTIFY_CHAT_ID):
        summary = await stub.wait_for_message(notify_chat, contains="Resolved 7")
        await all_delivered(store)

    assert summary.text == "✅ Resolved 7 incidents: #1\u2013#7."
    assert summary.reply_to_message_id is None
    texts = [m.text or "" for m in stub.sent_messages(notify_chat)]
    assert not any(text.startswith("✅ Resolved by") for text in texts)
    assert (await store.list(status=None)).total == 7
