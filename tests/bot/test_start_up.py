"""Start-up against a Telegram that is slow, silent or not Telegram at all.

Only a token Telegram itself rejects stops the service. Anything else (a proxy's error
page, a captive portal, a server that never answers) is retried in the background while
the HTTP API serves, and SIGINT/SIGTERM stop the process with 0 at any moment.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.bot.conftest import BotLauncher
from tests.service import ServiceRunner
from tests.telegram_stub import FaultKind, TelegramStub

NOT_THE_BOT_API = [
    FaultKind.HTML_PAGE,
    FaultKind.HTML_NOT_FOUND,
    FaultKind.MALFORMED_JSON,
    FaultKind.WRONG_SHAPE,
]


@pytest.mark.parametrize("answer", NOT_THE_BOT_API)
async def test_answer_that_is_not_the_bot_api_is_retried(
    stub: TelegramStub,
    launch_bot: BotLauncher,
    caplog: pytest.LogCaptureFixture,
    answer: FaultKind,
) -> None:
    stub.inject_fault(answer, times=1, methods={"getMe"})
    chat = stub.group()

    with caplog.at_level(logging.WARNING, logger="bot.runner"):
        async with launch_bot():
            report = await stub.send_user_message(chat, stub.user(), "[monitoring] down")
            card = await stub.wait_for_message(chat, reply_to=report, timeout=15)

    assert (card.text or "").startswith("🔴 Incident #1")
    assert stub.commands() is not None
    [retry] = [r.getMessage() for r in caplog.records if "Cannot reach Telegram" in r.getMessage()]
    assert "<" not in retry and "\n" not in retry


@pytest.fixture
async def silent_telegram() -> AsyncIterator[str]:
    """A Bot API address that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_main_serves_http_while_telegram_never_answers(
    services: ServiceRunner, silent_telegram: str
) -> None:
    service = services.start(BOT_TOKEN="123456:ABC", TELEGRAM_API_URL=silent_telegram)
    await service.wait_until_ready()

    async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as http:
        created = await http.post("/incidents", json={"description": "Disk full"})

    assert created.status_code == 201
    assert await service.stop(signal.SIGTERM) == 0
    assert "Traceback" not in service.log()


async def test_main_serves_http_while_telegram_url_is_a_captive_portal(
    services: ServiceRunner, stub: TelegramStub
) -> None:
    stub.inject_fault(FaultKind.HTML_PAGE)
    service = services.start(BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url)
    await service.wait_until_ready()
    await stub.wait_for(lambda: stub.calls("getMe"), timeout=30, what="an introduction")

    assert await service.stop(signal.SIGTERM) == 0
    log = service.log()
    assert "Traceback" not in log
    assert "Cannot reach Telegram yet" in log


# Moments of start-up: the imports, the settings, the migration, the bot's introduction.
@pytest.mark.parametrize("after", [0.3, 0.8, 1.5, 3.0])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_main_stops_with_0_on_a_signal_at_any_moment_of_start_up(
    services: ServiceRunner, silent_telegram: str, after: float, signum: signal.Signals
) -> None:
    service = services.start(BOT_TOKEN="123456:ABC", TELEGRAM_API_URL=silent_telegram)
    await asyncio.sleep(after)

    assert await service.stop(signum) == 0, service.log()
    assert "Traceback" not in service.log()


async def test_main_exits_1_with_one_line_when_telegram_rejects_the_token(
    services: ServiceRunner, stub: TelegramStub
) -> None:
    service = services.start(BOT_TOKEN="123456:wrong", TELEGRAM_API_URL=stub.base_url)

    returncode = await asyncio.to_thread(service.process.wait, 60)

    log = service.log()
    assert returncode == 1, log
    assert "Cannot start: Telegram rejected BOT_TOKEN" in log
    assert "Traceback" not in log
