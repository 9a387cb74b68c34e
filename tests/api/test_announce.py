"""NOTIFY_CHAT_ID through the real app: a created incident's card is queued for the chat in
the same transaction; a retry queues nothing more; a status change edits the card."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from storage.models import DeliveryKind
from storage.store import IncidentStore

NOTIFY_CHAT_ID = -1_009_000_000_077
REPORT = {"description": "Disk full on db-1", "source": "zabbix"}


@pytest.fixture
def app(store: IncidentStore) -> FastAPI:
    return create_app(store, api_key=None, announce_chat_id=NOTIFY_CHAT_ID)


async def test_create_queues_card_for_notify_chat(
    client: httpx.AsyncClient, store: IncidentStore
) -> None:
    response = await client.post("/incidents", json=REPORT)

    assert response.status_code == 201
    [pending] = await store.outbox.due()
    delivery = pending.delivery
    assert (delivery.kind, delivery.chat_id, delivery.incident_id) == (
        DeliveryKind.CARD,
        NOTIFY_CHAT_ID,
        response.json()["id"],
    )
    assert (delivery.reply_to_message_id, delivery.message_thread_id) == (None, None)


async def test_create_retried_with_same_key_queues_one_card(
    client: httpx.AsyncClient, store: IncidentStore
) -> None:
    headers = {"Idempotency-Key": "zabbix-event-81422"}

    first = await client.post("/incidents", json=REPORT, headers=headers)
    again = await client.post("/incidents", json=REPORT, headers=headers)

    assert (first.status_code, again.status_code) == (201, 200)
    assert await store.outbox.pending_count() == 1


async def test_create_refused_queues_nothing(
    client: httpx.AsyncClient, store: IncidentStore
) -> None:
    response = await client.post("/incidents", json={"description": "", "source": "zabbix"})

    assert response.status_code == 422
    assert await store.outbox.pending_count() == 0


async def test_status_change_queues_edit_of_announced_card(
    client: httpx.AsyncClient, store: IncidentStore
) -> None:
    incident_id = (await client.post("/incidents", json=REPORT)).json()["id"]
    [card] = await store.outbox.due()
    await store.outbox.mark_sent([card.delivery.id], card=(incident_id, NOTIFY_CHAT_ID, 5))

    response = await client.patch(f"/incidents/{incident_id}/status", json={"status": "closed"})

    assert response.status_code == 200
    [edit] = await store.outbox.due()
    assert (edit.delivery.kind, edit.delivery.chat_id) == (DeliveryKind.CARD_EDIT, NOTIFY_CHAT_ID)
    assert (edit.incident.card_chat_id, edit.incident.card_message_id) == (NOTIFY_CHAT_ID, 5)


async def test_create_without_notify_chat_queues_nothing(store: IncidentStore) -> None:
    app = create_app(store, api_key=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/incidents", json=REPORT)

    assert response.status_code == 201
    assert await store.outbox.pending_count() == 0
