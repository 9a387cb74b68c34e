"""Reminders decided from the database: due after REMIND_AFTER, again every REMIND_EVERY,
stale after STALE_AFTER, never while snoozed, at most one per incident however late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_session_factory
from storage.models import Delivery, DeliveryKind, EventKind
from storage.reminders import ReminderPolicy
from storage.store import Actor, CardRequest, IncidentStore, NewIncident

CHAT = -100
POLICY = ReminderPolicy.from_seconds(remind_after=60, remind_every=600, stale_after=3600)
OLEG = Actor("Oleg", 42)


async def _carded(store: IncidentStore, message_id: int = 500) -> int:
    """An incident whose card the sender has posted."""
    created = await store.create(NewIncident("Router down", chat_id=CHAT), card=CardRequest(CHAT))
    [pending] = [p for p in await store.outbox.due() if p.incident.id == created.incident.id]
    await store.outbox.mark_sent(
        [pending.delivery.id], card=(created.incident.id, CHAT, message_id)
    )
    return created.incident.id


async def _reminders(engine: AsyncEngine) -> list[Delivery]:
    async with create_session_factory(engine)() as session:
        return list(
            await session.scalars(select(Delivery).where(Delivery.kind == DeliveryKind.REMINDER))
        )


async def test_an_untaken_incident_is_due_after_remind_after_then_every_remind_every(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    incident_id = await _carded(store)
    created = (await store.get(incident_id)).created_at

    assert await store.due_reminders(POLICY, created + timedelta(seconds=30)) == []
    first = created + timedelta(seconds=61)
    assert await store.due_reminders(POLICY, first) == [incident_id]
    assert await store.remind(incident_id, POLICY, first)
    # Once per incident: a second round at the same moment finds nothing due.
    assert not await store.remind(incident_id, POLICY, first)
    assert await store.due_reminders(POLICY, first + timedelta(seconds=599)) == []
    assert await store.due_reminders(POLICY, first + timedelta(seconds=601)) == [incident_id]

    [reminder] = await _reminders(engine)
    assert (reminder.chat_id, reminder.reply_to_message_id) == (CHAT, 500)
    events = (await store.events(incident_id)).items
    assert (events[-1].kind, events[-1].text) == (EventKind.REMINDER_SENT, "untaken")


async def test_a_day_of_downtime_gives_one_reminder_not_a_burst(store: IncidentStore) -> None:
    incident_id = await _carded(store)
    much_later = datetime.now(UTC) + timedelta(days=1)

    assert await store.remind(incident_id, POLICY, much_later)
    assert await store.due_reminders(POLICY, much_later + timedelta(seconds=1)) == []


async def test_taken_snoozed_or_cardless_incidents_are_not_reminded(
    store: IncidentStore,
) -> None:
    taken = await _carded(store, 501)
    snoozed = await _carded(store, 502)
    cardless = (await store.create(NewIncident("No card", chat_id=CHAT))).incident.id
    later = datetime.now(UTC) + timedelta(minutes=5)
    await store.take(taken, OLEG)
    await store.snooze(snoozed, later + timedelta(hours=1), OLEG)

    untaken_only = ReminderPolicy.from_seconds(remind_after=60, remind_every=600, stale_after=None)
    assert await store.due_reminders(untaken_only, later) == []
    after_snooze = later + timedelta(hours=1, seconds=1)
    assert await store.due_reminders(untaken_only, after_snooze) == [snoozed]
    assert cardless not in await store.due_reminders(POLICY, later + timedelta(days=1))


async def test_an_in_progress_incident_with_no_news_nudges_its_owner_again_and_again(
    store: IncidentStore,
) -> None:
    incident_id = await _carded(store)
    await store.take(incident_id, OLEG)
    await store.add_note(incident_id, "still on it", OLEG)
    noted = datetime.now(UTC)

    # Any event is news, a note included: the hour counts from the latest.
    assert await store.due_reminders(POLICY, noted + timedelta(minutes=59)) == []
    quiet = noted + timedelta(minutes=61)
    assert await store.due_reminders(POLICY, quiet) == [incident_id]
    assert await store.remind(incident_id, POLICY, quiet)
    events = (await store.events(incident_id)).items
    assert (events[-1].kind, events[-1].text) == (EventKind.REMINDER_SENT, "stale")
    # The nudge is an event too: the next one is an hour after it.
    assert await store.due_reminders(POLICY, quiet + timedelta(minutes=30)) == []
    assert await store.due_reminders(POLICY, quiet + timedelta(minutes=61)) == [incident_id]


async def test_without_remind_every_one_reminder_is_all_and_off_is_none(
    store: IncidentStore,
) -> None:
    incident_id = await _carded(store)
    once = ReminderPolicy.from_seconds(remind_after=60, remind_every=None, stale_after=None)
    off = ReminderPolicy.from_seconds(remind_after=None, remind_every=None, stale_after=None)
    later = datetime.now(UTC) + timedelta(minutes=2)

    assert await store.remind(incident_id, once, later)
    assert await store.due_reminders(once, later + timedelta(days=30)) == []
    assert await store.due_reminders(off, later + timedelta(days=30)) == []


async def test_snoozing_is_on_the_timeline_and_the_card(store: IncidentStore) -> None:
    incident_id = await _carded(store)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=4)

    snoozed = await store.snooze(incident_id, until, OLEG)

    assert snoozed.incident.snoozed_until == until
    event = (await store.events(incident_id)).items[-1]
    assert (event.kind, event.actor, event.text) == (EventKind.SNOOZED, "Oleg", until.isoformat())
