"""End to end: reminders reply to the card of an untaken incident once per REMIND_EVERY,
never while it is snoozed, and a restart does not repeat one; stale incidents nudge
their owner by name."""

from __future__ import annotations

import asyncio

import pytest
from aiogram.types import Chat, User

from storage.models import EventKind
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher
from tests.telegram_stub import ChatMessage, TelegramStub

REMINDER = "⏰ Nobody has taken this incident for 1 min. Press 🙋 Take on its card."
ROUNDS = 1.5
"""Seconds in which the reminders' rounds (every 0.5 s with these settings) run a few times."""


@pytest.fixture
def chat(stub: TelegramStub) -> Chat:
    return stub.supergroup("On-call", chat_id=-1_009_000_000_042)


@pytest.fixture
def anna(stub: TelegramStub) -> User:
    return stub.user("Anna")


def _replies(stub: TelegramStub, chat: Chat, card: ChatMessage) -> list[ChatMessage]:
    return [m for m in stub.sent_messages(chat) if m.reply_to_message_id == card.message_id]


async def _card(stub: TelegramStub, chat: Chat, user: User, text: str) -> ChatMessage:
    report = await stub.send_user_message(chat, user, text)
    return await stub.wait_for_message(chat, reply_to=report)


@pytest.mark.all_engines
async def test_untaken_is_reminded_once_per_interval_snoozed_is_not_restart_repeats_none(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher, chat: Chat, anna: User
) -> None:
    settings = {
        "allowed_chat_ids": frozenset({chat.id}),
        "remind_after": 1.0,
        "remind_every": 3600.0,
        "stale_after": None,
    }
    async with launch_bot(**settings):
        untaken = await _card(stub, chat, anna, "[monitoring] Router down")
        snoozed = await _card(stub, chat, anna, "[monitoring] Printer down")
        await stub.wait_for_answer(await stub.press_button(chat, anna, snoozed, text="🔕 1h"))

        reminder = await stub.wait_for_message(chat, reply_to=untaken, timeout=10)
        await asyncio.sleep(ROUNDS)

    assert reminder.text == REMINDER
    assert _replies(stub, chat, untaken) == [reminder]
    assert _replies(stub, chat, snoozed) == []
    assert "🔕 Snoozed until" in (stub.message(chat, snoozed.message_id).text or "")

    async with launch_bot(**settings):
        await stub.wait_for(lambda: stub.calls("getUpdates"), what="the bot to poll again")
        await asyncio.sleep(ROUNDS)

    assert _replies(stub, chat, untaken) == [reminder]
    kinds = [event.kind for event in (await store.events(1)).items]
    assert kinds.count(EventKind.REMINDER_SENT) == 1
    assert EventKind.SNOOZED in [event.kind for event in (await store.events(2)).items]


async def test_a_quiet_incident_in_progress_nudges_its_owner_by_name(
    stub: TelegramStub, launch_bot: BotLauncher, chat: Chat, anna: User
) -> None:
    oleg = stub.user("Oleg")
    async with launch_bot(
        allowed_chat_ids=frozenset({chat.id}), remind_after=None, stale_after=1.0
    ):
        card = await _card(stub, chat, anna, "[monitoring] Router down")
        await stub.wait_for_answer(await stub.press_button(chat, oleg, card, text="Take"))
        nudge = await stub.wait_for_message(chat, reply_to=card, timeout=10)

    assert nudge.text == (
        "⏰ Oleg, this incident has had no news for a while: a note or a new status, please."
    )
    mention = [entity for entity in nudge.entities if entity["type"] == "text_mention"]
    assert mention and mention[0]["user"]["id"] == oleg.id
