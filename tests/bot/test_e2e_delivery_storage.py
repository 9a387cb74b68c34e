"""End to end: Telegram accepts a card, and the database will not record it for a while.

The sender must keep trying to record what Telegram answered, sending nothing meanwhile,
never sending the card again: only a crash or a lost connection may repeat a delivery.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_session_factory
from storage.errors import is_storage_unavailable
from storage.models import Delivery, DeliveryState
from storage.store import CardRequest, IncidentStore, NewIncident
from tests.bot.conftest import BotLauncher, all_delivered
from tests.faults import SHORT_BUSY_TIMEOUT_MS, database_path
from tests.telegram_stub import CallRecord, TelegramStub


@pytest.fixture
def busy_timeout_ms() -> int:
    return SHORT_BUSY_TIMEOUT_MS


@pytest.fixture
def other_process(database_url: str) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the bot's database: another process's writer."""
    with closing(sqlite3.connect(database_path(database_url), isolation_level=None)) as other:
        yield other


def lock_when_first_message_is_accepted(
    stub: TelegramStub, other_process: sqlite3.Connection
) -> list[CallRecord]:
    """The moment Telegram has the first message, another process takes the write lock;
    the returned list gets that message's call."""
    locked: list[CallRecord] = []

    def lock_database(record: CallRecord) -> None:
        if not locked:
            other_process.execute("BEGIN IMMEDIATE")
            locked.append(record)

    stub.on_accepted("sendMessage", lock_database)
    return locked


def storage_failures(engine: AsyncEngine) -> list[BaseException]:
    """Every storage error the engine meets from now on (a write that found the lock taken)."""
    failures: list[BaseException] = []

    def seen(context: Any) -> None:
        if is_storage_unavailable(context.sqlalchemy_exception):
            failures.append(context.sqlalchemy_exception)

    event.listen(engine.sync_engine, "handle_error", seen)
    return failures


async def test_card_accepted_while_database_locked_is_sent_once_and_recorded(
    stub: TelegramStub,
    store: IncidentStore,
    engine: AsyncEngine,
    launch_bot: BotLauncher,
    other_process: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = stub.supergroup("On-call"), stub.supergroup("Payments")
    # Queued before the bot starts (announcements, say): the first card goes out first.
    created = await store.create(NewIncident("Payments are down"), card=CardRequest(first.id))
    await store.create(NewIncident("Checkout is slow"), card=CardRequest(second.id))
    locked = lock_when_first_message_is_accepted(stub, other_process)
    failures = storage_failures(engine)

    async with launch_bot():
        await stub.wait_for(lambda: locked, what="the first card to be accepted")
        await stub.wait_for(lambda: len(failures) >= 3, what="the sender to retry recording")
        # While the record waits, nothing else goes out: not the card again, nor the next.
        assert len(stub.calls("sendMessage")) == 1
        other_process.execute("ROLLBACK")
        await all_delivered(store)

    assert [len(stub.sent_messages(chat)) for chat in (first, second)] == [1, 1]
    assert len(stub.calls("sendMessage")) == 2
    card = stub.sent_messages(first)[0]
    incident = await store.get(created.incident.id)
    assert (incident.card_chat_id, incident.card_message_id) == (first.id, card.message_id)
    async with create_session_factory(engine)() as session:
        states = list(await session.scalars(select(Delivery.state).order_by(Delivery.id)))
    assert states == [DeliveryState.SENT, DeliveryState.SENT]
    assert "Cannot record card" in caplog.text


async def test_summary_accepted_while_database_locked_is_sent_once_and_recorded(
    stub: TelegramStub,
    store: IncidentStore,
    engine: AsyncEngine,
    launch_bot: BotLauncher,
    other_process: sqlite3.Connection,
) -> None:
    chat = stub.supergroup("On-call")
    for n in range(1, 8):  # a storm: more than fold_threshold cards, one summary
        await store.create(NewIncident(f"Scooter #{n} is down"), card=CardRequest(chat.id))
    lock_when_first_message_is_accepted(stub, other_process)
    failures = storage_failures(engine)

    async with launch_bot():
        await stub.wait_for(lambda: len(failures) >= 3, what="the sender to retry recording")
        assert len(stub.calls("sendMessage")) == 1
        other_process.execute("ROLLBACK")
        await all_delivered(store)

    [summary] = stub.sent_messages(chat)
    assert (summary.text or "").startswith("Registered 7 incidents")
    async with create_session_factory(engine)() as session:
        states = set(await session.scalars(select(Delivery.state)))
    assert states == {DeliveryState.FOLDED}
