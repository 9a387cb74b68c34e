"""main.py as a real process with BOT_TOKEN set: the bot runs beside the HTTP API."""

from __future__ import annotations

import httpx
import pytest

from storage.database import create_engine, create_session_factory
from storage.store import IncidentStore
from tests.service import ServiceRunner
from tests.telegram_stub import TelegramStub

pytestmark = pytest.mark.all_engines

CARD_TIMEOUT = 60.0
"""Start-up included: the child process imports aiogram, slow on a loaded machine."""


async def test_main_with_bot_token_turns_report_into_incident(
    stub: TelegramStub, services: ServiceRunner, database_url: str
) -> None:
    chat, alice = stub.supergroup(), stub.user("Alice")
    notify = stub.supergroup("Incidents")
    service = services.start(
        BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url, NOTIFY_CHAT_ID=str(notify.id)
    )
    try:
        report = await stub.send_user_message(chat, alice, "[monitoring] Scooter #42 down")
        card = await stub.wait_for_message(chat, reply_to=report, timeout=CARD_TIMEOUT)
        # The HTTP door announces in NOTIFY_CHAT_ID, and its status changes edit the card.
        async with httpx.AsyncClient(base_url=service.base_url) as http:
            created = await http.post("/incidents", json={"description": "Disk full"})
            announced = await stub.wait_for_message(notify, contains="Disk full")
            await http.patch("/incidents/2/status", json={"status": "resolved"})
            await stub.wait_for(lambda: "resolved" in (announced.text or ""))
    finally:
        returncode = await service.stop()

    log = service.log()
    assert returncode == 0, log
    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring"), log
    assert created.status_code == 201, log
    assert (announced.text or "").startswith("🟢 Incident #2 · resolved · operator"), log
    assert "ALLOWED_CHAT_IDS is empty" in log
    assert stub.commands() is not None
    engine = create_engine(database_url)
    try:
        incident = await IncidentStore(create_session_factory(engine)).get(1)
    finally:
        await engine.dispose()
    assert (incident.description, incident.chat_id) == ("Scooter #42 down", chat.id)
