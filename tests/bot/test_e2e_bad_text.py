"""End to end: control and invisible characters in reports, /new, edits and names."""

from __future__ import annotations

from tests.bot.conftest import Scene, all_delivered, all_handled


async def test_report_with_control_characters_is_stored_without_them(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    report = await stub.send_user_message(
        chat, scene.alice, "[monitoring] \x00Disk\x07 full\x1b on db-1\nsince 14:00"
    )
    card = await stub.wait_for_message(chat, reply_to=report)

    assert (card.text or "").split("\n")[1:3] == ["Disk full on db-1", "since 14:00"]
    assert (await scene.store.get(1)).description == "Disk full on db-1\nsince 14:00"


async def test_report_of_invisible_characters_only_is_told_what_is_missing(
    scene: Scene,
) -> None:
    stub, chat = scene.stub, scene.chat

    report = await stub.send_user_message(chat, scene.alice, "[monitoring] \u200b\ufeff\u2060")
    reply = await stub.wait_for_message(chat, reply_to=report)

    assert reply.text == (
        "What happened? Write it after the tag, e.g. [monitoring] Scooter #42 is not responding"
    )
    assert (await scene.store.list()).total == 0


async def test_new_command_with_invisible_text_only_is_not_stored(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    command = await stub.send_user_message(chat, scene.alice, "/new \u200b\x00\ufeff")
    reply = await stub.wait_for_message(chat, reply_to=command)

    assert reply.text == "Not stored: Description is empty"
    assert (await scene.store.list()).total == 0


async def test_edit_to_invisible_text_keeps_the_description(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    report = await stub.send_user_message(chat, scene.alice, "[monitoring] Scooter #42 down")
    card = await stub.wait_for_message(chat, reply_to=report)
    await all_delivered(scene.store)

    await stub.edit_user_message(chat, report, "[monitoring] \u200b\ufeff")
    await all_handled(stub, scene.pipeline)

    # Like an edit down to the bare tag: nothing to follow, so nothing changes.
    assert (await scene.store.get(1)).description == "Scooter #42 down"
    assert "Scooter #42 down" in (stub.message(chat, card.message_id).text or "")
    assert len(stub.sent_messages(chat)) == 1


async def test_edit_of_new_command_to_invisible_text_is_answered_not_stored(
    scene: Scene,
) -> None:
    stub, chat = scene.stub, scene.chat
    command = await stub.send_user_message(chat, scene.alice, "/new Scooter #42 down")
    await stub.wait_for_message(chat, reply_to=command)

    await stub.edit_user_message(chat, command, "/new \u200b")
    reply = await stub.wait_for(
        lambda: next(
            (
                message
                for message in stub.sent_messages(chat)
                if message.text == "Not stored: Description is empty"
            ),
            None,
        ),
        what="the answer to the edit",
    )

    assert reply.reply_to_message_id == command.message_id
    assert (await scene.store.get(1)).description == "Scooter #42 down"


async def test_edit_adding_control_characters_stores_them_removed(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    report = await stub.send_user_message(chat, scene.alice, "[monitoring] Scooter #42 down")
    card = await stub.wait_for_message(chat, reply_to=report)

    await stub.edit_user_message(chat, report, "[monitoring] \x00Scooter #43\x1b down")
    await stub.wait_for(lambda: "Scooter #43" in (stub.message(chat, card.message_id).text or ""))

    assert (await scene.store.get(1)).description == "Scooter #43 down"


async def test_names_are_cleaned_and_invisible_ones_left_out_of_the_card(
    scene: Scene,
) -> None:
    stub, chat = scene.stub, scene.chat
    blank = stub.user("\u3164", last_name="\u200b")
    noisy = stub.user("Bob\x00\x07")

    first = await stub.send_user_message(chat, blank, "[monitoring] Scooter #42 down")
    first_card = await stub.wait_for_message(chat, reply_to=first)
    second = await stub.send_user_message(chat, noisy, "[monitoring] Scooter #43 down")
    second_card = await stub.wait_for_message(chat, reply_to=second)

    assert first_card.text == "🔴 Incident #1 · open · monitoring\nScooter #42 down"
    assert second_card.text == (
        "🔴 Incident #2 · open · monitoring\nScooter #43 down\n\nReported by Bob"
    )
    assert (await scene.store.get(1)).created_by is None
    assert (await scene.store.get(2)).created_by == "Bob"


async def test_unknown_status_answer_repeats_only_the_start_of_a_long_word(
    scene: Scene,
) -> None:
    stub, chat = scene.stub, scene.chat

    listing = await stub.send_user_message(chat, scene.alice, "/list " + "x" * 4000)
    first = await stub.wait_for_message(chat, reply_to=listing)
    changing = await stub.send_user_message(chat, scene.alice, "/status 1 " + "y" * 4000)
    second = await stub.wait_for_message(chat, reply_to=changing)

    assert first.text == (
        f"Unknown status “{'x' * 64}…”. Valid statuses: open, in_progress, resolved, closed."
    )
    assert second.text == (
        f"Unknown status “{'y' * 64}…”. Valid statuses: open, in_progress, resolved, closed."
    )
