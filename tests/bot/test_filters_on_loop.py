"""Every filter of the bot's handlers runs on the event loop, never in a worker thread."""

from __future__ import annotations

from bot.factory import create_dispatcher
from storage.store import IncidentStore
from tests.bot.conftest import make_settings
from tests.telegram_stub import TelegramStub


def test_every_handler_filter_is_a_coroutine(stub: TelegramStub, store: IncidentStore) -> None:
    dispatcher = create_dispatcher(store, make_settings(stub, "sqlite+aiosqlite://"))

    # aiogram runs a plain function filter (such as F.text) through asyncio.to_thread:
    # a thread hop for each update that reaches the handler, in every handler before it.
    in_threads = [
        f"{router.name}: {observer.event_name} {handler.callback.__name__}"
        for router in dispatcher.chain_tail
        for observer in router.observers.values()
        for handler in observer.handlers
        for event_filter in handler.filters or ()
        if not event_filter.awaitable
    ]

    assert in_threads == []
