"""End to end: with OPERATOR_IDS or OPERATORS=admins, only operators change incidents;
anyone else is told why, and nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram.types import Chat, User

from bot.pipeline import UpdatePipeline
from storage.rules import Status
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher, all_handled
from tests.telegram_stub import ChatMessage, TelegramStub

REFUSAL = "Only the chat's operators can change incidents here."


@pytest.fixture
def chat(stub: TelegramStub) -> Chat:
    return stub.supergroup("On-call", chat_id=-1_009_000_000_042)


@pytest.fixture
def oleg(stub: TelegramStub) -> User:
    return stub.user("Oleg")


@pytest.fixture
def anna(stub: TelegramStub) -> User:
    return stub.user("Anna")


async def _card(stub: TelegramStub, chat: Chat, user: User) -> ChatMessage:
    report = await stub.send_user_message(chat, user, "[monitoring] Router down")
    return await stub.wait_for_message(chat, reply_to=report)


@pytest.fixture
async def operator_ids(
    stub: TelegramStub, launch_bot: BotLauncher, chat: Chat, oleg: User
) -> AsyncIterator[None]:
    async with launch_bot(
        allowed_chat_ids=frozenset({chat.id}), operator_ids=frozenset({oleg.id})
    ):
        await stub.wait_for(lambda: stub.calls("getUpdates"), what="the bot to poll")
        yield


@pytest.mark.all_engines
@pytest.mark.usefixtures("operator_ids")
async def test_a_press_by_someone_not_listed_changes_nothing_and_says_why(
    stub: TelegramStub, store: IncidentStore, chat: Chat, anna: User, oleg: User
) -> None:
    card = await _card(stub, chat, anna)

    refused = await stub.wait_for_answer(await stub.press_button(chat, anna, card, text="Close"))
    assert (refused.text, refused.show_alert) == (REFUSAL, True)
    assert (await store.get(1)).status == Status.OPEN
    assert not stub.message(chat, card.message_id).edited

    accepted = await stub.wait_for_answer(
        await stub.press_button(chat, oleg, card, text="In progress")
    )
    assert accepted.text == "Incident #1 is now in progress."
    assert (await store.get(1)).status == Status.IN_PROGRESS


@pytest.mark.usefixtures("operator_ids")
async def test_commands_and_replies_by_someone_not_listed_are_refused(
    stub: TelegramStub, store: IncidentStore, chat: Chat, anna: User, oleg: User
) -> None:
    card = await _card(stub, chat, anna)

    replies: list[tuple[str, int | None]] = [
        ("/status 1 resolved", None),
        ("#1 closed", None),
        ("fixed", card.message_id),
    ]
    for text, reply_to in replies:
        sent = await stub.send_user_message(chat, anna, text, reply_to=reply_to)
        answer = await stub.wait_for_message(chat, reply_to=sent)
        assert answer.text == REFUSAL

    shown = await stub.send_user_message(chat, anna, "/status 1")
    assert (await stub.wait_for_message(chat, reply_to=shown)).text.startswith("🔴 Incident #1")
    assert (await store.get(1)).status == Status.OPEN

    await stub.send_user_message(chat, oleg, "#1 fixed")
    await stub.wait_for(lambda: stub.message(chat, card.message_id).edited, what="the card edit")
    assert (await store.get(1)).status == Status.RESOLVED


async def test_with_operators_admins_the_groups_administrators_may_act(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    pipeline: UpdatePipeline,
    chat: Chat,
    anna: User,
    oleg: User,
) -> None:
    owner = stub.user("Owner")
    stub.set_admins(chat, oleg, owner=owner)
    async with launch_bot(allowed_chat_ids=frozenset({chat.id}), operators="admins"):
        card = await _card(stub, chat, anna)

        refused = await stub.wait_for_answer(
            await stub.press_button(chat, anna, card, text="Close")
        )
        by_admin = await stub.wait_for_answer(
            await stub.press_button(chat, oleg, card, text="In progress")
        )
        edited = await stub.wait_for(
            lambda: (
                stub.message(chat, card.message_id).edited and stub.message(chat, card.message_id)
            ),
            what="the card to show the change",
        )
        by_owner = await stub.wait_for_answer(
            await stub.press_button(chat, owner, edited, text="Resolved")
        )
        await all_handled(stub, pipeline)

    assert refused.text == REFUSAL
    assert by_admin.text == "Incident #1 is now in progress."
    assert by_owner.text == "Incident #1 is now resolved."
    assert (await store.get(1)).status == Status.RESOLVED
    # Looked up once, then kept: three presses, one call.
    assert len(stub.calls("getChatAdministrators")) == 1


async def test_when_administrators_cannot_be_looked_up_nobody_but_the_listed_may_act(
    stub: TelegramStub,
    store: IncidentStore,
    launch_bot: BotLauncher,
    chat: Chat,
    anna: User,
    oleg: User,
) -> None:
    stub.set_admins(chat, oleg)
    stub.fail_next(times=10, methods=["getChatAdministrators"])
    async with launch_bot(
        allowed_chat_ids=frozenset({chat.id}),
        operators="admins",
        operator_ids=frozenset({anna.id}),
    ):
        card = await _card(stub, chat, anna)

        by_admin = await stub.wait_for_answer(
            await stub.press_button(chat, oleg, card, text="Close")
        )
        listed = await stub.wait_for_answer(
            await stub.press_button(chat, anna, card, text="In progress")
        )

    assert by_admin.text == REFUSAL
    assert listed.text == "Incident #1 is now in progress."
    assert (await store.get(1)).status == Status.IN_PROGRESS
