"""End to end: /start, /help, /new, /list and /status, and the command menu."""
# ruff: noqa: RUF001 - Russian text is Russian, not look-alike Latin

from __future__ import annotations

from storage.rules import Status
from storage.store import IncidentStore, NewIncident
from tests.bot.conftest import Scene, all_handled

STATUS_USAGE = (
    "Usage: /status <id> [new status], e.g. /status 17 resolved."
    " Statuses: open, in_progress, resolved, closed."
)


async def add_incidents(
    store: IncidentStore, count: int, *, chat_id: int, source: str = "monitoring"
) -> None:
    """Incidents of the chat `chat_id`, as if reported there over HTTP (no message)."""
    for number in range(1, count + 1):
        await store.create(
            NewIncident(description=f"Problem {number}", source=source, chat_id=chat_id)
        )


async def test_start_and_help_explain_format_and_commands(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    for command in ("/start", "/help", "/help@incident_test_bot"):
        asked = await stub.send_user_message(chat, scene.alice, command)
        reply = await stub.wait_for_message(chat, reply_to=asked)
        text = reply.text or ""
        assert text.startswith("I turn chat messages into tracked incidents.")
        assert "[monitoring] Scooter #42 is not responding" in text
        for name in ("/new", "/list", "/status", "/help"):
            assert f"\n{name} — " in text


async def test_command_for_another_bot_is_ignored(scene: Scene) -> None:
    await scene.stub.send_user_message(scene.chat, scene.alice, "/list@some_other_bot")
    await all_handled(scene.stub, scene.pipeline)

    assert scene.stub.sent_messages(scene.chat) == []


async def test_startup_registers_command_menu_in_english_and_russian(scene: Scene) -> None:
    english = scene.stub.commands()
    russian = scene.stub.commands(language_code="ru")

    assert english is not None and russian is not None
    menu = ["new", "list", "status", "take", "release", "mine", "note", "help"]
    assert [c["command"] for c in english] == menu
    assert [c["command"] for c in russian] == menu
    assert english[0]["description"] == "Report an incident: /new [source] text"
    assert russian[0]["description"] == "Сообщить об инциденте: /new [источник] текст"


async def test_new_creates_incident_with_default_or_given_source(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    plain = await stub.send_user_message(chat, scene.alice, "/new Customer cannot unlock")
    tagged = await stub.send_user_message(chat, scene.alice, "/new [Партнер] Refunds\nstuck")
    first = await stub.wait_for_message(chat, reply_to=plain)
    second = await stub.wait_for_message(chat, reply_to=tagged)

    assert (first.text or "").startswith(
        "🔴 Incident #1 · open · operator\nCustomer cannot unlock"
    )
    assert (second.text or "").startswith("🔴 Incident #2 · open · partner\nRefunds\nstuck")


async def test_new_without_text_gets_usage_or_missing_description(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    bare = await stub.send_user_message(chat, scene.alice, "/new")
    tag_only = await stub.send_user_message(chat, scene.alice, "/new [monitoring]")

    assert (await stub.wait_for_message(chat, reply_to=bare)).text == (
        "Usage: /new [source] what happened"
    )
    assert (await stub.wait_for_message(chat, reply_to=tag_only)).text == (
        "What happened? Write it after the tag, e.g. [monitoring] Scooter #42 is not responding"
    )
    assert (await scene.store.list()).total == 0


async def test_list_empty_says_no_incidents(scene: Scene) -> None:
    asked = await scene.stub.send_user_message(scene.chat, scene.alice, "/list")
    reply = await scene.stub.wait_for_message(scene.chat, reply_to=asked)

    assert reply.text == "No incidents."
    assert reply.buttons == []


async def test_list_shows_newest_first_filtered_by_status(scene: Scene) -> None:
    stub, chat, store = scene.stub, scene.chat, scene.store
    await add_incidents(store, 3, chat_id=chat.id)
    await store.change_status(2, Status.IN_PROGRESS)

    everything = await stub.send_user_message(chat, scene.alice, "/list")
    in_progress = await stub.send_user_message(chat, scene.alice, "/list in progress")
    closed = await stub.send_user_message(chat, scene.alice, "/list closed")

    lines = ((await stub.wait_for_message(chat, reply_to=everything)).text or "").split("\n")
    assert lines[0] == "Incidents · 1-3 of 3, newest first, times in UTC"
    assert [line.split(" · ")[:3] for line in lines[1:]] == [
        ["#3", "open", "monitoring"],
        ["#2", "in progress", "monitoring"],
        ["#1", "open", "monitoring"],
    ]
    assert all(line.endswith(f"Problem {line[1]}") for line in lines[1:])
    filtered = (await stub.wait_for_message(chat, reply_to=in_progress)).text or ""
    assert filtered.split("\n")[1:] == [lines[2]]
    assert (await stub.wait_for_message(chat, reply_to=closed)).text == (
        "No incidents with status closed."
    )


async def test_list_unknown_status_names_valid_ones(scene: Scene) -> None:
    asked = await scene.stub.send_user_message(scene.chat, scene.alice, "/list on_fire")
    reply = await scene.stub.wait_for_message(scene.chat, reply_to=asked)

    assert reply.text == (
        "Unknown status “on_fire”. Valid statuses: open, in_progress, resolved, closed."
    )


async def test_list_pages_with_prev_and_next_buttons(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    await add_incidents(scene.store, 45, chat_id=chat.id)

    asked = await stub.send_user_message(chat, scene.alice, "/list")
    page = await stub.wait_for_message(chat, reply_to=asked)
    assert (page.text or "").split("\n")[0] == "Incidents · 1-20 of 45, newest first, times in UTC"
    assert len((page.text or "").split("\n")) == 21
    assert page.button_texts == ["Next ▶"]

    query = await stub.press_button(chat, scene.alice, page, text="Next ▶")
    await stub.wait_for_answer(query)
    second = stub.message(chat, page.message_id)
    assert (second.text or "").split("\n")[1].startswith("#25 · open")
    assert second.button_texts == ["◀ Prev", "Next ▶"]

    query = await stub.press_button(chat, scene.alice, second, text="Next ▶")
    await stub.wait_for_answer(query)
    last = stub.message(chat, page.message_id)
    assert (last.text or "").split("\n")[0].startswith("Incidents · 41-45 of 45")
    assert last.button_texts == ["◀ Prev"]
    assert len(stub.sent_messages(chat)) == 1


async def test_status_changes_status_and_replies_with_card(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    report = await stub.send_user_message(chat, scene.alice, "[monitoring] Scooter #42 down")
    card = await stub.wait_for_message(chat, reply_to=report)

    asked = await stub.send_user_message(chat, scene.alice, "/status 1 in progress")
    reply = await stub.wait_for_message(chat, reply_to=asked)

    assert (reply.text or "").startswith("🟡 Incident #1 · in progress · monitoring")
    assert (reply.text or "").endswith("Status set by Alice Smith")
    assert reply.button_texts == [
        "✅ Resolved",
        "🔒 Close",
        "🙋 Take",
        "🔕 1h",
        "🔕 4h",
        "📜 History",
    ]
    incident = await scene.store.get(1)
    assert (incident.status, incident.updated_by) == (Status.IN_PROGRESS, "Alice Smith")
    # The original card follows, so its buttons are never out of date.
    await stub.wait_for(
        lambda: (
            stub.message(chat, card.message_id).button_texts
            == ["✅ Resolved", "🔒 Close", "🙋 Take", "🔕 1h", "🔕 4h", "📜 History"]
        )
    )


async def test_status_of_missing_incident_says_not_found(scene: Scene) -> None:
    asked = await scene.stub.send_user_message(scene.chat, scene.alice, "/status 999 resolved")
    reply = await scene.stub.wait_for_message(scene.chat, reply_to=asked)

    assert reply.text == "Incident #999 not found"


async def test_status_forbidden_transition_says_from_to_and_allowed(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    await add_incidents(scene.store, 2, chat_id=chat.id)
    await scene.store.change_status(1, Status.CLOSED)
    await scene.store.change_status(2, Status.RESOLVED)

    closed = await stub.send_user_message(chat, scene.alice, "/status 1 in_progress")
    resolved = await stub.send_user_message(chat, scene.alice, "/status #2 open")

    assert (await stub.wait_for_message(chat, reply_to=closed)).text == (
        "Incident #1 cannot go from closed to in progress. Allowed from closed: none, it is final."
    )
    assert (await stub.wait_for_message(chat, reply_to=resolved)).text == (
        "Incident #2 cannot go from resolved to open. Allowed from resolved: in progress, closed."
    )
    assert (await scene.store.get(1)).status == Status.CLOSED


async def test_status_with_missing_or_bad_arguments_gets_usage(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    for command in ("/status", "/status abc", "/status abc resolved", "/status -1"):
        asked = await stub.send_user_message(chat, scene.alice, command)
        assert (await stub.wait_for_message(chat, reply_to=asked)).text == STATUS_USAGE
    asked = await stub.send_user_message(chat, scene.alice, "/status 1 on_fire")
    assert (await stub.wait_for_message(chat, reply_to=asked)).text == (
        "Unknown status “on_fire”. Valid statuses: open, in_progress, resolved, closed."
    )


async def test_status_with_id_only_shows_card(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    await add_incidents(scene.store, 1, chat_id=chat.id)

    asked = await stub.send_user_message(chat, scene.alice, "/status 1")
    reply = await stub.wait_for_message(chat, reply_to=asked)

    lines = (reply.text or "").splitlines()
    # The card, then its latest events.
    assert lines[:2] == ["🔴 Incident #1 · open · monitoring", "Problem 1"]
    assert lines[3] == "Latest events (1 of 1), times in UTC:"
    assert lines[4].endswith("🆕 someone reported it (chat)")
    assert reply.button_texts == [
        "🛠 In progress",
        "✅ Resolved",
        "🔒 Close",
        "🙋 Take",
        "🔕 1h",
        "🔕 4h",
        "📜 History",
    ]
    assert (await scene.store.get(1)).status == Status.OPEN


async def test_russian_user_gets_russian_replies(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat

    missing = await stub.send_user_message(chat, scene.ivan, "/status 999 решено")
    unknown = await stub.send_user_message(chat, scene.ivan, "/list горит")
    empty = await stub.send_user_message(chat, scene.ivan, "/list")
    helped = await stub.send_user_message(chat, scene.ivan, "/help")

    assert (await stub.wait_for_message(chat, reply_to=missing)).text == (
        "Инцидент #999 не найден"
    )
    assert (await stub.wait_for_message(chat, reply_to=unknown)).text == (
        "Неизвестный статус «горит». Допустимые статусы: open, in_progress, resolved, closed."
    )
    assert (await stub.wait_for_message(chat, reply_to=empty)).text == "Инцидентов нет."
    help_text = (await stub.wait_for_message(chat, reply_to=helped)).text or ""
    assert help_text.startswith("Я превращаю сообщения в чате в инциденты")
