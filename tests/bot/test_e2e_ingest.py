"""End to end: reports in the chat become incidents with cards; edits and redelivery."""
# ruff: noqa: RUF001 - Russian text is Russian, not look-alike Latin

from __future__ import annotations

import pytest

from bot.pipeline import UpdatePipeline
from storage.store import CardRequest, IncidentStore, NewIncident
from tests.bot.conftest import BotLauncher, Scene, all_delivered, all_handled
from tests.telegram_stub import TelegramStub

pytestmark = pytest.mark.all_engines


async def test_report_becomes_incident_with_card_replying_to_it(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    report = await stub.send_user_message(
        chat, scene.alice, "[monitoring] Самокат #42 не отвечает"
    )
    card = await stub.wait_for_message(chat, reply_to=report)

    assert card.text == (
        "🔴 Incident #1 · open · monitoring\nСамокат #42 не отвечает\n\nReported by Alice Smith"
    )
    assert card.button_texts == [
        "🛠 In progress",
        "✅ Resolved",
        "🔒 Close",
        "🙋 Take",
        "🔕 1h",
        "🔕 4h",
        "📜 History",
    ]
    await all_delivered(scene.store)
    incident = await scene.store.get(1)
    assert (incident.source, incident.description, incident.created_by) == (
        "monitoring",
        "Самокат #42 не отвечает",
        "Alice Smith",
    )
    assert (incident.chat_id, incident.message_id) == (chat.id, report.message_id)
    assert (incident.card_chat_id, incident.card_message_id) == (chat.id, card.message_id)


async def test_report_keeps_line_breaks_and_alias_tag(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    report = await stub.send_user_message(
        chat, scene.alice, "  [Партнёр]\nAPI отвечает 500\nс 14:00\n"
    )
    card = await stub.wait_for_message(chat, reply_to=report)

    incident = await scene.store.get(1)
    assert (incident.source, incident.description) == ("partner", "API отвечает 500\nс 14:00")
    assert "API отвечает 500\nс 14:00" in (card.text or "")


async def test_photo_and_document_captions_become_incidents(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    photo = await stub.send_user_message(
        chat, scene.alice, photo=True, caption="[operator] Scooter lying in the river"
    )
    document = await stub.send_user_message(
        chat, scene.alice, document="log.txt", caption="[zabbix] disk full, log attached"
    )
    await stub.wait_for_message(chat, reply_to=photo)
    await stub.wait_for_message(chat, reply_to=document)

    page = await scene.store.list()
    assert [(item.source, item.description) for item in page.items] == [
        ("zabbix", "disk full, log attached"),
        ("operator", "Scooter lying in the river"),
    ]


async def test_plain_chat_gets_no_reply_and_no_incident(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    for text in ("hi all", "lunch?", "fixed", "#12 and #13 look alike", "/unknown"):
        await stub.send_user_message(chat, scene.alice, text)
    await all_handled(stub, scene.pipeline)

    assert stub.sent_messages(chat) == []
    assert (await scene.store.list()).total == 0


async def test_tag_without_text_gets_told_what_is_missing(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    report = await stub.send_user_message(chat, scene.alice, "[monitoring]")
    reply = await stub.wait_for_message(chat, reply_to=report)

    assert reply.text == (
        "What happened? Write it after the tag, e.g. [monitoring] Scooter #42 is not responding"
    )
    assert (await scene.store.list()).total == 0


async def test_redelivered_message_stores_nothing_new(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    report = await stub.send_user_message(chat, scene.alice, "[monitoring] Scooter #42 down")
    await stub.wait_for_message(chat, reply_to=report)

    # Telegram delivers the same message again (e.g. the offset was never confirmed).
    again = stub.push_update({"message": stub.message(chat, report.message_id).data})
    await stub.wait_confirmed(again)

    assert (await scene.store.list()).total == 1
    assert len(stub.sent_messages(chat)) == 1


async def test_card_queued_before_a_crash_is_sent_once_after_restart(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher, pipeline: UpdatePipeline
) -> None:
    chat, alice = stub.supergroup(), stub.user("Alice")
    report = await stub.send_user_message(chat, alice, "[monitoring] Scooter #42 down")
    # The first delivery stored the incident with its card queued, then the process died
    # before the sender got to the card and before the update was confirmed.
    await store.create(
        NewIncident(
            description="Scooter #42 down",
            source="monitoring",
            created_by="Alice",
            chat_id=chat.id,
            message_id=report.message_id,
        ),
        card=CardRequest(chat.id, reply_to_message_id=report.message_id),
    )

    async with launch_bot():
        card = await stub.wait_for_message(chat, reply_to=report)
        await all_handled(stub, pipeline)
        await all_delivered(store)

    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring")
    assert len(stub.sent_messages(chat)) == 1
    assert (await store.list()).total == 1
    assert (await store.get(1)).card_message_id == card.message_id


async def test_edit_updates_description_and_card_in_place(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    report = await stub.send_user_message(chat, scene.alice, "[monitoring] Scooter #42 down")
    card = await stub.wait_for_message(chat, reply_to=report)

    await stub.edit_user_message(chat, report, "[monitoring] Scooter #43 down, not #42")
    await stub.wait_for(lambda: "Scooter #43" in (stub.message(chat, card.message_id).text or ""))

    assert (await scene.store.get(1)).description == "Scooter #43 down, not #42"
    assert len(stub.sent_messages(chat)) == 1
    assert stub.message(chat, card.message_id).button_texts == [
        "🛠 In progress",
        "✅ Resolved",
        "🔒 Close",
        "🙋 Take",
        "🔕 1h",
        "🔕 4h",
        "📜 History",
    ]


async def test_edit_adding_forgotten_tag_reports_incident(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    message = await stub.send_user_message(chat, scene.alice, "Scooter #42 down")
    await all_handled(stub, scene.pipeline)

    await stub.edit_user_message(chat, message, "[monitoring] Scooter #42 down")
    card = await stub.wait_for_message(chat, reply_to=message)

    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring")


async def test_channel_post_becomes_incident(scene: Scene) -> None:
    stub = scene.stub
    channel = stub.channel("Monitoring alerts")

    post = await stub.post_channel(channel, "[monitoring] Payment gateway timeouts")
    card = await stub.wait_for_message(channel, reply_to=post)

    assert card.text == (
        "🔴 Incident #1 · open · monitoring\nPayment gateway timeouts\n\n"
        "Reported by Monitoring alerts"
    )


async def test_report_in_forum_topic_gets_card_in_same_topic(scene: Scene) -> None:
    stub = scene.stub
    forum = stub.supergroup("Support", forum=True)
    topic = stub.create_topic(forum, "Payments")

    report = await stub.send_user_message(
        forum, scene.alice, "[partner] Refunds stuck", message_thread_id=topic
    )
    card = await stub.wait_for_message(forum, reply_to=report)

    assert card.message_thread_id == topic
    assert (card.text or "").startswith("🔴 Incident #1 · open · partner")


async def test_markup_characters_are_shown_exactly_as_written(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    written = "<script>alert('x')</script> & *bold* _italic_ [x](y) &amp; <b>"

    report = await stub.send_user_message(chat, scene.alice, f"[operator] {written}")
    card = await stub.wait_for_message(chat, reply_to=report)

    assert (card.text or "").split("\n")[1] == written
    assert (await scene.store.get(1)).description == written


async def test_longest_report_gets_card_cut_to_fit(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    tag = "[monitoring] "
    text = tag + "&<" * ((4096 - len(tag)) // 2)

    report = await stub.send_user_message(chat, scene.alice, text)
    card = await stub.wait_for_message(chat, reply_to=report)

    assert "The description is cut to fit Telegram's message limit." in (card.text or "")
    assert (await scene.store.get(1)).description == text.removeprefix(tag)


async def test_russian_user_gets_russian_card(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    report = await stub.send_user_message(chat, scene.ivan, "[мониторинг] Самокат #42 не отвечает")
    card = await stub.wait_for_message(chat, reply_to=report)

    assert card.text == (
        "🔴 Инцидент #1 · открыт · monitoring\nСамокат #42 не отвечает\n\nСообщил(а): Ivan"
    )
    assert card.button_texts == [
        "🛠 В работу",
        "✅ Решено",
        "🔒 Закрыть",
        "🙋 Беру",
        "🔕 1ч",
        "🔕 4ч",
        "📜 История",
    ]


async def test_edit_of_new_command_updates_description(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    command = await stub.send_user_message(chat, scene.alice, "/new Scooter #42 down")
    card = await stub.wait_for_message(chat, reply_to=command)

    await stub.edit_user_message(chat, command, "/new [partner] Scooter #42 down at the partner")
    await stub.wait_for(
        lambda: "at the partner" in (stub.message(chat, card.message_id).text or "")
    )

    incident = await scene.store.get(1)
    assert (incident.source, incident.description) == (
        "operator",
        "Scooter #42 down at the partner",
    )
