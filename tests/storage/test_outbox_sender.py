"""What the bot's sender needs from the outbox beyond the queue itself: skipping chats it
cannot send to now, a card sent while its incident changed, and claims that keep two
senders (two instances) from ever both sending one row."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_session_factory
from storage.models import DeliveryKind, utcnow
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


HOLD = timedelta(minutes=3)


async def _claim_one_by_one(outbox: Outbox, ids: list[int]) -> set[int]:
    """Claim the rows one at a time, as a sender does message by message."""
    claimed: set[int] = set()
    for delivery_id in ids:
        claimed |= await outbox.claim([delivery_id], hold=HOLD)
    return claimed


async def test_two_senders_claiming_the_same_rows_get_disjoint_rows(
    engine: AsyncEngine, store: IncidentStore
) -> None:
    for message_id in range(1, 41):
        await _reported(store, GROUP, message_id)
    # Two instances, each with its own sessions and writers (as two processes have).
    first = Outbox(create_session_factory(engine)).claiming_as("instance-a")
    second = Outbox(create_session_factory(engine)).claiming_as("instance-b")
    ids = [pending.delivery.id for pending in await first.due()]

    # Both race over every row: one front to back, the other back to front, then both
    # over all of them at once.
    a, b = await asyncio.gather(
        _claim_one_by_one(first, ids), _claim_one_by_one(second, ids[::-1])
    )
    a_again, b_again = await asyncio.gather(
        first.claim(ids, hold=HOLD), second.claim(ids, hold=HOLD)
    )

    assert a.isdisjoint(b)
    assert a | b == set(ids)
    assert (a_again, b_again) == (a, b)  # each claims again its own rows, and only those
    assert {pending.delivery.id for pending in await first.due()} == a
    assert {pending.delivery.id for pending in await second.due()} == b
    assert await Outbox(create_session_factory(engine)).due() == []


async def test_expired_claim_is_taken_again(engine: AsyncEngine, store: IncidentStore) -> None:
    await _reported(store)
    dead = Outbox(create_session_factory(engine)).claiming_as("instance-a")
    taking_over = Outbox(create_session_factory(engine)).claiming_as("instance-b")
    [pending] = await dead.due()
    row = pending.delivery.id

    assert await dead.claim([row], hold=timedelta(seconds=0.3)) == {row}
    assert await taking_over.claim([row], hold=HOLD) == set()
    assert await taking_over.due() == []
    expires_at = await taking_over.next_due_at()
    assert expires_at is not None and expires_at > pending.delivery.not_before
    await asyncio.sleep((expires_at - utcnow()).total_seconds() + 0.01)

    assert [pending.delivery.id for pending in await taking_over.due()] == [row]
    assert await taking_over.claim([row], hold=HOLD) == {row}
    assert await dead.claim([row], hold=HOLD) == set()


async def test_postponed_rows_are_handed_back(engine: AsyncEngine, store: IncidentStore) -> None:
    await _reported(store)
    first = Outbox(create_session_factory(engine)).claiming_as("instance-a")
    second = Outbox(create_session_factory(engine)).claiming_as("instance-b")
    [pending] = await first.due()
    row = pending.delivery.id
    await first.claim([row], hold=HOLD)

    await second.postpone([row], utcnow(), "not its row")  # held by another: left alone
    assert await second.due() == []
    await first.postpone([row], utcnow(), "Bad Gateway")

    assert [pending.delivery.id for pending in await second.due()] == [row]
    assert await second.claim([row], hold=HOLD) == {row}


async def test_finished_rows_are_not_claimed(store: IncidentStore, outbox: Outbox) -> None:
    await _reported(store)
    [pending] = await outbox.due()
    row = pending.delivery.id
    await outbox.claim([row], hold=HOLD)
    await outbox.mark_sent([row])

    assert await outbox.claim([row], hold=HOLD) == set()
    assert await outbox.next_due_at() is None
