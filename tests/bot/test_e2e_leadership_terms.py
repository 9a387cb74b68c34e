"""End to end: one bot losing and winning back the lease, term after term (a failover back
and forth), polls again each time and leaves nothing behind from the terms before."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiogram import Dispatcher
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.runner
from bot.factory import create_dispatcher
from bot.runner import LEASE_NAME, run_bot
from storage.leadership import Leadership, Role
from storage.models import Lease, utcnow
from storage.store import IncidentStore
from tests.bot.conftest import POLLING_TIMEOUT, TEST_DELIVERY, make_settings
from tests.telegram_stub import TelegramStub

TERMS = 3


@pytest.fixture
def dispatchers(monkeypatch: pytest.MonkeyPatch) -> list[Dispatcher]:
    """Every dispatcher run_bot makes (the real one, kept here to look at)."""
    made: list[Dispatcher] = []

    def keep(*args: Any, **kwargs: Any) -> Dispatcher:
        made.append(create_dispatcher(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(bot.runner, "create_dispatcher", keep)
    return made


async def wait_for_role(leadership: Leadership, role: Role) -> None:
    async with asyncio.timeout(10):
        while leadership.role != role:  # noqa: ASYNC110 - a role is no event to wait on
            await asyncio.sleep(0.02)


async def take_the_lease_away(engine: AsyncEngine) -> None:
    """Another instance holds the lease now, for a moment: this one's renewal fails."""
    async with engine.begin() as connection:
        await connection.execute(
            update(Lease)
            .where(Lease.name == LEASE_NAME)
            .values(holder="another-instance", expires_at=utcnow() + timedelta(seconds=0.3))
        )


async def test_failover_back_and_forth_polls_each_term_with_one_startup_handler(
    stub: TelegramStub,
    store: IncidentStore,
    engine: AsyncEngine,
    database_url: str,
    dispatchers: list[Dispatcher],
) -> None:
    chat, alice = stub.supergroup("On-call"), stub.user("Alice")
    leadership = Leadership(
        store.lease(LEASE_NAME, "this-instance", timedelta(seconds=1)),
        check_every=0.05,
        renew_every=0.1,
    )
    startup_handlers: list[int] = []
    async with run_bot(
        make_settings(stub, database_url),
        store,
        polling_timeout=POLLING_TIMEOUT,
        delivery=TEST_DELIVERY,
        leadership=leadership,
    ):
        [dispatcher] = dispatchers
        for term in range(1, TERMS + 1):
            await wait_for_role(leadership, "active")
            report = await stub.send_user_message(chat, alice, f"[monitoring] Point {term} down")
            await stub.wait_for_message(chat, reply_to=report, timeout=10)
            startup_handlers.append(len(dispatcher.startup.handlers))
            if term < TERMS:
                await take_the_lease_away(engine)
                await wait_for_role(leadership, "standby")

    assert startup_handlers == [startup_handlers[0]] * TERMS
    assert (await store.list()).total == TERMS
