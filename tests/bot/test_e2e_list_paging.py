"""/list pages by key, so its buttons stay right while incidents come in."""

from __future__ import annotations

import pytest
from aiogram.types import InlineKeyboardButton

from bot.callbacks import ListPage
from bot.cards import Rendered, render_list_page
from storage.rules import Status
from storage.store import IncidentStore, NewIncident
from tests.bot.conftest import NOON, Scene, make_incident
from tests.telegram_stub import ChatMessage


async def add_incidents(store: IncidentStore, count: int, *, chat_id: int, first: int = 1) -> None:
    """Incidents of the chat `chat_id`, as if reported there over HTTP (no message)."""
    for number in range(first, first + count):
        await store.create(
            NewIncident(description=f"Problem {number}", source="monitoring", chat_id=chat_id)
        )


def shown_ids(message: ChatMessage) -> list[int]:
    lines = (message.text or "").split("\n")[1:]
    return [int(line.split(" · ")[0].removeprefix("#")) for line in lines]


async def press(scene: Scene, listing: ChatMessage, text: str) -> list[int]:
    """Press a button of the /list message; the incidents it shows then."""
    query = await scene.stub.press_button(scene.chat, scene.alice, listing, text=text)
    await scene.stub.wait_for_answer(query)
    return shown_ids(scene.stub.message(scene.chat, listing.message_id))


async def test_list_pages_forth_and_back_while_incidents_arrive(scene: Scene) -> None:
    stub, chat = scene.stub, scene.chat
    await add_incidents(scene.store, 65, chat_id=chat.id)
    await scene.store.change_status(60, Status.CLOSED)

    asked = await stub.send_user_message(chat, scene.alice, "/list open")
    listing = await stub.wait_for_message(chat, reply_to=asked)
    first = shown_ids(listing)
    second = await press(scene, listing, "Next ▶")
    third = await press(scene, listing, "Next ▶")
    # Newer incidents push the page numbers down; the pages found by key stay put.
    await add_incidents(scene.store, 5, chat_id=chat.id, first=66)
    back = await press(scene, listing, "◀ Prev")
    ahead = await press(scene, listing, "Next ▶")
    await press(scene, listing, "◀ Prev")
    newest = await press(scene, listing, "◀ Prev")

    assert first == [n for n in range(65, 44, -1) if n != 60]
    assert second == list(range(44, 24, -1))
    assert third == list(range(24, 4, -1))
    assert back == second
    assert ahead == third
    assert newest == [n for n in range(70, 49, -1) if n != 60]
    shown = stub.message(chat, listing.message_id)
    assert (shown.text or "").split("\n")[0] == (
        "Incidents · open · 1-20 of 69, newest first, times in UTC"
    )
    assert shown.button_texts == ["Next ▶"]


@pytest.mark.usefixtures("english")
def test_list_buttons_carry_the_keys_of_the_page_edges() -> None:
    incidents = [make_incident(id=number) for number in range(60, 40, -1)]

    second = render_list_page(incidents, total=100, status=None, page=1, now=NOON)
    third = render_list_page(incidents, total=100, status=None, page=2, now=NOON)

    assert [keys(button) for button in buttons(second)] == [(0, None, None), (2, 41, None)]
    assert [keys(button) for button in buttons(third)] == [(1, None, 60), (3, 41, None)]


def buttons(rendered: Rendered) -> list[InlineKeyboardButton]:
    assert rendered.reply_markup is not None
    return rendered.reply_markup.inline_keyboard[0]


def keys(button: InlineKeyboardButton) -> tuple[int, int | None, int | None]:
    page = ListPage.unpack(str(button.callback_data))
    return page.page, page.before, page.after
