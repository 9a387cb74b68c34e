"""End to end: status words replying to a card or a report, and `#17 fixed`."""
# ruff: noqa: RUF001 - Russian text is Russian, not look-alike Latin

from __future__ import annotations

from bot.pipeline import UpdatePipeline
from storage.rules import Status
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher, Scene, all_handled
from tests.telegram_stub import ChatMessage, TelegramStub


async def report(scene: Scene) -> tuple[ChatMessage, ChatMessage]:
    """A report and its card."""
    message = await scene.stub.send_user_message(
        scene.chat, scene.alice, "[monitoring] Scooter #42 down"
    )
    card = await scene.stub.wait_for_message(scene.chat, reply_to=message)
    return scene.stub.message(scene.chat, message.message_id), card


async def test_reply_to_card_with_status_word_changes_status(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    _report, card = await report(scene)
    bob = stub.user("Bob")

    reply = await stub.send_user_message(chat, bob, "fixed", reply_to=card.message_id)
    updated = await stub.wait_for_message(chat, reply_to=reply)

    assert (updated.text or "").startswith("🟢 Incident #1 · resolved · monitoring")
    assert (updated.text or "").endswith("Status set by Bob")
    assert (await scene.store.get(1)).status == Status.RESOLVED
    await stub.wait_for(
        lambda: (
            stub.message(chat, card.message_id).button_texts
            == ["🛠 In progress", "🔒 Close", "🙋 Take", "📜 History"]
        )
    )


async def test_reply_to_original_report_in_russian_changes_status(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    original, _card = await report(scene)

    reply = await stub.send_user_message(
        chat, scene.ivan, "В работе", reply_to=original.message_id
    )
    updated = await stub.wait_for_message(chat, reply_to=reply)

    assert (updated.text or "").startswith("🟡 Инцидент #1 · в работе · monitoring")
    assert (await scene.store.get(1)).status == Status.IN_PROGRESS


async def test_reply_to_status_reply_card_changes_status(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    await report(scene)
    asked = await stub.send_user_message(chat, scene.alice, "/status 1")
    shown = await stub.wait_for_message(chat, reply_to=asked)

    reply = await stub.send_user_message(chat, scene.alice, "closed", reply_to=shown.message_id)
    updated = await stub.wait_for_message(chat, reply_to=reply)

    assert (updated.text or "").startswith("⚪ Incident #1 · closed · monitoring")
    assert updated.button_texts == ["📜 History"]


async def test_number_and_status_word_changes_status(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    await report(scene)

    message = await stub.send_user_message(chat, scene.alice, "#1 in progress")
    updated = await stub.wait_for_message(chat, reply_to=message)

    assert (updated.text or "").startswith("🟡 Incident #1 · in progress · monitoring")
    assert (await scene.store.get(1)).status == Status.IN_PROGRESS


async def test_number_of_missing_incident_says_not_found(scene: Scene) -> None:
    message = await scene.stub.send_user_message(scene.chat, scene.alice, "#99 fixed")
    reply = await scene.stub.wait_for_message(scene.chat, reply_to=message)

    assert reply.text == "Incident #99 not found"


async def test_forbidden_change_by_reply_is_explained(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    _report, card = await report(scene)
    await scene.store.change_status(1, Status.CLOSED)

    reply = await stub.send_user_message(chat, scene.alice, "reopen", reply_to=card.message_id)
    explained = await stub.wait_for_message(chat, reply_to=reply)

    assert explained.text == (
        "Incident #1 cannot go from closed to open. Allowed from closed: none, it is final."
    )


async def test_status_word_replying_to_plain_message_does_nothing(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    chatter = await stub.send_user_message(chat, scene.alice, "is the build broken?")

    await stub.send_user_message(chat, scene.ivan, "fixed", reply_to=chatter)
    await all_handled(stub, scene.pipeline)

    assert stub.sent_messages(chat) == []


async def test_a_burst_in_one_poll_is_handled_in_the_order_it_was_written(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher, pipeline: UpdatePipeline
) -> None:
    # Written while the bot was away, all six come in its first getUpdates: the reports
    # are stored as one batch, and what follows them still sees them stored (`#3 closed`
    # right behind report 3, the reply to report 2) and each other's change, in order.
    chat, alice, bob = stub.supergroup(), stub.user("Alice"), stub.user("Bob")
    reports = [
        await stub.send_user_message(chat, alice, f"[monitoring] Point {n} down")
        for n in range(1, 4)
    ]
    closed_3 = await stub.send_user_message(chat, bob, "#3 closed")
    fixed = await stub.send_user_message(chat, bob, "fixed", reply_to=reports[1].message_id)
    closed_2 = await stub.send_user_message(chat, bob, "#2 closed")

    async with launch_bot():
        cards = [
            await stub.wait_for_message(chat, reply_to=asked)
            for asked in (closed_3, fixed, closed_2)
        ]
        await all_handled(stub, pipeline)

    assert [(card.text or "").split("\n")[0] for card in cards] == [
        "⚪ Incident #3 · closed · monitoring",
        "🟢 Incident #2 · resolved · monitoring",
        "⚪ Incident #2 · closed · monitoring",
    ]
    assert [(await store.get(n)).status for n in (1, 2, 3)] == [
        Status.OPEN,
        Status.CLOSED,
        Status.CLOSED,
    ]
