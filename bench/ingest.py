"""Section 3, ingestion: chat reports per second from Telegram into the store.

The Telegram stand-in runs in its own process with a backlog of incident reports
(`[monitoring] Scooter #n is not responding ...`) and the bot long-polls it, exactly as in
production: `run_bot` with the real Dispatcher, routers, middlewares and store, where an
update is confirmed (the next getUpdates offset moves past it) only once it has been
handled. The rate is the backlog over the time from the first getUpdates to the
confirmation of the last update, both on the stand-in's clock.

References, in the same run: aiogram's own polling and dispatch of the same backlog to a
handler that does nothing (one update at a time, `handle_as_tasks=False`), and the plain
driver inserting the same incident rows into the same schema, one transaction per row:
`sqlite3` with the service's pragmas (WAL, synchronous=NORMAL), or on PostgreSQL
`asyncpg` into a database of its own on the same server.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.databases import SQLITE, Databases, connect_asyncpg, create_schema
from bench.report import TIMES, Row, per_second, ratio, verdict
from bench.seed import CHAT_ID, TIME_FORMAT, connect
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


async def measure_service(database_url: str, count: int) -> tuple[float, str]:
    """The real bot: `run_bot` over the real store, polling the stand-in's backlog."""
    from bot.runner import run_bot
    from storage.database import create_engine, create_session_factory
    from storage.models import Incident
    from storage.store import IncidentStore

    await create_schema(database_url)
    async with RemoteStub() as stub:
        backlog = await stub.call("reports", count=count)
        settings = stub.settings(
            database_url=database_url, allowed_chat_ids=frozenset({stub.chat_id})
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
            async with engine.connect() as connection:
                stored = await connection.scalar(select(func.count()).select_from(Incident))
        finally:
            await engine.dispose()
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


def report_row(number: int) -> tuple[str, int]:
    """The description and message id of the `number`th report, as the bot stores them."""
    return REPORT.format(number=number).removeprefix("[monitoring] "), number


async def measure_sqlite(database_url: str, count: int) -> float:
    """Plain sqlite3: the same incident rows, one transaction each, same pragmas."""
    await create_schema(database_url)
    path = make_url(database_url).database
    assert path is not None
    connection = connect(Path(path))
    try:
        started = time.perf_counter()
        for number in range(1, count + 1):
            now = datetime.now(UTC).strftime(TIME_FORMAT)
            description, message_id = report_row(number)
            connection.execute("BEGIN")
            connection.execute(
                "INSERT INTO incidents (description, status, source, created_at, updated_at,"
                " created_by, updated_by, chat_id, message_id)"
                " VALUES (?, 'open', 'monitoring', ?, ?, 'Alice', 'Alice', ?, ?)",
                (description, now, now, CHAT_ID, message_id),
            )
            connection.execute("COMMIT")
        return count / (time.perf_counter() - started)
    finally:
        connection.close()


async def measure_asyncpg(database_url: str, count: int) -> float:
    """Plain asyncpg: the same incident rows, one transaction each, one connection."""
    await create_schema(database_url)
    connection = await connect_asyncpg(make_url(database_url))
    try:
        started = time.perf_counter()
        for number in range(1, count + 1):
            now = datetime.now(UTC)
            description, message_id = report_row(number)
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO incidents (description, status, source, created_at,"
                    " updated_at, created_by, updated_by, chat_id, message_id)"
                    " VALUES ($1, 'open', 'monitoring', $2, $2, 'Alice', 'Alice', $3, $4)",
                    description,
                    now,
                    CHAT_ID,
                    message_id,
                )
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


async def run(databases: Databases, quick: bool, progress: Callable[[str], None]) -> list[Row]:
    count = QUICK_UPDATES if quick else FULL_UPDATES
    on_sqlite = databases.engine == SQLITE
    driver = "sqlite3" if on_sqlite else "asyncpg"
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as directory:
        workdir = Path(directory)
        progress(f"ingestion: {count:,} reports through the bot")
        async with databases.fresh("ours", workdir) as database_url:
            service, note = await measure_service(database_url, count)
        progress("ingestion: the same through aiogram to a do-nothing handler")
        aiogram = await measure_aiogram(count)
        progress(f"ingestion: the same rows through plain {driver}")
        async with databases.fresh("plain", workdir) as database_url:
            measure_plain = measure_sqlite if on_sqlite else measure_asyncpg
            plain = await measure_plain(database_url, count)
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
            f"{count:,} reports, vs plain {driver}, one transaction per row",
            per_second(service),
            per_second(plain),
            ratio(service, plain),
            "",
        ),
    ]
