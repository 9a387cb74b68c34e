"""End to end: failures are logged and apologised for, and the poller goes on."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot.errors import BotStartError
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher, Scene, all_delivered
from tests.telegram_stub import FaultKind, TelegramStub

APOLOGY = "Sorry, something went wrong. Please try again later."


def fail_once(monkeypatch: pytest.MonkeyPatch, store: IncidentStore, name: str) -> None:
    """Make the store's method `name` raise once, then work again."""
    original = getattr(store, name)
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database exploded")
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, name, flaky)


async def test_failing_update_is_logged_apologised_and_poller_goes_on(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stub, chat = scene.stub, scene.chat
    fail_once(monkeypatch, scene.store, "create")

    with caplog.at_level(logging.ERROR, logger="bot.handlers.errors"):
        failed = await stub.send_user_message(chat, scene.alice, "[monitoring] first")
        apology = await stub.wait_for_message(chat, reply_to=failed)
        later = await stub.send_user_message(chat, scene.alice, "[monitoring] second")
        card = await stub.wait_for_message(chat, reply_to=later)

    assert apology.text == APOLOGY
    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring\nsecond")
    failure = next(r for r in caplog.records if r.name == "bot.handlers.errors")
    assert "Update 100001 failed: RuntimeError: database exploded" in failure.getMessage()
    assert failure.exc_info is not None


async def test_failing_update_redelivered_later_is_stored_once(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub, chat = scene.stub, scene.chat
    original = scene.store.create
    calls = 0

    async def commit_then_fail(*args: Any, **kwargs: Any) -> Any:
        # The incident and its card are committed, then the handler fails anyway.
        nonlocal calls
        calls += 1
        created = await original(*args, **kwargs)
        if calls == 1:
            raise RuntimeError("lost after commit")
        return created

    monkeypatch.setattr(scene.store, "create", commit_then_fail)
    report = await stub.send_user_message(chat, scene.alice, "[monitoring] down")
    await stub.wait_for_message(chat, reply_to=report, contains=APOLOGY)

    again = stub.push_update({"message": stub.message(chat, report.message_id).data})
    await stub.wait_confirmed(again)
    await all_delivered(scene.store)

    assert (await scene.store.list()).total == 1
    cards = [m for m in stub.sent_messages(chat) if (m.text or "").startswith("🔴 Incident #1")]
    assert len(cards) == 1


async def test_failing_button_press_gets_apology_alert(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub, chat = scene.stub, scene.chat
    report = await stub.send_user_message(chat, scene.alice, "[monitoring] down")
    card = await stub.wait_for_message(chat, reply_to=report)
    fail_once(monkeypatch, scene.store, "change_status")

    query = await stub.press_button(chat, scene.ivan, card, text="Resolved")
    answer = await stub.wait_for_answer(query)

    assert (answer.text, answer.show_alert) == (
        "Извините, что-то пошло не так. Попробуйте позже.",
        True,
    )


async def test_failed_send_does_not_stop_poller(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    stub.inject_fault(FaultKind.BAD_GATEWAY, times=1, methods={"sendMessage"})

    await stub.send_user_message(chat, scene.alice, "[monitoring] first")
    later = await stub.send_user_message(chat, scene.alice, "[monitoring] second")
    card = await stub.wait_for_message(chat, reply_to=later, contains="second")

    assert (card.text or "").startswith("🔴 Incident #2")
    assert (await scene.store.list()).total == 2


async def test_telegram_unreachable_at_start_does_not_stop_start_up(
    stub: TelegramStub, launch_bot: BotLauncher
) -> None:
    stub.inject_fault(FaultKind.BAD_GATEWAY, times=1, methods={"getMe"})
    chat = stub.group()

    async with launch_bot():
        report = await stub.send_user_message(chat, stub.user(), "[monitoring] down")
        card = await stub.wait_for_message(chat, reply_to=report, timeout=10)

    assert (card.text or "").startswith("🔴 Incident #1")
    assert stub.commands() is not None


async def test_rejected_token_stops_the_bot(stub: TelegramStub, launch_bot: BotLauncher) -> None:
    rejected = asyncio.Event()
    with pytest.raises(BotStartError, match="Telegram rejected BOT_TOKEN"):
        async with launch_bot(
            bot_token="123456:not-the-right-token", on_token_rejected=rejected.set
        ):
            await asyncio.wait_for(rejected.wait(), 10)

    assert stub.calls("getUpdates") == []
    assert stub.commands() is None


async def test_stop_returns_promptly_during_long_poll(
    stub: TelegramStub, launch_bot: BotLauncher
) -> None:
    loop = asyncio.get_running_loop()

    async with launch_bot():
        # Nothing to deliver: the bot sits in a long poll when it is told to stop.
        await stub.wait_for(lambda: stub.calls("setMyCommands"))
        await asyncio.sleep(0.05)
        stopping = loop.time()

    assert loop.time() - stopping < 0.5
