"""End to end: an instance that takes over counts what was sent before it against
Telegram's limits (the outbox knows), so a failover never breaks a chat's allowance."""

from __future__ import annotations

import asyncio

from bot.rate_limits import Limits, Rate
from storage.store import CardRequest, IncidentStore, NewIncident
from tests.bot.conftest import BotLauncher, all_delivered
from tests.telegram_stub import Limit, RateLimits, TelegramStub

# Three messages a minute in a group, none of them kept for replies.
THREE_A_MINUTE = Limits(group=Rate(3, 60.0), reserve_for_replies=0)


async def test_instance_taking_over_counts_the_messages_sent_before_it(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher
) -> None:
    stub.enable_rate_limits(RateLimits(group=Limit(3, 60.0), private=None, overall=None))
    chat = stub.supergroup("On-call")
    for n in (1, 2):
        await store.create(NewIncident(f"Point {n} down"), card=CardRequest(chat.id))
    async with launch_bot(limits=THREE_A_MINUTE):  # the instance that then dies
        await all_delivered(store)
    for n in (3, 4):
        await store.create(NewIncident(f"Point {n} down"), card=CardRequest(chat.id))

    async with launch_bot(limits=THREE_A_MINUTE):  # the one that takes over
        await stub.wait_for(lambda: len(stub.sent_messages(chat)) == 3, what="a third card")
        await asyncio.sleep(1.0)  # time enough for the sender to try the fourth

    assert len(stub.sent_messages(chat)) == 3
    assert [event for event in stub.rate_log if not event.accepted] == []
    assert await store.outbox.pending_count() == 1
