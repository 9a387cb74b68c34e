"""Nothing lost: main.py killed with SIGKILL in the middle of a burst, then restarted."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.database import create_engine, create_session_factory
from storage.models import Delivery, DeliveryKind, DeliveryState, Incident
from tests.service import ServiceRunner
from tests.telegram_stub import TelegramStub

BURST = 300
KILL_AFTER_CONFIRMED = 40
"""Kill once this many updates are confirmed: inside the burst, never before it."""
SETTLE_TIMEOUT = 90.0
"""Bounds a restart (the child imports aiogram), the redelivery and the outbox draining."""


@asynccontextmanager
async def open_database(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Re-check `check` in short steps until it holds; fail after SETTLE_TIMEOUT."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_kill_mid_burst_then_restart_loses_and_duplicates_nothing(
    stub: TelegramStub, services: ServiceRunner, database_url: str
) -> None:
    chat, zabbix = stub.supergroup("On-call"), stub.user("Zabbix")
    bot_settings = {"BOT_TOKEN": stub.token, "TELEGRAM_API_URL": stub.base_url}
    reported: dict[int, str] = {}
    for n in range(BURST):
        message = await stub.send_user_message(chat, zabbix, f"[monitoring] Точка {n} down")
        reported[message.message_id] = f"Точка {n} down"
    first_update = stub.pending_updates[0]["update_id"]

    first = services.start(**bot_settings)
    await stub.wait_for(
        lambda: stub.offset > first_update + KILL_AFTER_CONFIRMED,
        timeout=SETTLE_TIMEOUT,
        what=f"{KILL_AFTER_CONFIRMED} updates confirmed before the kill",
    )
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert stub.pending_updates, "the kill came after the burst, not in the middle of it"

    second = services.start(**bot_settings)
    await stub.wait_for(
        lambda: not stub.pending_updates,
        timeout=SETTLE_TIMEOUT,
        what="every update of the burst confirmed after the restart",
    )
    async with open_database(database_url) as sessions:

        async def outbox_drained() -> bool:
            async with sessions() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.state == DeliveryState.PENDING)
                )
            return pending == 0

        await eventually(outbox_drained, "the outbox to drain after the restart")
        async with sessions() as session:
            incidents = list(await session.scalars(select(Incident)))
            cards = list(
                await session.scalars(select(Delivery).where(Delivery.kind == DeliveryKind.CARD))
            )
    assert await second.stop() == 0

    # Every message of the burst is an incident, exactly once.
    assert sorted(incident.message_id or 0 for incident in incidents) == sorted(reported)
    assert {incident.message_id: incident.description for incident in incidents} == reported
    # Every incident's card was delivered: on its own, or folded into a storm summary.
    assert sorted(card.incident_id for card in cards) == sorted(i.id for i in incidents)
    assert {card.state for card in cards} <= {DeliveryState.SENT, DeliveryState.FOLDED}
    bot_messages = {m.message_id: m for m in stub.messages(chat) if m.from_bot}
    for incident in incidents:
        if incident.card_message_id is not None:
            card_message = bot_messages[incident.card_message_id]
            assert f"#{incident.id} " in (card_message.text or "")
    assert "Traceback" not in first.log() + second.log()
