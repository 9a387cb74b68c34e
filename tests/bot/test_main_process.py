"""main.py as a real process with BOT_TOKEN set: the bot runs beside the HTTP API."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from settings import Settings
from storage.database import create_engine, create_session_factory
from storage.store import IncidentStore
from tests.telegram_stub import TelegramStub

MAIN = Path(__file__).resolve().parents[2] / "main.py"
START_TIMEOUT = 20.0
EXIT_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_main_with_bot_token_turns_report_into_incident(
    stub: TelegramStub, tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'incidents.db'}"
    settings_names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in settings_names}
    env |= {
        "BOT_TOKEN": stub.token,
        "TELEGRAM_API_URL": stub.base_url,
        "DATABASE_URL": database_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(free_port()),
    }
    stderr_path = tmp_path / "stderr.log"
    chat, alice = stub.supergroup(), stub.user("Alice")
    with stderr_path.open("wb") as stderr:
        # The working directory has no .env: only the variables above count.
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(MAIN), cwd=tmp_path, env=env, stderr=stderr
        )
        try:
            report = await stub.send_user_message(chat, alice, "[monitoring] Scooter #42 down")
            card = await stub.wait_for_message(chat, reply_to=report, timeout=START_TIMEOUT)
        finally:
            process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), EXIT_TIMEOUT)

    log = stderr_path.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, log
    assert (card.text or "").startswith("🔴 Incident #1 · open · monitoring"), log
    assert "ALLOWED_CHAT_IDS is empty" in log
    assert stub.commands() is not None
    engine = create_engine(database_url)
    try:
        incident = await IncidentStore(create_session_factory(engine)).get(1)
    finally:
        await engine.dispose()
    assert (incident.description, incident.chat_id) == ("Scooter #42 down", chat.id)
