"""The outbox: written with the change that caused it, handed out in order, recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_session_factory
from storage.models import DeliveryKind, utcnow
from storage.outbox import Outbox
from storage.rules import Status
from storage.store import CardRequest, IncidentStore, NewIncident

GROUP = -100500


@pytest.fixture
def outbox(engine: AsyncEngine) -> Outbox:
    return Outbox(create_session_factory(engine))


@pytest.fixture
def wakeups() -> list[str]:
    return []


@pytest.fixture
def store(engine: AsyncEngine, wakeups: list[str], fast_paths: bool) -> IncidentStore:
    return IncidentStore(
        create_session_factory(engine),
        on_delivery_queued=lambda: wakeups.append("queued"),
        fast_paths=fast_paths,
    )


async def _reported(store: IncidentStore, message_id: int = 7, locale: str = "ru") -> int:
    created = await store.create(
        NewIncident("Самокат #42 не отвечает", chat_id=GROUP, message_id=message_id),
        card=CardRequest(GROUP, reply_to_message_id=message_id, locale=locale),
    )
    return created.incident.id


async def test_create_with_card_queues_one_card(
    store: IncidentStore, outbox: Outbox, wakeups: list[str]
) -> None:
    incident_id = await _reported(store)

    due = await outbox.due()

    assert len(due) == 1
    delivery = due[0].delivery
    assert (delivery.kind, delivery.incident_id, delivery.chat_id) == (
        DeliveryKind.CARD,
        incident_id,
        GROUP,
    )
    assert (delivery.reply_to_message_id, delivery.locale) == (7, "ru")
    assert due[0].incident.description == "Самокат #42 не отвечает"
    assert wakeups == ["queued"]


async def test_create_redelivered_message_queues_nothing_more(
    store: IncidentStore, outbox: Outbox
) -> None:
    await _reported(store)
    await _reported(store)

    assert await outbox.pending_count() == 1


async def test_create_without_card_queues_nothing(
    store: IncidentStore, outbox: Outbox, wakeups: list[str]
) -> None:
    await store.create(NewIncident("from the API, nobody to tell"))

    assert await outbox.due() == []
    assert wakeups == []


async def test_create_whose_outbox_row_fails_stores_no_incident(
    store: IncidentStore, outbox: Outbox
) -> None:
    with pytest.raises(IntegrityError):
        await store.create(NewIncident("x"), card=CardRequest(chat_id=None))  # type: ignore[arg-type]

    assert (await store.list()).total == 0
    assert await outbox.pending_count() == 0


async def test_mark_sent_remembers_card_and_status_change_queues_edit(
    store: IncidentStore, outbox: Outbox
) -> None:
    incident_id = await _reported(store)
    card = (await outbox.due())[0].delivery
    await outbox.mark_sent([card.id], card=(incident_id, GROUP, 8))

    await store.change_status(incident_id, Status.IN_PROGRESS, changed_by="Oleg")
    await store.change_status(incident_id, Status.IN_PROGRESS)  # a no-op queues nothing

    due = await outbox.due()
    assert [pending.delivery.kind for pending in due] == [DeliveryKind.CARD_EDIT]
    edit = due[0]
    assert (edit.delivery.chat_id, edit.delivery.locale) == (GROUP, "ru")
    assert (edit.incident.card_chat_id, edit.incident.card_message_id) == (GROUP, 8)
    assert (edit.incident.status, edit.incident.updated_by) == (Status.IN_PROGRESS, "Oleg")


async def test_status_change_before_card_is_sent_queues_no_edit(
    store: IncidentStore, outbox: Outbox
) -> None:
    incident_id = await _reported(store)

    await store.change_status(incident_id, Status.RESOLVED)

    due = await outbox.due()
    assert [pending.delivery.kind for pending in due] == [DeliveryKind.CARD]
    assert due[0].incident.status == Status.RESOLVED


async def test_description_edit_queues_card_edit(store: IncidentStore, outbox: Outbox) -> None:
    incident_id = await _reported(store)
    await outbox.mark_sent([(await outbox.due())[0].delivery.id], card=(incident_id, GROUP, 8))

    await store.update_description(GROUP, 7, "Самокат #42 снова на связи?")

    due = await outbox.due()
    assert [pending.delivery.kind for pending in due] == [DeliveryKind.CARD_EDIT]
    assert due[0].incident.description == "Самокат #42 снова на связи?"


async def test_postponed_delivery_waits_its_turn(store: IncidentStore, outbox: Outbox) -> None:
    first = await _reported(store, message_id=1)
    await _reported(store, message_id=2)
    [early, late] = await outbox.due()
    until = utcnow() + timedelta(minutes=5)

    await outbox.postpone([early.delivery.id], until, "Too Many Requests: retry after 300")

    due = await outbox.due()
    assert [pending.delivery.id for pending in due] == [late.delivery.id]
    assert await outbox.next_due_at() == late.delivery.not_before
    await outbox.mark_sent([late.delivery.id])
    assert await outbox.next_due_at() == until
    assert first == early.incident.id


async def test_failed_and_folded_deliveries_leave_the_queue(
    store: IncidentStore, outbox: Outbox
) -> None:
    for message_id in (1, 2, 3):
        await _reported(store, message_id=message_id)
    [one, two, three] = await outbox.due()

    await outbox.mark_failed([one.delivery.id], "Forbidden: bot was kicked from the group chat")
    await outbox.mark_folded([two.delivery.id, three.delivery.id])

    assert await outbox.due() == []
    assert await outbox.pending_count() == 0
    assert await outbox.next_due_at() is None


async def test_move_chat_redirects_pending_and_is_remembered(
    store: IncidentStore, outbox: Outbox
) -> None:
    await _reported(store)

    await outbox.move_chat(GROUP, -1001234)
    await outbox.move_chat(GROUP, -1001234)

    [pending] = await outbox.due()
    assert (pending.delivery.chat_id, pending.delivery.reply_to_message_id) == (-1001234, None)
    assert await outbox.chat_migrations() == {GROUP: -1001234}
