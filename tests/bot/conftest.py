"""Factories for the bot's tests: incidents, settings, an i18n context, and the real bot
long-polling the Telegram stand-in (`tests/telegram_stub`) on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram.types import Chat, User
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.delivery import DeliveryPolicy
from bot.i18n import create_i18n
from bot.pipeline import UpdatePipeline
from bot.rate_limits import Limits
from bot.runner import run_bot
from metrics import Metrics
from settings import Settings
from storage.database import create_session_factory
from storage.models import IncidentRow
from storage.rules import Status
from storage.store import IncidentStore
from tests.telegram_stub import TelegramStub

NOON = datetime(2026, 11, 23, 14, 2, tzinfo=UTC)
POLLING_TIMEOUT = 1
"""Seconds per getUpdates long poll in tests: shutdown never waits on one."""


def make_incident(**fields: Any) -> IncidentRow:
    """An incident as the store returns it, without a database."""
    values: dict[str, Any] = dict.fromkeys(IncidentRow._fields) | {
        "id": 17,
        "description": "Scooter #42 is not responding",
        "status": Status.OPEN,
        "source": "monitoring",
        "created_at": NOON,
        "updated_at": NOON,
        "created_by": "Alice",
        "updated_by": "Alice",
        "version": 1,
    }
    values.update(fields)
    return IncidentRow(**values)


@pytest.fixture
def english() -> Iterator[None]:
    """Render in English, as the i18n middleware does for most people."""
    i18n = create_i18n()
    with i18n.context(), i18n.use_locale("en"):
        yield


@pytest.fixture
def russian() -> Iterator[None]:
    i18n = create_i18n()
    with i18n.context(), i18n.use_locale("ru"):
        yield


TEST_DELIVERY = DeliveryPolicy(fold_interval=0.2, retry_first=0.05, retry_max=0.5, stop_grace=0.5)
"""The sender's policy in tests: Telegram's errors are retried within a fraction of a second."""


@pytest.fixture
def delivery_queued() -> asyncio.Event:
    """Set by the store whenever it queues a delivery: wakes the running bot's sender."""
    return asyncio.Event()


@pytest.fixture
def store(engine: AsyncEngine, delivery_queued: asyncio.Event) -> IncidentStore:
    """The store as main.py wires it when the bot runs: it wakes the sender."""
    return IncidentStore(create_session_factory(engine), on_delivery_queued=delivery_queued.set)


def make_settings(stub: TelegramStub, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bot_token": stub.token,
        "telegram_api_url": stub.base_url,
        "database_url": database_url,
        "allowed_chat_ids": frozenset(),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def stub() -> AsyncIterator[TelegramStub]:
    async with TelegramStub() as stub:
        yield stub


@pytest.fixture
def allowed_chat_ids() -> frozenset[int]:
    """ALLOWED_CHAT_IDS for the running bot; a test module may override it."""
    return frozenset()


@dataclass
class Scene:
    """The running bot's world: the stand-in, the store behind the bot, a chat, people."""

    stub: TelegramStub
    store: IncidentStore
    chat: Chat
    alice: User
    ivan: User
    pipeline: UpdatePipeline


BotLauncher = Callable[..., AbstractAsyncContextManager[None]]


@pytest.fixture
def pipeline() -> UpdatePipeline:
    """The running bot's update pipeline: `all_handled` waits for it."""
    return UpdatePipeline()


@pytest.fixture
def launch_bot(
    stub: TelegramStub,
    store: IncidentStore,
    database_url: str,
    delivery_queued: asyncio.Event,
    pipeline: UpdatePipeline,
) -> BotLauncher:
    """`async with launch_bot(**settings):` runs the bot exactly as main.py wires it.

    `limits=` and `delivery=` replace Telegram's limits and the sender's policy;
    `on_token_rejected=` is called when Telegram rejects the token; webhook mode receives
    updates on `app=`; `metrics=` count its Telegram calls and updates.
    """

    @asynccontextmanager
    async def launch(
        *,
        limits: Limits | None = None,
        delivery: DeliveryPolicy = TEST_DELIVERY,
        on_token_rejected: Callable[[], None] | None = None,
        app: FastAPI | None = None,
        metrics: Metrics | None = None,
        **overrides: Any,
    ) -> AsyncIterator[None]:
        settings = make_settings(stub, database_url, **overrides)
        async with run_bot(
            settings,
            store,
            polling_timeout=POLLING_TIMEOUT,
            limits=limits,
            delivery=delivery,
            delivery_queued=delivery_queued,
            pipeline=pipeline,
            on_token_rejected=on_token_rejected,
            app=app,
            metrics=metrics,
        ):
            yield

    return launch


@pytest.fixture
async def scene(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    allowed_chat_ids: frozenset[int],
    pipeline: UpdatePipeline,
) -> AsyncIterator[Scene]:
    """The bot running and a supergroup with two people: Alice (en) and Ivan (ru)."""
    chat = stub.supergroup("On-call", chat_id=-1_009_000_000_042)
    alice = stub.user("Alice", last_name="Smith")
    ivan = stub.user("Ivan", language_code="ru")
    async with launch_bot(allowed_chat_ids=allowed_chat_ids):
        # The bot introduces itself in the background: the scene starts once it polls.
        await stub.wait_for(lambda: stub.calls("getUpdates"), what="the bot to poll")
        yield Scene(stub, store, chat, alice, ivan, pipeline)


async def all_handled(stub: TelegramStub, pipeline: UpdatePipeline) -> None:
    """Wait until the bot confirmed every update pushed so far and finished handling it.

    An update is confirmed once its writes are committed; its replies may still be on
    their way then. Once the pipeline is drained too, whatever the updates caused has
    happened.
    """
    await stub.wait_for(lambda: not stub.pending_updates, what="every update to be handled")
    await asyncio.wait_for(pipeline.drained(), 5)


async def all_delivered(store: IncidentStore, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait until the sender has recorded every queued delivery as done.

    The chat shows a card a moment before the sender records it in the store; tests that
    look at the store after the chat wait for this.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await store.outbox.pending_count():
        if loop.time() > deadline:
            raise TimeoutError(f"deliveries still pending after {timeout} s")
        await asyncio.sleep(0.01)
