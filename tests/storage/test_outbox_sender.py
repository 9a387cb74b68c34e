"""What the bot's sender needs from the outbox beyond the queue itself: skipping chats it
cannot send to now, and a card sent while its incident changed."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_session_factory
from storage.models import DeliveryKind
from storage.outbox import Outbox
from storage.rules import Status
from storage.store import CardRequest, IncidentStore, NewIncident

GROUP = -100500
OTHER = -100600


@pytest.fixture
def outbox(store: IncidentStore) -> Outbox:
    return store.outbox


async def _reported(
    store: IncidentStore, chat_id: int = GROUP, message_id: int = 7, locale: str | None = "ru"
) -> int:
    created = await store.create(
        NewIncident("Самокат #42 не отвечает", chat_id=chat_id, message_id=message_id),
        card=CardRequest(chat_id, reply_to_message_id=message_id, locale=locale),
    )
    return created.incident.id


async def test_store_outbox_reads_what_the_store_queued(
    engine: AsyncEngine, store: IncidentStore
) -> None:
    await _reported(store)

    assert await store.outbox.pending_count() == 1
    assert await Outbox(create_session_factory(engine)).pending_count() == 1


async def test_due_excluding_busy_chat_hands_out_the_others(
    store: IncidentStore, outbox: Outbox
) -> None:
    for message_id in (1, 2, 3):
        await _reported(store, GROUP, message_id)
    other = await _reported(store, OTHER, 4)

    due = await outbox.due(limit=2, exclude_chat_ids={GROUP})

    assert [pending.incident.id for pending in due] == [other]
    assert len(await outbox.due(limit=2)) == 2
    assert await outbox.next_due_at(exclude_chat_ids={GROUP, OTHER}) is None
    assert await outbox.next_due_at(exclude_chat_ids={GROUP}) == due[0].delivery.not_before


async def test_mark_sent_keeps_incident_updated_at(store: IncidentStore, outbox: Outbox) -> None:
    incident_id = await _reported(store)
    [pending] = await outbox.due()

    await outbox.mark_sent(
        [pending.delivery.id],
        card=(incident_id, GROUP, 8),
        drawn_at=pending.incident.updated_at,
    )

    incident = await store.get(incident_id)
    assert incident.updated_at == pending.incident.updated_at
    assert (incident.card_chat_id, incident.card_message_id) == (GROUP, 8)
    assert await outbox.due() == []


async def test_mark_sent_of_card_drawn_before_a_change_queues_edit(
    store: IncidentStore, outbox: Outbox
) -> None:
    incident_id = await _reported(store, locale="ru")
    [pending] = await outbox.due()
    # While the card is on its way, the incident changes: no card yet, so no edit queued.
    await store.change_status(incident_id, Status.RESOLVED, changed_by="api")
    assert await outbox.pending_count() == 1

    await outbox.mark_sent(
        [pending.delivery.id],
        card=(incident_id, GROUP, 8),
        drawn_at=pending.incident.updated_at,
    )

    [edit] = await outbox.due()
    assert (edit.delivery.kind, edit.delivery.chat_id, edit.delivery.locale) == (
        DeliveryKind.CARD_EDIT,
        GROUP,
        "ru",
    )
    assert edit.incident.status == Status.RESOLVED
