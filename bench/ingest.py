"""Section 3, ingestion: chat reports per second from Telegram into the store.

The Telegram stand-in runs in its own process with a backlog of incident reports
(`[monitoring] Scooter #n is not responding ...`) and the bot long-polls it, exactly as in
production: `run_bot` with the real Dispatcher, routers, middlewares and store, where an
update is confirmed (the next getUpdates offset moves past it) only once it has been
handled. The rate is the backlog over the time from the first getUpdates to the
confirmation of the last update, both on the stand-in's clock.

References, in the same run: aiogram's own polling and dispatch of the same backlog to a
handler that does nothing (one update at a time, `handle_as_tasks=False`), and plain
`sqlite3` inserting the same incident rows into the same schema, one transaction per row,
with the service's pragmas (WAL, synchronous=NORMAL).
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.report import TIMES, Row, per_second, ratio, verdict
from bench.seed import TIME_FORMAT, connect, create_database, database_url
from bench.stub_server import REPORT, RemoteStub
from main import freeze_startup_objects

FULL_UPDATES = 3000
QUICK_UPDATES = 600
CONFIRM_TIMEOUT = 600.0
TARGET_SHARE = 0.5
"""The issue's target: at least half of aiogram's do-nothing dispatch rate."""


async def _polled_rate(stub: RemoteStub, count: int, last_update_id: int) -> float:
    confirmed = (
        await stub.call("wait_confirmed", update_id=last_update_id, seconds=CONFIRM_TIMEOUT)
    )["at"]
    first_poll = (await stub.call("first_call", method="getUpdates"))["at"]
    return count / (float(confirmed) - float(first_poll))


async def measure_service(path: Path, count: int) -> tuple[float, str]:
    """The real bot: `run_bot` over the real store, polling the stand-in's backlog."""
    from bot.runner import run_bot
    from storage.database import create_engine, create_session_factory
    from storage.store import IncidentStore

    await create_database(path)
    async with RemoteStub() as stub:
        backlog = await stub.call("reports", count=count)
        settings = stub.settings(
            database_url=database_url(path), allowed_chat_ids=frozenset({stub.chat_id})
        )
        engine = create_engine(settings.database_url)
        try:
            # Wired as main.py wires it: a change that queues a card wakes the sender.
            delivery_queued = asyncio.Event()
            store = IncidentStore(
                create_session_factory(engine), on_delivery_queued=delivery_queued.set
            )
            freeze_startup_objects()  # as main.py does once started
            async with run_bot(settings, store, delivery_queued=delivery_queued):
                rate = await _polled_rate(stub, count, backlog["last_update_id"])
                pending = await store.outbox.pending_count()
        finally:
            await engine.dispose()
    with sqlite3.connect(path) as connection:
        stored = connection.execute("SELECT count(*) FROM incidents").fetchone()[0]
    if stored != count:
        raise RuntimeError(f"{count} reports confirmed, but {stored} incidents stored")
    return rate, f"{pending:,} cards still in the outbox then"


async def measure_aiogram(count: int) -> float:
    """aiogram alone: the same backlog polled and dispatched to a handler doing nothing."""
    from aiogram import Dispatcher, Router
    from aiogram.types import Message

    from bot.factory import create_bot

    async def do_nothing(message: Message) -> None:
        return None

    async with RemoteStub() as stub:
        backlog = await stub.call("reports", count=count)
        settings = stub.settings()
        bot = create_bot(settings)
        dispatcher = Dispatcher(disable_fsm=True)
        router = Router()
        router.message.register(do_nothing)
        dispatcher.include_router(router)
        freeze_startup_objects()  # the same treatment as the service gets
        polling = asyncio.create_task(
            dispatcher.start_polling(bot, handle_as_tasks=False, handle_signals=False)
        )
        try:
            return await _polled_rate(stub, count, backlog["last_update_id"])
        finally:
            await dispatcher.stop_polling()
            await polling


async def measure_sqlite(path: Path, count: int) -> float:
    """Plain sqlite3: the same incident rows, one transaction each, same pragmas."""
    await create_database(path)
    connection = connect(path)
    try:
        started = time.perf_counter()
        for number in range(1, count + 1):
            now = datetime.now(UTC).strftime(TIME_FORMAT)
            connection.execute("BEGIN")
            connection.execute(
                "INSERT INTO incidents (description, status, source, created_at, updated_at,"
                " created_by, updated_by, chat_id, message_id)"
                " VALUES (?, 'open', 'monitoring', ?, ?, 'Alice', 'Alice', ?, ?)",
                (
                    REPORT.format(number=number).removeprefix("[monitoring] "),
                    now,
                    now,
                    -1001000000001,
                    number,
                ),
            )
            connection.execute("COMMIT")
        return count / (time.perf_counter() - started)
    finally:
        connection.close()


async def run(quick: bool, progress: Callable[[str], None]) -> list[Row]:
    count = QUICK_UPDATES if quick else FULL_UPDATES
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as directory:
        workdir = Path(directory)
        progress(f"ingestion: {count:,} reports through the bot")
        service, note = await measure_service(workdir / "service.db", count)
        progress("ingestion: the same through aiogram to a do-nothing handler")
        aiogram = await measure_aiogram(count)
        progress("ingestion: the same rows through plain sqlite3")
        plain = await measure_sqlite(workdir / "plain.db", count)
    met = service >= TARGET_SHARE * aiogram
    return [
        Row(
            "ingestion",
            f"{count:,} reports, vs aiogram to a do-nothing handler ({note})",
            per_second(service),
            per_second(aiogram),
            ratio(service, aiogram),
            f"≥ {TARGET_SHARE:g}{TIMES}: {verdict(met)}",
        ),
        Row(
            "ingestion",
            f"{count:,} reports, vs plain sqlite3, one transaction per row",
            per_second(service),
            per_second(plain),
            ratio(service, plain),
            "",
        ),
    ]
