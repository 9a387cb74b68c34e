"""End to end: who is on it and what happened — Take, notes by reply, /note, /take,
/release, /mine, /status with the latest events, the 📜 History button."""

from __future__ import annotations

import httpx
import pytest
from aiogram.types import User
from fastapi import FastAPI

from api.app import create_app
from storage.models import EventKind
from storage.rules import Status
from storage.store import Actor
from tests.bot.conftest import Scene, all_handled
from tests.telegram_stub import ChatMessage, TelegramStub


async def _report(scene: Scene, who: User, text: str = "[monitoring] Router down") -> ChatMessage:
    message = await scene.stub.send_user_message(scene.chat, who, text)
    return await scene.stub.wait_for_message(scene.chat, reply_to=message)


async def _edited_card(stub: TelegramStub, card: ChatMessage, version: int) -> ChatMessage:
    """The card once it has been edited `version` times."""
    return await stub.wait_for(
        lambda: (
            len(stub.message(card.chat_id, card.message_id).history) >= version
            and stub.message(card.chat_id, card.message_id)
        ),
        what=f"edit {version} of the card",
    )


@pytest.mark.all_engines
async def test_report_take_note_resolve_is_a_timeline_of_five_events(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    anna, oleg = scene.alice, stub.user("Oleg")
    card = await _report(scene, anna)
    assert "🙋 Take" in card.button_texts
    assert "📜 History" in card.button_texts

    take = await stub.wait_for_answer(await stub.press_button(chat, oleg, card, text="Take"))
    taken = await _edited_card(stub, card, 1)
    taken_text = taken.text or ""
    note = await stub.send_user_message(
        chat, oleg, "restarted the router", reply_to=card.message_id
    )
    await stub.wait_for(lambda: stub.message(chat, note.message_id).reactions, what="a reaction")
    resolve = await stub.wait_for_answer(
        await stub.press_button(chat, oleg, taken, text="Resolved")
    )
    resolved = await _edited_card(stub, card, 2)
    await all_handled(stub, scene.pipeline)

    assert take.text == "You own incident #1 now."
    assert "Owner: Oleg" in taken_text
    assert taken_text.startswith("🟡 Incident #1 · in progress")
    assert stub.message(chat, note.message_id).reactions == ["✍"]
    assert resolve.text == "Incident #1 is now resolved."
    assert (resolved.text or "").startswith("🟢 Incident #1 · resolved")
    # The note was acknowledged, not answered with a card.
    assert not [m for m in stub.sent_messages(chat) if m.reply_to_message_id == note.message_id]
    events = (await scene.store.events(1)).items
    assert [(e.kind, e.actor, e.actor_id) for e in events] == [
        (EventKind.CREATED, "Alice Smith", anna.id),
        (EventKind.OWNER_SET, "Oleg", oleg.id),
        (EventKind.STATUS_CHANGED, "Oleg", oleg.id),
        (EventKind.NOTE, "Oleg", oleg.id),
        (EventKind.STATUS_CHANGED, "Oleg", oleg.id),
    ]
    assert events[3].text == "restarted the router"

    shown = await stub.send_user_message(chat, anna, "/status 1")
    status = await stub.wait_for_message(chat, reply_to=shown)
    lines = (status.text or "").splitlines()
    latest = lines[lines.index("Latest events (5 of 5), times in UTC:") + 1 :]
    assert [line.split(" ", 1)[1] for line in latest] == [
        "🆕 Alice Smith reported it (chat)",
        "🙋 Oleg took it",
        "🔄 Oleg: open → in progress",
        "📝 Oleg: restarted the router",
        "🔄 Oleg: in progress → resolved",
    ]

    app: FastAPI = create_app(scene.store, api_key=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        timeline = (await client.get("/incidents/1/events")).json()
    assert [(e["kind"], e["actor"]) for e in timeline] == [
        ("created", "Alice Smith"),
        ("owner_set", "Oleg"),
        ("status_changed", "Oleg"),
        ("note", "Oleg"),
        ("status_changed", "Oleg"),
    ]


async def test_taking_over_from_someone_needs_a_second_press(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    oleg, anna = stub.user("Oleg"), scene.alice
    card = await _report(scene, anna)
    await stub.wait_for_answer(await stub.press_button(chat, oleg, card, text="Take"))
    owned = await _edited_card(stub, card, 1)

    first = await stub.wait_for_answer(await stub.press_button(chat, anna, owned, text="Take"))
    asking = await _edited_card(stub, card, 2)
    second = await stub.wait_for_answer(
        await stub.press_button(chat, anna, asking, text="Take over from Oleg")
    )
    await all_handled(stub, scene.pipeline)

    assert first.show_alert
    assert first.text == "Oleg is on incident #1. Press “Take over” to take it from them."
    assert (await scene.store.get(1)).owner_name == "Alice Smith"
    assert second.text == "You own incident #1 now."
    final = await _edited_card(stub, card, 3)
    assert "Owner: Alice Smith" in (final.text or "")
    assert "🙋 Take" in final.button_texts


async def test_take_release_mine_and_note_commands(scene: Scene) -> None:
    stub, chat, anna = scene.stub, scene.chat, scene.alice
    for n in range(3):
        await _report(scene, anna, f"[monitoring] Router {n} down")

    async def say(text: str) -> ChatMessage:
        sent = await stub.send_user_message(chat, anna, text)
        return await stub.wait_for_message(chat, reply_to=sent)

    took = await say("/take 2")
    await say("/take 3")
    released = await say("/release 3")
    mine = await say("/mine")
    listed = await say("/list mine")
    listed_in_progress = await say("/list in progress mine")
    note = await stub.send_user_message(chat, anna, "/note 2 rebooted the switch")
    await stub.wait_for(lambda: stub.message(chat, note.message_id).reactions, what="a reaction")
    missing = await say("/take 99")
    usage = await say("/take")

    assert "Owner: Alice Smith" in (took.text or "")
    assert "Owner:" not in (released.text or "")
    assert (mine.text or "").splitlines()[0] == (
        "Yours, unresolved · 1 of 1, newest first, times in UTC"
    )
    assert (mine.text or "").splitlines()[1].startswith("#2 · in progress · monitoring")
    assert (await scene.store.events(2)).items[-1].text == "rebooted the switch"
    listed_lines = (listed.text or "").splitlines()
    assert listed_lines[0].startswith("Incidents · yours · 1-1 of 1")
    assert listed_lines[1].startswith("#2 · in progress")
    assert (listed_in_progress.text or "").startswith("Incidents · in progress · yours · 1-1 of 1")
    assert missing.text == "Incident #99 not found"
    assert usage.text == "Usage: /take <id>, e.g. /take 17"


async def test_a_note_where_reactions_are_off_is_acknowledged_in_one_line(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await _report(scene, scene.alice)
    stub.turn_reactions_off(chat)

    note = await stub.send_user_message(chat, scene.ivan, "смотрю", reply_to=card.message_id)
    answer = await stub.wait_for_message(chat, reply_to=note)

    assert answer.text == "📝 Записано в #1."
    assert (await scene.store.events(1)).items[-1].text == "смотрю"


async def test_a_reply_to_other_messages_is_no_note(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    await _report(scene, scene.alice)
    chatter = await stub.send_user_message(chat, scene.ivan, "обед?")

    await stub.send_user_message(chat, scene.alice, "да", reply_to=chatter.message_id)
    await all_handled(stub, scene.pipeline)

    assert (await scene.store.events(1)).total == 1
    assert stub.sent_messages(chat)[-1].text.startswith("🔴 Incident #1")


async def test_history_button_pages_the_whole_timeline(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await _report(scene, scene.alice)
    for n in range(20):
        await scene.store.add_note(1, f"note {n}", Actor("Oleg", 5))

    await stub.wait_for_answer(await stub.press_button(chat, scene.alice, card, text="History"))
    history = await stub.wait_for_message(chat, reply_to=card)
    assert (history.text or "").splitlines()[0] == (
        "History of incident #1 · 1-15 of 21, times in UTC"
    )
    await stub.wait_for_answer(await stub.press_button(chat, scene.alice, history, text="Next"))
    second = await stub.wait_for(
        lambda: (
            stub.message(chat, history.message_id).edited
            and stub.message(chat, history.message_id)
        ),
        what="the next page",
    )

    assert (second.text or "").splitlines()[0] == (
        "History of incident #1 · 16-21 of 21, times in UTC"
    )
    assert (second.text or "").splitlines()[-1].endswith("📝 Oleg: note 19")
    assert second.button_texts == ["◀ Prev"]
    assert len(second.text or "") <= 4096


@pytest.mark.usefixtures("scene")
async def test_closed_cards_keep_history_but_offer_no_take(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    card = await _report(scene, scene.alice)

    await stub.wait_for_answer(await stub.press_button(chat, scene.alice, card, text="Close"))
    closed = await _edited_card(stub, card, 1)

    assert closed.button_texts == ["📜 History"]
    assert (await scene.store.get(1)).status == Status.CLOSED
