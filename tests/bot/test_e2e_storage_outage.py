"""End to end: a report that arrives while the database cannot store it is not lost."""

from __future__ import annotations

import logging

import pytest

from bot.pipeline import UpdatePipeline
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher, all_handled
from tests.faults import SHORT_BUSY_TIMEOUT_MS, write_lock_held
from tests.telegram_stub import TelegramStub


@pytest.fixture
def busy_timeout_ms() -> int:
    return SHORT_BUSY_TIMEOUT_MS


async def test_report_while_database_is_locked_is_stored_once_it_is_free(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    pipeline: UpdatePipeline,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat, alice = stub.supergroup("On-call"), stub.user("Alice")

    with caplog.at_level(logging.INFO, logger="bot"):
        async with launch_bot():
            await stub.wait_for(lambda: stub.calls("getUpdates"), what="the bot to poll")
            with write_lock_held(database_url):
                report = await stub.send_user_message(chat, alice, "[monitoring] Point 7 down")
                later = await stub.send_user_message(chat, alice, "[monitoring] Point 8 down")
                await stub.wait_for(
                    lambda: any("not stored" in r.getMessage() for r in caplog.records),
                    what="the failed attempt",
                )
                assert stub.pending_updates, "an update was confirmed before it was stored"
            card = await stub.wait_for_message(chat, reply_to=report, timeout=10)
            await stub.wait_for_message(chat, reply_to=later, timeout=10)
            await all_handled(stub, pipeline)

    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring\nPoint 7 down")
    assert (await store.list()).total == 2
    assert [m.text for m in stub.sent_messages(chat) if "Sorry" in (m.text or "")] == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
