"""End to end: a card's buttons change the status, edit the card and are always answered."""

from __future__ import annotations

import logging

import pytest

from storage.rules import Status
from tests.bot.conftest import Scene, all_handled
from tests.telegram_stub import ChatMessage

pytestmark = pytest.mark.all_engines


async def report(scene: Scene, text: str = "[monitoring] Scooter #42 down") -> ChatMessage:
    message = await scene.stub.send_user_message(scene.chat, scene.alice, text)
    return await scene.stub.wait_for_message(scene.chat, reply_to=message)


async def test_button_changes_status_and_edits_card_in_place(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await report(scene)
    bob = stub.user("Bob")

    query = await stub.press_button(chat, bob, card, text="🛠 In progress")
    answer = await stub.wait_for_answer(query)

    assert (answer.text, answer.show_alert) == ("Incident #1 is now in progress.", False)
    edited = await stub.wait_for(
        lambda: stub.message(chat, card.message_id).edited and stub.message(chat, card.message_id)
    )
    assert edited.text == (
        "🟡 Incident #1 · in progress · monitoring\nScooter #42 down\n\n"
        "Reported by Alice Smith\nStatus set by Bob"
    )
    assert edited.button_texts == [
        "✅ Resolved",
        "🔒 Close",
        "🙋 Take",
        "🔕 1h",
        "🔕 4h",
        "📜 History",
    ]
    assert len(stub.sent_messages(chat)) == 1
    incident = await scene.store.get(1)
    assert (incident.status, incident.updated_by) == (Status.IN_PROGRESS, "Bob")


async def test_closing_by_button_leaves_card_without_buttons(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await report(scene)

    query = await stub.press_button(chat, scene.alice, card, text="Close")
    await stub.wait_for_answer(query)

    closed = await stub.wait_for(
        lambda: stub.message(chat, card.message_id).edited and stub.message(chat, card.message_id)
    )
    assert (closed.text or "").startswith("⚪ Incident #1 · closed · monitoring")
    assert closed.button_texts == ["📜 History"]


async def test_stale_press_gets_alert_and_refreshed_card(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await report(scene)
    stale_in_progress = card.button("In progress").callback_data
    # Someone else resolves it first, e.g. over HTTP; this card still shows "open".
    await scene.store.change_status(1, Status.RESOLVED, changed_by="api")

    query = await stub.press_button(chat, scene.alice, card, data=stale_in_progress)
    answer = await stub.wait_for_answer(query)
    await all_handled(stub, scene.pipeline)

    assert answer.show_alert is True
    assert answer.text == "Incident #1 is resolved now: someone changed it first. Look again."
    refreshed = stub.message(chat, card.message_id)
    assert (refreshed.text or "").startswith("🟢 Incident #1 · resolved · monitoring")
    assert refreshed.button_texts == ["🛠 In progress", "🔒 Close", "🙋 Take", "📜 History"]
    assert (await scene.store.get(1)).status == Status.RESOLVED


async def test_press_on_outdated_keyboard_of_closed_incident_is_refused(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await report(scene)
    old_resolve = card.button("Resolved").callback_data
    close = await stub.press_button(chat, scene.alice, card, text="Close")
    await stub.wait_for_answer(close)

    # A client still showing the old keyboard sends the old button's data.
    query = await stub.press_button(chat, scene.alice, card, data=old_resolve, check=False)
    answer = await stub.wait_for_answer(query)
    await all_handled(stub, scene.pipeline)

    assert answer.show_alert is True
    assert answer.text == "Incident #1 is closed now: someone changed it first. Look again."
    assert stub.message(chat, card.message_id).button_texts == ["📜 History"]
    assert (await scene.store.get(1)).status == Status.CLOSED


async def test_second_press_of_same_button_is_answered_already(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await report(scene)
    data = card.button("Resolved").callback_data

    first = await stub.press_button(chat, scene.alice, card, data=data)
    second = await stub.press_button(chat, scene.ivan, card, data=data, check=False)

    assert (await stub.wait_for_answer(first)).text == "Incident #1 is now resolved."
    assert (await stub.wait_for_answer(second)).text == "Инцидент #1 уже в статусе «решён»."


async def test_press_for_missing_incident_gets_alert(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await report(scene)

    query = await stub.press_button(chat, scene.alice, card, data="s:999:o:r", check=False)
    answer = await stub.wait_for_answer(query)

    assert (answer.text, answer.show_alert) == ("Incident #999 not found", True)


async def test_press_with_unknown_data_is_still_answered(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await report(scene)

    query = await stub.press_button(chat, scene.alice, card, data="s:1:x:r", check=False)
    answer = await stub.wait_for_answer(query)

    assert (answer.text, answer.show_alert) == ("This button no longer works.", False)
    assert (await scene.store.get(1)).status == Status.OPEN


@pytest.mark.parametrize(
    "data",
    [
        "s:99999999999999999999:o:c",
        "s:0:o:c",
        "l:a:1:99999999999999999999:",
        "l:a:1::99999999999999999999",
        "l:a:99999999999999999999::",
        "l:a:-1::",
    ],
)
async def test_press_with_data_past_64_bits_is_a_button_that_no_longer_works(
    scene: Scene, caplog: pytest.LogCaptureFixture, data: str
) -> None:
    stub, chat = scene.stub, scene.chat
    card = await report(scene)

    with caplog.at_level(logging.INFO):
        query = await stub.press_button(chat, scene.alice, card, data=data, check=False)
        answer = await stub.wait_for_answer(query)
        await all_handled(stub, scene.pipeline)

    assert answer.text == "This button no longer works."
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.INFO] == []
    assert (await scene.store.get(1)).status == Status.OPEN
