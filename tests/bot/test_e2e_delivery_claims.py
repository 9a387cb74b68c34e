"""End to end: two senders over one outbox (an instance that took over, and one that does
not know yet that it was replaced) never both send a card; a card claimed by a sender
that died goes out once its claim expires."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import pytest

from bot.delivery import DeliveryPolicy, Sender
from bot.factory import create_bot, create_served_chats
from bot.i18n import create_i18n
from bot.rate_limits import Limits, Rate, RateLimiter
from storage.models import utcnow
from storage.store import CardRequest, IncidentStore, NewIncident
from tests.bot.conftest import TEST_DELIVERY, BotLauncher, all_delivered, make_settings
from tests.telegram_stub import TelegramStub

pytestmark = pytest.mark.all_engines

GENEROUS = Limits(group=Rate(1000, 60.0), overall=Rate(1000, 1.0))
"""Limits that never hold a sender back: the race is over the rows, not the allowance."""


@asynccontextmanager
async def running_sender(
    stub: TelegramStub, store: IncidentStore, database_url: str, name: str
) -> AsyncIterator[None]:
    """A sender of its own (its own bot, limiter and claimant), as another instance has."""
    settings = make_settings(stub, database_url)
    bot = create_bot(settings)
    sender = Sender(
        bot,
        store.outbox.claiming_as(name),
        RateLimiter(GENEROUS),
        create_served_chats(settings),
        create_i18n(),
        wake=asyncio.Event(),
        policy=DeliveryPolicy(fold_threshold=1000, idle_wait=0.05),
    )
    sender.start()
    try:
        yield
    finally:
        await sender.stop()
        await bot.session.close()


def cards_per_incident(stub: TelegramStub) -> Counter[str]:
    """How many cards the chats got for each incident (by the card's title line)."""
    titles = [(message.text or "").split(" · ")[0] for message in stub.sent_messages()]
    return Counter(title for title in titles if title.startswith("🔴 Incident #"))


async def test_two_senders_over_one_outbox_send_every_card_once(
    stub: TelegramStub, store: IncidentStore, database_url: str
) -> None:
    chats = [stub.supergroup(f"Team {n}") for n in range(4)]
    for n in range(40):
        await store.create(
            NewIncident(f"Point {n} down"), card=CardRequest(chats[n % len(chats)].id)
        )

    async with AsyncExitStack() as senders:
        for name in ("instance-a", "instance-b"):
            await senders.enter_async_context(running_sender(stub, store, database_url, name))
        await all_delivered(store, timeout=15)

    cards = cards_per_incident(stub)
    assert len(cards) == 40
    assert set(cards.values()) == {1}, [title for title, n in cards.items() if n > 1]


async def test_card_claimed_by_a_dead_sender_goes_out_once_its_claim_expires(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher
) -> None:
    chat = stub.supergroup("On-call")
    await store.create(NewIncident("Point 7 down"), card=CardRequest(chat.id))
    dead = store.outbox.claiming_as("instance-that-died")
    [pending] = await dead.due()
    claimed_at = utcnow()
    await dead.claim([pending.delivery.id], hold=timedelta(seconds=1))

    async with launch_bot(delivery=TEST_DELIVERY):
        card = await stub.wait_for_message(chat, contains="Point 7 down", timeout=10)
        sent_at = utcnow()
        await all_delivered(store)

    assert sent_at >= claimed_at + timedelta(seconds=1)
    assert cards_per_incident(stub) == {"🔴 Incident #1": 1}
    assert (card.text or "").startswith("🔴 Incident #1 · open")
