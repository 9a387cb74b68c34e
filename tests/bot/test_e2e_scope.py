"""End to end: ALLOWED_CHAT_IDS decides which chats the bot serves."""

from __future__ import annotations

import logging

import pytest

from storage.rules import Status
from tests.bot.conftest import BotLauncher, Scene, all_handled
from tests.telegram_stub import TelegramStub

SERVED_CHAT_ID = -1_009_000_000_042
"""The scene's supergroup."""


@pytest.fixture
def allowed_chat_ids() -> frozenset[int]:
    return frozenset({SERVED_CHAT_ID})


async def test_served_chat_is_served(scene: Scene) -> None:
    assert scene.chat.id == SERVED_CHAT_ID
    report = await scene.stub.send_user_message(scene.chat, scene.alice, "[monitoring] down")

    await scene.stub.wait_for_message(scene.chat, reply_to=report)


async def test_other_group_is_ignored_entirely_and_logged_once(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    stub = scene.stub
    other = stub.supergroup("Someone else's")

    with caplog.at_level(logging.INFO, logger="bot.handlers.unserved"):
        for text in ("[monitoring] down", "/list", "/help", "#1 fixed"):
            await stub.send_user_message(other, scene.alice, text)
        await stub.post_channel(stub.channel(), "[monitoring] from a foreign channel")
        await all_handled(stub, scene.pipeline)

    assert stub.sent_messages() == []
    assert (await scene.store.list()).total == 0
    ignored = [r.getMessage() for r in caplog.records if r.name == "bot.handlers.unserved"]
    assert len(ignored) == 2
    assert ignored[0] == (
        f'Ignoring chat {other.id} (supergroup, "Someone else\'s"): it is not in ALLOWED_CHAT_IDS'
    )


async def test_private_chat_outside_list_gets_one_short_reply(scene: Scene) -> None:
    stub = scene.stub
    outsider = stub.user("Mallory")
    private = stub.private_chat(outsider)

    hello = await stub.send_user_message(private, outsider, "/start")
    reply = await stub.wait_for_message(private, reply_to=hello)
    await all_handled(stub, scene.pipeline)

    assert reply.text == "Sorry, this chat is not served."
    assert len(stub.sent_messages(private)) == 1


async def test_press_from_other_chat_is_answered_and_ignored(scene: Scene) -> None:
    stub = scene.stub
    served_report = await stub.send_user_message(scene.chat, scene.alice, "[monitoring] down")
    await stub.wait_for_message(scene.chat, reply_to=served_report)
    other = stub.supergroup("Someone else's")
    message = await stub.send_user_message(other, scene.alice, "anything")

    query = await stub.press_button(other, scene.alice, message.message_id, "s:1:o:c", check=False)
    answer = await stub.wait_for_answer(query)

    assert answer.text is None
    assert (await scene.store.get(1)).status == Status.OPEN


async def test_empty_allowed_list_serves_all_and_warns(
    stub: TelegramStub, launch_bot: BotLauncher, caplog: pytest.LogCaptureFixture
) -> None:
    chat = stub.group("Any group")

    with caplog.at_level(logging.WARNING, logger="bot.runner"):
        async with launch_bot(allowed_chat_ids=frozenset()):
            report = await stub.send_user_message(chat, stub.user(), "[monitoring] down")
            await stub.wait_for_message(chat, reply_to=report)

    assert "ALLOWED_CHAT_IDS is empty: the bot serves every chat it is added to" in caplog.text


async def test_allowed_channel_posts_become_incidents(
    stub: TelegramStub, launch_bot: BotLauncher
) -> None:
    channel = stub.channel("Alerts", chat_id=-1_009_000_000_077)

    async with launch_bot(allowed_chat_ids=frozenset({channel.id})):
        post = await stub.post_channel(channel, "[monitoring] queue is growing")
        card = await stub.wait_for_message(channel, reply_to=post)

    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring\nqueue is growing")
