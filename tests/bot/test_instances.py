"""Two main.py processes on one database: one polls and sends, the other stands by and
takes over when the first is killed."""

from __future__ import annotations

import asyncio
import signal

import httpx

from storage.store import IncidentStore
from tests.bot.conftest import all_delivered
from tests.service import START_TIMEOUT, Service, ServiceRunner
from tests.telegram_stub import TelegramStub

FAILOVER_SECONDS = 3


async def bot_role(service: Service) -> str:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as http:
        role: str = (await http.get("/health")).json()["bot"]
        return role


async def wait_for_role(service: Service, role: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while await bot_role(service) != role:
        assert loop.time() < deadline, f"never {role}:\n{service.log()}"
        await asyncio.sleep(0.1)


async def test_one_instance_polls_and_the_standby_takes_over_when_it_is_killed(
    stub: TelegramStub, services: ServiceRunner, store: IncidentStore
) -> None:
    chat, alice = stub.supergroup("On-call"), stub.user("Alice")
    settings = {
        "BOT_TOKEN": stub.token,
        "TELEGRAM_API_URL": stub.base_url,
        "FAILOVER_SECONDS": str(FAILOVER_SECONDS),
    }
    first = services.start(**settings)
    await first.wait_until_ready()
    await wait_for_role(first, "active")
    second = services.start(**settings)
    await second.wait_until_ready()
    await wait_for_role(second, "standby")

    before = await stub.send_user_message(chat, alice, "[monitoring] Point 7 down")
    await stub.wait_for_message(chat, reply_to=before, timeout=START_TIMEOUT)
    # Killed once its card is recorded as sent: a kill between Telegram's answer and
    # that record would send the card again, as a crash of a single instance would.
    await all_delivered(store)
    first.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(first.process.wait)
    after = await stub.send_user_message(chat, alice, "[monitoring] Point 8 down")
    card = await stub.wait_for_message(chat, reply_to=after, timeout=FAILOVER_SECONDS * 5)
    role_after = await bot_role(second)
    returncode = await second.stop()

    assert (card.text or "").startswith("🔴 Incident #2 · open · monitoring"), second.log()
    assert role_after == "active"
    assert returncode == 0
    conflicts = [call for call in stub.calls("getUpdates") if call.status == 409]
    assert conflicts == [], "two instances polled at once"
    cards = [m for m in stub.sent_messages(chat) if (m.text or "").startswith("🔴 Incident")]
    assert len(cards) == 2
    assert (await store.list()).total == 2
    assert "Standby: instance" in second.log()
