"""End to end: the outbox's sender against the stand-in's limits and faults.

Storms folded into a summary within the per-group limit, 429s honoured, permanent errors
dropped without holding up anyone else, a group upgraded to a supergroup followed, and
ingestion that never waits for Telegram.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.pipeline import UpdatePipeline
from bot.rate_limits import Limits, Rate
from storage.database import create_session_factory
from storage.models import Delivery, DeliveryKind, DeliveryState
from storage.outbox import queue_card_edit
from storage.rules import Status
from storage.store import CardRequest, IncidentStore, NewIncident
from tests.bot.conftest import TEST_DELIVERY, BotLauncher, all_delivered, all_handled
from tests.telegram_stub import ChatMessage, FaultKind, Limit, RateLimits, TelegramStub

GROUP_ID = -1_009_000_000_042
_ID_RANGE = re.compile(r"#(\d+)(?:\u2013#(\d+))?")


async def deliveries(engine: AsyncEngine) -> list[Delivery]:
    async with create_session_factory(engine)() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.id)))


def incidents_shown(messages: list[ChatMessage]) -> list[int]:
    """Every incident id the bot's messages show: a card's, or each of a summary's."""
    shown: list[int] = []
    for message in messages:
        text = message.text or ""
        if text.startswith("Registered "):
            listed = text.split(": ", 1)[1].split(".\n", 1)[0]
            for first, last in _ID_RANGE.findall(listed):
                shown.extend(range(int(first), int(last or first) + 1))
        elif match := re.match(r"\S+ Incident #(\d+) ·", text):
            shown.append(int(match.group(1)))
    return shown


async def test_storm_is_stored_at_once_and_announced_within_group_limit(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher
) -> None:
    stub.enable_rate_limits(RateLimits(group=Limit(5, 1.0)))
    chat, monitoring = stub.supergroup(chat_id=GROUP_ID), stub.user("Monitoring")
    count = 300

    async with launch_bot(limits=Limits(group=Rate(5, 1.0))):
        reports = [
            await stub.send_user_message(chat, monitoring, f"[monitoring] Scooter #{n} is down")
            for n in range(1, count + 1)
        ]
        await stub.wait_for(lambda: not stub.pending_updates, timeout=30)
        await all_delivered(store, timeout=30)
        asked = await stub.send_user_message(chat, monitoring, "/list open")
        listing = await stub.wait_for_message(chat, reply_to=asked)

    page = await store.list(limit=count + 1)
    assert page.total == count
    assert sorted(incident.message_id or 0 for incident in page.items) == sorted(
        report.message_id for report in reports
    )
    announced = [m for m in stub.sent_messages(chat) if m.message_id != listing.message_id]
    assert sorted(incidents_shown(announced)) == list(range(1, count + 1))
    assert any((m.text or "").startswith("Registered ") for m in announced)
    assert len(announced) < 40
    assert (listing.text or "").startswith("Incidents · open · 1-20 of 300")
    assert listing.button_texts == ["Next ▶"]
    # Our own limiter kept within the group's limit: the stand-in never had to refuse.
    assert stub.max_in_window(1.0, chat_id=chat.id) <= 5
    assert [event for event in stub.rate_log if not event.accepted] == []
    assert stub.early_retries() == []


async def test_429_is_honoured_and_every_card_still_arrives(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher
) -> None:
    # Telegram is stricter than we think (another client shares the token, say).
    stub.enable_rate_limits(RateLimits(group=Limit(2, 1.0), private=None, overall=None))
    chat, alice = stub.supergroup(), stub.user("Alice")

    async with launch_bot(
        limits=Limits(group=Rate(10, 1.0), reserve_for_replies=0),
        delivery=replace(TEST_DELIVERY, fold_threshold=100),
    ):
        reports = [
            await stub.send_user_message(chat, alice, f"[monitoring] problem {n}")
            for n in range(1, 5)
        ]
        for report in reports:
            await stub.wait_for_message(chat, reply_to=report, timeout=10)
        await all_delivered(store)

    refused = [event for event in stub.rate_log if not event.accepted]
    assert refused and all(event.retry_after for event in refused)
    assert stub.early_retries() == []
    assert sorted(incidents_shown(stub.sent_messages(chat))) == [1, 2, 3, 4]


async def test_permanent_refusal_is_recorded_and_others_go_on(
    stub: TelegramStub, store: IncidentStore, engine: AsyncEngine, launch_bot: BotLauncher
) -> None:
    gone, alive, alice = stub.supergroup("Gone"), stub.supergroup("Alive"), stub.user("Alice")
    stub.inject_fault(FaultKind.BOT_KICKED, chat_id=gone.id, methods={"sendMessage"})

    for n in (1, 2):  # queued before the bot starts: announcements, say
        await store.create(NewIncident(f"problem {n}"), card=CardRequest(gone.id))

    async with launch_bot():
        report = await stub.send_user_message(alive, alice, "[monitoring] here")
        card = await stub.wait_for_message(alive, reply_to=report)
        await all_delivered(store)

    assert (card.text or "").startswith("🔴 Incident #3")
    rows = await deliveries(engine)
    assert [(row.incident_id, row.state) for row in rows] == [
        (1, DeliveryState.FAILED),
        (2, DeliveryState.FAILED),
        (3, DeliveryState.SENT),
    ]
    assert rows[0].last_error == "Forbidden: bot was kicked from the supergroup chat"
    # The chat refused, so its whole backlog was dropped after one try, not retried.
    assert len(stub.calls("sendMessage", chat_id=gone.id)) == 1
    assert stub.sent_messages(gone) == []


async def test_edit_of_deleted_card_is_dropped_and_chat_goes_on(
    stub: TelegramStub, store: IncidentStore, engine: AsyncEngine, launch_bot: BotLauncher
) -> None:
    chat, alice = stub.supergroup(), stub.user("Alice")

    async with launch_bot():
        first = await stub.send_user_message(chat, alice, "[monitoring] first")
        card = await stub.wait_for_message(chat, reply_to=first)
        await all_delivered(store)
        stub.message(chat, card.message_id).deleted = True  # an admin deleted the card
        await store.change_status(1, Status.RESOLVED, changed_by="api")
        second = await stub.send_user_message(chat, alice, "[monitoring] second")
        await stub.wait_for_message(chat, reply_to=second)
        await all_delivered(store)

    edit = next(row for row in await deliveries(engine) if row.kind == DeliveryKind.CARD_EDIT)
    assert edit.state == DeliveryState.FAILED
    assert edit.last_error == "Bad Request: message to edit not found"
    assert [call.ok for call in stub.calls("editMessageText")] == [False]


async def test_edit_that_changes_nothing_counts_as_sent(
    stub: TelegramStub,
    store: IncidentStore,
    engine: AsyncEngine,
    launch_bot: BotLauncher,
    delivery_queued: asyncio.Event,
) -> None:
    chat, alice = stub.supergroup(), stub.user("Alice")

    async with launch_bot():
        report = await stub.send_user_message(chat, alice, "[monitoring] Scooter #42 down")
        card = await stub.wait_for_message(chat, reply_to=report)
        await all_delivered(store)
        # An edit of the card queued when nothing on it changed (two changes that cancel
        # out, say): Telegram answers "not modified".
        async with create_session_factory(engine)() as session:
            queue_card_edit(session, 1, chat.id)
            await session.commit()
        delivery_queued.set()
        await stub.wait_for(lambda: stub.calls("editMessageText"))
        await all_delivered(store)

    [call] = stub.calls("editMessageText")
    assert (call.description or "").startswith("Bad Request: message is not modified")
    edit = (await deliveries(engine))[-1]
    assert (edit.kind, edit.state, edit.last_error) == (
        DeliveryKind.CARD_EDIT,
        DeliveryState.SENT,
        None,
    )
    assert not stub.message(chat, card.message_id).edited


async def test_card_for_upgraded_group_goes_to_supergroup_which_is_then_served(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher
) -> None:
    group, alice = stub.group("On-call"), stub.user("Alice")
    report = await stub.send_user_message(group, alice, "[monitoring] queued before the upgrade")
    await store.create(
        NewIncident(
            "queued before the upgrade",
            source="monitoring",
            chat_id=group.id,
            message_id=report.message_id,
        ),
        card=CardRequest(group.id, reply_to_message_id=report.message_id),
    )
    supergroup = stub.migrate_to_supergroup(group, announce=False)

    async with launch_bot(allowed_chat_ids=frozenset({group.id})):
        card = await stub.wait_for_message(supergroup)
        later = await stub.send_user_message(supergroup, alice, "[monitoring] after the upgrade")
        second = await stub.wait_for_message(supergroup, reply_to=later)
    # After a restart the supergroup is still served: the upgrade was recorded.
    async with launch_bot(allowed_chat_ids=frozenset({group.id})):
        again = await stub.send_user_message(supergroup, alice, "[monitoring] after a restart")
        third = await stub.wait_for_message(supergroup, reply_to=again)

    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring")
    assert (second.text or "").startswith("🔴 Incident #2")
    assert (third.text or "").startswith("🔴 Incident #3")
    assert await store.outbox.chat_migrations() == {group.id: supergroup.id}
    assert (await store.get(1)).card_chat_id == supergroup.id


async def test_upgrade_notice_makes_supergroup_served(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher
) -> None:
    group, alice = stub.group("On-call"), stub.user("Alice")

    async with launch_bot(allowed_chat_ids=frozenset({group.id})):
        supergroup = stub.migrate_to_supergroup(group, announce=True)
        report = await stub.send_user_message(supergroup, alice, "[monitoring] after the upgrade")
        card = await stub.wait_for_message(supergroup, reply_to=report)

    assert (card.text or "").startswith("🔴 Incident #1")
    assert await store.outbox.chat_migrations() == {group.id: supergroup.id}


async def test_ingestion_goes_on_while_telegram_is_slow(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher, pipeline: UpdatePipeline
) -> None:
    chat, alice = stub.supergroup(), stub.user("Alice")
    # The first message (a card, or a summary of the burst) takes Telegram two seconds;
    # the bot keeps reading meanwhile.
    stub.inject_fault(FaultKind.SLOW, times=1, delay=2.0, methods={"sendMessage"})

    async with launch_bot():
        for n in range(1, 21):
            await stub.send_user_message(chat, alice, f"[monitoring] problem {n}")
        await all_handled(stub, pipeline)
        stored_while_stuck = (await store.list()).total
        sent_while_stuck = len(stub.sent_messages(chat))
        await stub.wait_for(
            lambda: len(incidents_shown(stub.sent_messages(chat))) == 20,
            timeout=5,
            what="every incident shown",
        )
        await all_delivered(store)

    assert (stored_while_stuck, sent_while_stuck) == (20, 0)
    assert sorted(incidents_shown(stub.sent_messages(chat))) == list(range(1, 21))


async def test_direct_answers_keep_private_chat_limit(
    stub: TelegramStub, launch_bot: BotLauncher
) -> None:
    stub.enable_rate_limits(RateLimits(group=None, private=Limit(1, 0.3), overall=None))
    alice = stub.user("Alice")
    private = stub.private_chat(alice)

    async with launch_bot(limits=Limits(private=Rate(1, 0.3))):
        asked = [await stub.send_user_message(private, alice, "/help") for _ in range(3)]
        for question in asked:
            await stub.wait_for_message(private, reply_to=question)

    assert stub.max_in_window(0.3, chat_id=private.id) == 1
    assert [event for event in stub.rate_log if not event.accepted] == []


async def test_answer_past_flood_limit_is_given_up_and_bot_goes_on(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher, pipeline: UpdatePipeline
) -> None:
    chat, alice = stub.supergroup(), stub.user("Alice")

    async with launch_bot(limits=Limits(group=Rate(1, 60.0), reply_max_wait=0.1)):
        first = await stub.send_user_message(chat, alice, "/help")
        await stub.wait_for_message(chat, reply_to=first)
        await stub.send_user_message(chat, alice, "/help")
        await stub.send_user_message(chat, alice, "[monitoring] still stored")
        await all_handled(stub, pipeline)

    assert len(stub.sent_messages(chat)) == 1
    assert (await store.list()).total == 1


async def test_change_while_card_is_on_its_way_still_reaches_the_card(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher
) -> None:
    chat, alice = stub.supergroup(), stub.user("Alice")
    slow = stub.inject_fault(FaultKind.SLOW, times=1, delay=0.5, methods={"sendMessage"})

    async with launch_bot():
        report = await stub.send_user_message(chat, alice, "[monitoring] Scooter #42 down")
        # The card, drawn as "open", is on its way once the stand-in holds it. (Polled:
        # the stand-in signals a call when it answers it, not when it arrives.)
        while not slow.hits:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await store.change_status(1, Status.RESOLVED, changed_by="api")
        card = await stub.wait_for_message(chat, reply_to=report)
        await stub.wait_for(lambda: card.edited)
        await all_delivered(store)

    assert (card.history[0].text or "").startswith("🔴 Incident #1 · open")
    assert (card.text or "").startswith("🟢 Incident #1 · resolved")


async def test_direct_answer_refused_with_429_is_sent_after_retry_after(
    stub: TelegramStub, launch_bot: BotLauncher
) -> None:
    # Telegram allows less than we think: the second answer gets a 429.
    stub.enable_rate_limits(RateLimits(group=None, private=Limit(1, 1.0), overall=None))
    alice = stub.user("Alice")
    private = stub.private_chat(alice)

    async with launch_bot(limits=Limits(private=Rate(5, 1.0))):
        asked = [await stub.send_user_message(private, alice, "/help") for _ in range(2)]
        for question in asked:
            await stub.wait_for_message(private, reply_to=question)

    assert [event.accepted for event in stub.rate_log] == [True, False, True]
    assert stub.early_retries() == []
