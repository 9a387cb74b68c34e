"""Run incident-bot: the HTTP API, and the Telegram bot when BOT_TOKEN is set.

Both share one process, one event loop and one store. Configuration comes from the
environment or `.env` (see `.env.example`); with none at all this serves the HTTP API on
http://127.0.0.1:8000 over a SQLite file `incidents.db` in the working directory.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from api.app import create_app
from api.server import create_server
from bot.errors import BotStartError
from settings import Settings, describe_error
from storage.database import create_engine, create_session_factory, migrate
from storage.store import IncidentStore

logger = logging.getLogger("incident_bot")

T = TypeVar("T")

# How long shutdown waits for in-flight HTTP requests before cutting them off.
GRACEFUL_SHUTDOWN_SECONDS = 10


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the SIGINT/SIGTERM it handled once it has shut down; by then
    # shutdown is already under way, so the re-raised signal must not kill the process.
    logger.debug("Signal %s received during shutdown", signal.Signals(signum).name)


async def serve(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        # Set whenever a change queues a message for the chat: wakes the bot's sender.
        delivery_queued = asyncio.Event()
        store = IncidentStore(
            create_session_factory(engine),
            on_delivery_queued=delivery_queued.set if settings.bot_enabled else None,
        )
        app = create_app(
            store,
            api_key=settings.api_key,
            announce_chat_id=settings.notify_chat_id if settings.bot_enabled else None,
        )
        server = create_server(
            app,
            host=settings.http_host,
            port=settings.http_port,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        for handled in (signal.SIGINT, signal.SIGTERM):
            signal.signal(handled, _ignore_signal)
        if settings.bot_enabled:
            # Imported only when needed: aiogram takes seconds to import.
            from bot.runner import run_bot

            async with run_bot(settings, store, app=app, delivery_queued=delivery_queued):
                freeze_startup_objects()
                await server.serve()
        else:
            logger.info("Bot is off: BOT_TOKEN is not set. Serving the HTTP API only.")
            freeze_startup_objects()
            await server.serve()
    finally:
        await engine.dispose()
    logger.info("Stopped")


def freeze_startup_objects() -> None:
    """Put what start-up built out of the garbage collector's way, for good.

    Modules, classes, pydantic and SQLAlchemy schemas, aiogram's hundreds of models: a few
    hundred thousand objects that live as long as the process. Every full collection
    walked them all, over half the time spent on a chat report and a fair share of an
    HTTP request's. Frozen, collections walk only what requests and updates allocate.
    """
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop where it is installed (uvicorn[standard] brings it, except on
    Windows): uvicorn picks it only for loops it starts itself, and this one is ours."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        run(serve(settings))
    except (OSError, SQLAlchemyError, BotStartError) as error:
        logger.error("Cannot start: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
