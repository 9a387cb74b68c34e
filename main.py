"""Run incident-bot: the HTTP API, and the Telegram bot when BOT_TOKEN is set.

Both share one process, one event loop and one store. Configuration comes from the
environment or `.env` (see `.env.example`); with none at all this serves the HTTP API on
http://127.0.0.1:8000 over a SQLite file `incidents.db` in the working directory.

SIGINT and SIGTERM stop the service with exit code 0 at any moment, start-up included.
That is why this module imports only the standard library at the top: the rest (seconds
of imports, aiogram's most of all) is imported once the handlers are in place.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    import uvicorn

    from settings import Settings

logger = logging.getLogger("incident_bot")

T = TypeVar("T")

# How long shutdown waits for in-flight HTTP requests before cutting them off.
GRACEFUL_SHUTDOWN_SECONDS = 10
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _exit_at_once(signum: int, frame: FrameType | None) -> NoReturn:
    # Before the event loop runs there is nothing to close (the database is opened in
    # serve(), after the loop's own handlers replace this one): leave as if never
    # started. Not by raising SystemExit: raised in the middle of an import, inside a
    # library's C code (pydantic building aiogram's models), it came out as that
    # library's error and a traceback.
    os._exit(0)


class StopSignals:
    """SIGINT and SIGTERM once the event loop runs.

    Before the HTTP server serves, a signal cancels start-up (whatever it waits for: the
    database, a migration); while it serves, the server stops gracefully, and the bot and
    the store after it; once stopping, further signals change nothing (uvicorn itself
    turns a second Ctrl+C into a forced exit while it serves).
    """

    def __init__(self, starting: asyncio.Task[Any]) -> None:
        self._starting = starting
        self._server: uvicorn.Server | None = None
        self.requested = False

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for handled in STOP_SIGNALS:
            loop.add_signal_handler(handled, self.stop)

    def serving(self, server: uvicorn.Server) -> None:
        """From now on a stop is the server's graceful shutdown."""
        self._server = server
        if self.requested:
            server.should_exit = True

    def stop(self) -> None:
        if self.requested:
            return
        self.requested = True
        if self._server is not None:
            self._server.should_exit = True
        else:
            self._starting.cancel()


async def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; raises BotStartError if Telegram rejects BOT_TOKEN."""
    current = asyncio.current_task()
    assert current is not None
    stop_signals = StopSignals(current)
    stop_signals.install(asyncio.get_running_loop())

    from api.app import create_app
    from api.server import create_server
    from metrics import Metrics
    from storage.database import create_engine, create_session_factory, migrate
    from storage.store import IncidentStore

    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        # Set whenever a change queues a message for the chat: wakes the bot's sender.
        delivery_queued = asyncio.Event()
        metrics = Metrics() if settings.metrics else None
        store = IncidentStore(
            create_session_factory(engine),
            on_delivery_queued=delivery_queued.set if settings.bot_enabled else None,
            on_status_changed=None if metrics is None else metrics.status_changed,
            fast_paths=settings.fast_paths,
        )
        leadership = None
        if settings.bot_enabled:
            from bot.runner import create_leadership

            leadership = create_leadership(settings, store)
        app = create_app(
            store,
            api_key=settings.api_key,
            announce_chat_id=settings.notify_chat_id if settings.bot_enabled else None,
            leadership=leadership,
            metrics=metrics,
        )
        server = create_server(
            app,
            host=settings.http_host,
            port=settings.http_port,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        stop_signals.serving(server)
        if settings.bot_enabled:
            from bot.runner import run_bot

            # The bot introduces itself to Telegram in the background: the HTTP API
            # serves meanwhile, however long Telegram takes to answer.
            async with run_bot(
                settings,
                store,
                app=app,
                delivery_queued=delivery_queued,
                on_token_rejected=stop_signals.stop,
                leadership=leadership,
                metrics=metrics,
            ):
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
    walked them all, a large part of what a chat report and an HTTP request cost (the
    bench shows it). Frozen, collections walk only what requests and updates allocate.
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
    for handled in STOP_SIGNALS:
        signal.signal(handled, _exit_at_once)

    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from bot.errors import BotStartError
    from settings import Settings, describe_error

    try:
        settings = Settings()
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if settings.bot_enabled:
        # Here rather than in serve(): importing aiogram takes seconds, which would hold
        # up the event loop (and a stop signal with it).
        import bot.runner  # noqa: F401
    try:
        run(serve(settings))
    except asyncio.CancelledError:
        logger.info("Stopped during start-up")
    except (OSError, SQLAlchemyError, BotStartError) as error:
        logger.error("Cannot start: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
