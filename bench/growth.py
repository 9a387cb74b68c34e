"""Section 2, growth: the same timings with 1,000 and with 1,000,000 incidents stored.

One SQLite database grows from the small size to the large one (seeded with plain
sqlite3, see `bench.seed`). At each size the service runs as a subprocess and answers,
one request at a time: the open incidents' first page, a page from the middle, and status
changes spread over the whole table. The bot's /list (first page, and a page from the
middle reached with its Next button) goes through the real Dispatcher, routers and
middlewares via `feed_update`, replying to the Telegram stand-in in its own process. The
reference for each timing is the same timing at 1,000 incidents. The section runs on
SQLite only: with --database-url it is left out, and the output says so.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import LoadResult, run_load
from bench.processes import HOST, start_service
from bench.report import TIMES, Row, megabytes, milliseconds, ratio, verdict
from bench.seed import create_database, database_url, file_size, seed
from bench.stub_server import RemoteStub

SMALL_ROWS = 1_000
FULL_ROWS = 1_000_000
QUICK_ROWS = 100_000
PAGE_SIZE = 50
LIST_FILTER = "status=open"
NEXT_STATUS = {"open": "in_progress", "in_progress": "resolved", "resolved": "in_progress"}
TARGET_GROWTH = 1.5
DEEP_BY_KEY = "list, deep page (HTTP, before=)"
DEEP_BY_OFFSET = "list, deep page (HTTP, offset=)"
UNTARGETED = {DEEP_BY_OFFSET: "none: before= is the fast path"}
"""Timings shown for comparison only, with why."""
RSS_LIMIT = 150 * 1024 * 1024


@dataclass
class Timings:
    rows: int
    medians: dict[str, float] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    """What a timing asked for at this size (which offset, which page)."""
    peak_rss: int = 0


@dataclass(frozen=True)
class Plan:
    """What to ask for at one size, read from the database before the service starts."""

    deep_offset: int
    deep_before: int
    """The id just above the deep page: the page is the incidents older than this one."""
    changes: list[tuple[int, str]]
    """(incident, its next status), spread over the whole table."""
    bot_deep_page: int
    bot_deep_before: tuple[int, int]
    """The keys of the bot's deep page and the one after it: the last id above each."""


def make_plan(path: Path, rows: int, samples: int, bot_page_size: int) -> Plan:
    connection = sqlite3.connect(path)
    try:
        open_count = connection.execute(
            "SELECT count(*) FROM incidents WHERE status = 'open'"
        ).fetchone()[0]
        deep_offset = open_count // 2 // PAGE_SIZE * PAGE_SIZE
        deep_before = connection.execute(
            "SELECT id FROM incidents WHERE status = 'open' ORDER BY id DESC LIMIT 1 OFFSET ?",
            (deep_offset - 1,),
        ).fetchone()[0]
        bot_deep_page = rows // 2 // bot_page_size
        bot_deep_before = tuple(
            connection.execute(
                "SELECT id FROM incidents ORDER BY id DESC LIMIT 1 OFFSET ?",
                (page * bot_page_size - 1,),
            ).fetchone()[0]
            for page in (bot_deep_page, bot_deep_page + 1)
        )
        step = max(rows // (samples * 2), 1)
        candidates = connection.execute(
            "SELECT id, status FROM incidents WHERE id % ? = 0 AND status != 'closed' ORDER BY id",
            (step,),
        ).fetchall()
    finally:
        connection.close()
    spread = candidates[:: max(len(candidates) // samples, 1)][:samples]
    changes = [(incident_id, NEXT_STATUS[status]) for incident_id, status in spread]
    return Plan(deep_offset, deep_before, changes, bot_deep_page, bot_deep_before)


def median_ms(result: LoadResult) -> float:
    bad = {status: n for status, n in result.statuses.items() if not 200 <= status < 300}
    if bad:
        raise RuntimeError(f"unexpected answers: {bad}")
    return result.median_ms


async def measure_http(
    path: Path, workdir: Path, plan: Plan, samples: int, timings: Timings
) -> None:
    service = await start_service(database_url(path), workdir)
    try:

        async def sequential(make: Callable[[int], tuple[str, str, Any]], count: int) -> float:
            result = await run_load(
                HOST,
                service.port,
                lambda client, number: make(number),
                clients=1,
                max_requests=count,
                max_seconds=120,
            )
            return median_ms(result)

        first = f"/incidents?{LIST_FILTER}&limit={PAGE_SIZE}"
        deep = f"{first}&before={plan.deep_before}"
        deep_by_offset = f"{first}&offset={plan.deep_offset}"
        await sequential(lambda _: ("GET", first, None), 5)  # warm-up
        await sequential(lambda _: ("GET", deep, None), 5)
        await sequential(lambda _: ("GET", deep_by_offset, None), 5)
        timings.medians["list, first page (HTTP)"] = await sequential(
            lambda _: ("GET", first, None), samples
        )
        timings.medians[DEEP_BY_KEY] = await sequential(lambda _: ("GET", deep, None), samples)
        timings.details[DEEP_BY_KEY] = f"{plan.deep_offset:,} deep"
        timings.medians[DEEP_BY_OFFSET] = await sequential(
            lambda _: ("GET", deep_by_offset, None), samples
        )
        timings.details[DEEP_BY_OFFSET] = f"offset {plan.deep_offset:,}"
        changes = plan.changes
        timings.medians["status change (HTTP)"] = await sequential(
            lambda number: (
                "PATCH",
                f"/incidents/{changes[number][0]}/status",
                {"status": changes[number][1]},
            ),
            len(changes),
        )
        timings.peak_rss = service.peak_rss_bytes()
    finally:
        service.stop()


async def measure_bot(path: Path, plan: Plan, samples: int, timings: Timings) -> None:
    from aiogram.types import Update

    from bot.callbacks import ListPage
    from bot.factory import create_bot, create_dispatcher
    from storage.database import create_engine, create_session_factory
    from storage.store import IncidentStore

    async with RemoteStub() as stub:
        settings = stub.settings(database_url=database_url(path))
        engine = create_engine(settings.database_url)
        bot = create_bot(settings)
        try:
            dispatcher = create_dispatcher(IncidentStore(create_session_factory(engine)), settings)

            async def feed(update: dict[str, Any]) -> float:
                parsed = Update.model_validate(update, context={"bot": bot})
                started = time.perf_counter()
                await dispatcher.feed_update(bot, parsed)
                return (time.perf_counter() - started) * 1000

            first: list[float] = []
            for _ in range(samples + 3):
                first.append(await feed((await stub.call("message", text="/list"))["update"]))
            listing = (await stub.call("last_bot_message"))["message_id"]
            # Next and Prev in turn, so that every press really changes the message.
            pages = [
                ListPage.for_page(None, plan.bot_deep_page + n, before=before).pack()
                for n, before in enumerate(plan.bot_deep_before)
            ]
            deep: list[float] = []
            for number in range(samples + 3):
                data = pages[number % 2]
                press = await stub.call("press", message_id=listing, data=data)
                deep.append(await feed(press["update"]))
            failed = {
                method: answers
                for method, answers in (await stub.call("call_summary")).items()
                if set(answers) != {"200"}
            }
            if failed:
                raise RuntimeError(f"the bot's calls failed: {failed}")
        finally:
            await bot.session.close()
            await engine.dispose()
    timings.medians["bot /list, first page"] = statistics.median(first[3:])
    timings.medians["bot /list, deep page"] = statistics.median(deep[3:])
    timings.details["bot /list, deep page"] = f"page {plan.bot_deep_page + 1:,}"


async def measure(path: Path, workdir: Path, rows: int, samples: int) -> Timings:
    from bot.cards import LIST_PAGE_SIZE

    timings = Timings(rows)
    plan = make_plan(path, rows, samples, LIST_PAGE_SIZE)
    await measure_http(path, workdir, plan, samples, timings)
    await measure_bot(path, plan, samples, timings)
    return timings


async def run(rows: int, quick: bool, progress: Callable[[str], None]) -> list[Row]:
    samples = 40 if quick else 150
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as directory:
        workdir = Path(directory)
        database = workdir / "growth.db"
        await create_database(database)
        seed(database, SMALL_ROWS)
        progress(f"growth: timings at {SMALL_ROWS:,} incidents")
        small = await measure(database, workdir, SMALL_ROWS, samples)
        progress(f"growth: seeding {rows:,} incidents")
        started = time.monotonic()
        seed(database, rows)
        progress(f"growth: seeded in {time.monotonic() - started:.0f} s; timings at {rows:,}")
        large = await measure(database, workdir, rows, samples)
        size = file_size(database)
    result: list[Row] = []
    for name, value in large.medians.items():
        reference = small.medians[name]
        met = value <= TARGET_GROWTH * reference
        target = UNTARGETED.get(name, f"≤ {TARGET_GROWTH:g}{TIMES}: {verdict(met)}")
        detail = ""
        if name in large.details:
            detail = f": {large.details[name]} vs {small.details[name]}"
        result.append(
            Row(
                "growth",
                f"{name} at {rows:,} vs {SMALL_ROWS:,}{detail}",
                milliseconds(value),
                milliseconds(reference),
                ratio(value, reference),
                target,
            )
        )
    result.append(
        Row(
            "growth",
            f"database file at {rows:,} incidents",
            megabytes(size),
            "",
            f"{size / rows:,.0f} B/incident",
            "",
        )
    )
    result.append(
        Row(
            "memory",
            f"peak RSS, growth at {rows:,} (vs at {SMALL_ROWS:,})",
            megabytes(large.peak_rss),
            megabytes(small.peak_rss),
            ratio(large.peak_rss, small.peak_rss),
            f"< 150 MB: {verdict(large.peak_rss < RSS_LIMIT)}",
        )
    )
    return result
