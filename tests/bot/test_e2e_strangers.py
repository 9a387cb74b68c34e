"""End to end: what waits for Telegram's limits never holds up the next update."""

from __future__ import annotations

import asyncio

import uvicorn

from api.app import create_app
from bot.handlers.unserved import ANSWERS_PER_MINUTE
from bot.pipeline import UpdatePipeline
from bot.rate_limits import Limits, Rate
from storage.store import IncidentStore
from tests.bot.conftest import BotLauncher, all_handled
from tests.service import free_port
from tests.telegram_stub import TelegramStub

SERVED_CHAT_ID = -1_009_000_000_042
REPORTED_WITHIN = 10.0
"""Far below what the reports waited before (a private chat's allowance per message)."""

# A private chat's allowance of one message in two seconds: before the fix, each "not
# served" answer waited for it in turn, and every later update behind them.
SLOW_PRIVATE_CHATS = Limits(private=Rate(1, 2.0))


async def test_strangers_private_messages_do_not_delay_served_chat(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher, pipeline: UpdatePipeline
) -> None:
    group = stub.supergroup("On-call", chat_id=SERVED_CHAT_ID)
    stranger, alice = stub.user("Mallory"), stub.user("Alice")
    private = stub.private_chat(stranger)

    async with launch_bot(allowed_chat_ids=frozenset({SERVED_CHAT_ID}), limits=SLOW_PRIVATE_CHATS):
        for n in range(15):
            await stub.send_user_message(private, stranger, f"hello {n}")
        report = await stub.send_user_message(group, alice, "[monitoring] Scooter #42 down")
        card = await stub.wait_for_message(group, reply_to=report, timeout=REPORTED_WITHIN)
        await all_handled(stub, pipeline)

    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring")
    answers = stub.sent_messages(private)
    assert [answer.text for answer in answers] == ["Sorry, this chat is not served."]


async def test_many_strangers_get_a_bounded_number_of_answers(
    stub: TelegramStub, launch_bot: BotLauncher, pipeline: UpdatePipeline
) -> None:
    strangers = [stub.user(f"Bot {n}") for n in range(ANSWERS_PER_MINUTE + 5)]

    async with launch_bot(allowed_chat_ids=frozenset({SERVED_CHAT_ID})):
        for stranger in strangers:
            await stub.send_user_message(stub.private_chat(stranger), stranger, "/start")
        await all_handled(stub, pipeline)

    assert len(stub.sent_messages()) == ANSWERS_PER_MINUTE


async def test_answer_waiting_for_its_chat_allowance_does_not_hold_up_reports(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher
) -> None:
    group, alice = stub.supergroup("On-call", chat_id=SERVED_CHAT_ID), stub.user("Alice")
    other = stub.supergroup("Warehouse")

    # One message in 20 s per group: the second /help waits its turn that long.
    async with launch_bot(limits=Limits(group=Rate(1, 20.0), reply_max_wait=30.0)):
        first = await stub.send_user_message(group, alice, "/help")
        await stub.wait_for_message(group, reply_to=first)
        await stub.send_user_message(group, alice, "/help")
        report = await stub.send_user_message(other, alice, "[monitoring] Point 7 down")
        await stub.wait_for(
            lambda: not stub.pending_updates, timeout=REPORTED_WITHIN, what="confirmation"
        )
        card = await stub.wait_for_message(other, reply_to=report, timeout=REPORTED_WITHIN)

    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring")
    assert (await store.list()).total == 1


async def test_webhook_answer_waiting_for_its_allowance_does_not_hold_up_deliveries(
    stub: TelegramStub, store: IncidentStore, launch_bot: BotLauncher
) -> None:
    group, alice = stub.supergroup("On-call", chat_id=SERVED_CHAT_ID), stub.user("Alice")
    other = stub.supergroup("Warehouse")
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    app = create_app(store, api_key=None)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )

    async with launch_bot(
        app=app,
        webhook_url=url,
        webhook_secret="s3cret",
        limits=Limits(group=Rate(1, 20.0), reply_max_wait=30.0),
    ):
        serving = asyncio.create_task(server.serve())
        try:
            await stub.wait_for(lambda: stub.webhook.get("url") == url, what="the webhook")
            first = await stub.send_user_message(group, alice, "/help")
            await stub.wait_for_message(group, reply_to=first)
            await stub.send_user_message(group, alice, "/help")
            report = await stub.send_user_message(other, alice, "[monitoring] Point 7 down")
            card = await stub.wait_for_message(other, reply_to=report, timeout=REPORTED_WITHIN)
        finally:
            server.should_exit = True
            await serving

    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring")
