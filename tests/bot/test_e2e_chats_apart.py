"""End to end: served chats are separate worlds. A chat's commands, replies and buttons see
and change only its own incidents (and those of the group it was upgraded from); another
chat's are "not found". The HTTP API sees every incident."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiogram.types import Chat

from api.app import create_app
from bot.callbacks import ListPage, StatusButton
from bot.cards import render_card
from bot.factory import create_bot
from bot.i18n import create_i18n
from bot.pipeline import UpdatePipeline
from storage.rules import Status
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher, all_delivered, all_handled, make_settings
from tests.telegram_stub import TelegramStub

CHAT_A = -1_009_000_000_042
CHAT_B = -1_009_000_000_043


@pytest.fixture
def chat_a(stub: TelegramStub) -> Chat:
    return stub.supergroup("On-call A", chat_id=CHAT_A)


@pytest.fixture
def chat_b(stub: TelegramStub) -> Chat:
    return stub.supergroup("On-call B", chat_id=CHAT_B)


@pytest.fixture
async def http(store: IncidentStore) -> AsyncIterator[httpx.AsyncClient]:
    """The real HTTP API, announcing in chat A (NOTIFY_CHAT_ID) as main.py wires it."""
    app = create_app(store, api_key=None, announce_chat_id=CHAT_A)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def _ask(stub: TelegramStub, chat: Chat, text: str) -> str:
    asked = await stub.send_user_message(chat, stub.user("Bob"), text)
    return (await stub.wait_for_message(chat, reply_to=asked)).text or ""


async def test_other_chat_finds_nothing_and_changes_nothing(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    pipeline: UpdatePipeline,
    database_url: str,
    chat_a: Chat,
    chat_b: Chat,
) -> None:
    alice, mallory = stub.user("Alice"), stub.user("Mallory")
    async with launch_bot(allowed_chat_ids=frozenset({CHAT_A, CHAT_B})):
        report = await stub.send_user_message(chat_a, alice, "[monitoring] A is down")
        card = await stub.wait_for_message(chat_a, reply_to=report)
        await all_delivered(store)
        answers = [
            await _ask(stub, chat_b, text)
            for text in ("#1 closed", "/status 1", "/status 1 closed", "/list", "/list open")
        ]
        listing = await stub.send_user_message(chat_b, mallory, "/list")
        listed = await stub.wait_for_message(chat_b, reply_to=listing)
        # Button data naming chat A's incident, pressed in chat B: a status button, and
        # /list paging keys around it.
        closing = StatusButton.for_change(1, Status.OPEN, Status.CLOSED).pack()
        forged_status = await stub.press_button(
            chat_b, mallory, listed.message_id, closing, check=False
        )
        status_answer = await stub.wait_for_answer(forged_status)
        for page in (
            ListPage.for_page(None, 1, before=2).pack(),
            ListPage.for_page(Status.OPEN, 1, after=1).pack(),
            "l:o:1::0",  # data no button carries: refused, as no longer working
            ListPage.for_page(None, 1).pack(),
        ):
            query = await stub.press_button(chat_b, mallory, listed.message_id, page, check=False)
            await stub.wait_for_answer(query)
            assert "#1" not in (stub.message(chat_b, listed.message_id).text or "")
        # A card of chat A's incident that reached chat B (as /status 1 there once posted
        # it): a reply to it in chat B changes nothing either.
        i18n = create_i18n()
        with i18n.context(), i18n.use_locale("en"):
            rendered = render_card(await store.get(1))
        other_bot = create_bot(make_settings(stub, database_url))
        try:
            stray = await other_bot.send_message(
                CHAT_B, rendered.text, reply_markup=rendered.reply_markup
            )
        finally:
            await other_bot.session.close()
        reply = await stub.send_user_message(chat_b, mallory, "closed", reply_to=stray.message_id)
        replied = await stub.wait_for_message(chat_b, reply_to=reply)
        await all_handled(stub, pipeline)

    assert answers == [
        "Incident #1 not found",
        "Incident #1 not found",
        "Incident #1 not found",
        "No incidents.",
        "No incidents with status open.",
    ]
    assert status_answer.text == "Incident #1 not found"
    assert status_answer.show_alert
    assert replied.text == "Incident #1 not found"
    incident = await store.get(1)
    assert (incident.status, incident.updated_by) == (Status.OPEN, "Alice")
    assert (stub.message(chat_a, card.message_id).text or "").startswith(
        "🔴 Incident #1 · open · monitoring"
    )


async def test_own_chat_sees_and_changes_its_incidents_beside_another_chats(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher, chat_a: Chat, chat_b: Chat
) -> None:
    alice, bob = stub.user("Alice"), stub.user("Bob")
    async with launch_bot(allowed_chat_ids=frozenset({CHAT_A, CHAT_B})):
        for chat, person, text in (
            (chat_a, alice, "[monitoring] A one"),
            (chat_b, bob, "[monitoring] B one"),
            (chat_a, alice, "[monitoring] A two"),
        ):
            report = await stub.send_user_message(chat, person, text)
            await stub.wait_for_message(chat, reply_to=report)
        listed_a = await _ask(stub, chat_a, "/list")
        listed_b = await _ask(stub, chat_b, "/list")
        shown = await _ask(stub, chat_a, "/status 3")
        changed = await _ask(stub, chat_a, "#1 in progress")
        changed_b = await _ask(stub, chat_b, "/status 2 resolved")
        open_in_a = await _ask(stub, chat_a, "/list open")

    lines_a, lines_b = listed_a.split("\n"), listed_b.split("\n")
    assert lines_a[0] == "Incidents · 1-2 of 2, newest first, times in UTC"
    assert [line.split(" · ")[0] for line in lines_a[1:]] == ["#3", "#1"]
    assert lines_b[0] == "Incidents · 1-1 of 1, newest first, times in UTC"
    assert [line.split(" · ")[0] for line in lines_b[1:]] == ["#2"]
    assert shown.startswith("🔴 Incident #3 · open")
    assert changed.startswith("🟡 Incident #1 · in progress")
    assert changed_b.startswith("🟢 Incident #2 · resolved")
    assert open_in_a.split("\n")[0] == "Incidents · open · 1-1 of 1, newest first, times in UTC"
    assert (await store.get(1)).status == Status.IN_PROGRESS


async def test_supergroup_keeps_the_incidents_of_the_group_it_was(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    pipeline: UpdatePipeline,
    chat_b: Chat,
) -> None:
    group, alice = stub.group("On-call"), stub.user("Alice")
    async with launch_bot(allowed_chat_ids=frozenset({group.id, CHAT_B})):
        report = await stub.send_user_message(group, alice, "[monitoring] before the upgrade")
        await stub.wait_for_message(group, reply_to=report)
        await _ask(stub, chat_b, "[monitoring] B's own")
        supergroup = stub.migrate_to_supergroup(group)
        await all_handled(stub, pipeline)
        report = await stub.send_user_message(supergroup, alice, "[monitoring] after it")
        await stub.wait_for_message(supergroup, reply_to=report)
        listed = await _ask(stub, supergroup, "/list")
        shown = await _ask(stub, supergroup, "/status 1")
        changed = await _ask(stub, supergroup, "#1 resolved")
        not_theirs = await _ask(stub, supergroup, "#2 closed")
        listed_by_b = await _ask(stub, chat_b, "/list")
    # The upgrade is remembered: after a restart the supergroup still sees the group's.
    async with launch_bot(allowed_chat_ids=frozenset({group.id, CHAT_B})):
        after_restart = await _ask(stub, supergroup, "/list resolved")

    lines = listed.split("\n")
    assert lines[0] == "Incidents · 1-2 of 2, newest first, times in UTC"
    assert [line.split(" · ")[0] for line in lines[1:]] == ["#3", "#1"]
    assert shown.startswith("🔴 Incident #1 · open")
    assert changed.startswith("🟢 Incident #1 · resolved")
    assert not_theirs == "Incident #2 not found"
    assert listed_by_b.split("\n")[0] == "Incidents · 1-1 of 1, newest first, times in UTC"
    assert after_restart.split("\n")[1].startswith("#1 · resolved")
    assert (await store.get(1)).status == Status.RESOLVED
    assert (await store.get(2)).status == Status.OPEN


async def test_http_incidents_belong_to_the_notify_chat_and_http_sees_all(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    http: httpx.AsyncClient,
    chat_a: Chat,
    chat_b: Chat,
) -> None:
    async with launch_bot(notify_chat_id=CHAT_A, allowed_chat_ids=frozenset({CHAT_B})):
        created = await http.post(
            "/incidents", json={"description": "Disk full on db-1", "source": "zabbix"}
        )
        await stub.wait_for_message(chat_a)
        await _ask(stub, chat_b, "[monitoring] B's own")
        in_a = await _ask(stub, chat_a, "/list")
        in_b = await _ask(stub, chat_b, "/list")
        from_b = await _ask(stub, chat_b, "/status 1 closed")
        from_a = await _ask(stub, chat_a, "/status 1 in progress")
        listed = await http.get("/incidents")
        changed = await http.patch("/incidents/2/status", json={"status": "closed"})

    assert created.json()["id"] == 1
    assert (await store.get(1)).chat_id == CHAT_A
    assert in_a.split("\n")[0] == "Incidents · 1-1 of 1, newest first, times in UTC"
    assert in_a.split("\n")[1].startswith("#1 · ")
    assert in_b.split("\n")[1].startswith("#2 · ")
    assert from_b == "Incident #1 not found"
    assert from_a.startswith("🟡 Incident #1 · in progress")
    assert [item["id"] for item in listed.json()] == [2, 1]
    assert listed.headers["X-Total-Count"] == "2"
    assert (changed.status_code, changed.json()["status"]) == (200, "closed")
