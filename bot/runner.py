"""Running the bot beside the HTTP API: `async with run_bot(settings, store): ...`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.utils.backoff import Backoff, BackoffConfig
from fastapi import FastAPI

from bot.delivery import DeliveryPolicy, Sender
from bot.errors import BotStartError
from bot.factory import create_bot, create_dispatcher, create_served_chats
from bot.i18n import create_i18n
from bot.menu import bot_commands
from bot.pipeline import ConfirmWhenHandled, UpdatePipeline
from bot.rate_limits import Limits, RateLimiter
from bot.tasks import log_failure
from bot.webhook import create_webhook_router
from settings import Settings
from storage.store import IncidentStore

logger = logging.getLogger(__name__)

POLLING_TIMEOUT_SECONDS = 30
"""How long one getUpdates call waits for news (long polling)."""
MENU_LANGUAGES: tuple[tuple[str, str | None], ...] = (("en", None), ("ru", "ru"))
"""(catalogue, Telegram language_code) for each command menu; None is the default menu."""
DRAIN_SECONDS = 10
"""How long stopping waits for updates still being handled."""
RETRY_BACKOFF = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.5, jitter=0.1)

_TRANSIENT_ERRORS = (TelegramNetworkError, TelegramServerError, TelegramRetryAfter)


@asynccontextmanager
async def run_bot(
    settings: Settings,
    store: IncidentStore,
    *,
    app: FastAPI | None = None,
    polling_timeout: int = POLLING_TIMEOUT_SECONDS,
    limits: Limits | None = None,
    delivery: DeliveryPolicy | None = None,
    delivery_queued: asyncio.Event | None = None,
) -> AsyncIterator[Bot]:
    """Register the command menu, deliver the outbox and receive updates until the block
    exits: by long polling, or with WEBHOOK_URL set, on `app`'s webhook route.

    Updates are handled in order, each starting once the one before it finished or
    waits for its write to commit (`bot.pipeline`), and an update is confirmed to
    Telegram (by the next getUpdates offset, or the webhook's 200) only after its
    handler finished. What
    the chat must be told is queued in the outbox and delivered by a background sender,
    within `limits`; `delivery_queued` (set by the store's `on_delivery_queued`) wakes it
    at once. A token Telegram rejects stops start-up with BotStartError; an unreachable
    Telegram does not: the bot keeps retrying in the background while the rest of the
    service runs.
    """
    if not settings.allowed_chat_ids:
        logger.warning("ALLOWED_CHAT_IDS is empty: the bot serves every chat it is added to")
    limiter = RateLimiter(limits or Limits())
    bot = create_bot(settings, limiter=limiter)
    try:
        outbox = store.outbox
        served = create_served_chats(settings, await outbox.chat_migrations())
        pipeline = UpdatePipeline()
        dispatcher = create_dispatcher(store, settings, served=served, pipeline=pipeline)
        introduced = await _introduce(bot)
        sender = Sender(
            bot,
            outbox,
            limiter,
            served,
            create_i18n(),
            wake=delivery_queued or asyncio.Event(),
            policy=delivery,
        )
        sender.start()
        try:
            if settings.webhook_url is None:
                bot.session.middleware(ConfirmWhenHandled(pipeline))
                receiving = _long_poll(dispatcher, bot, introduced, polling_timeout)
            else:
                if app is None:
                    raise ValueError("webhook mode needs the HTTP app to receive updates on")
                receiving = _receive_webhooks(settings, dispatcher, bot, app, introduced)
            async with receiving:
                yield bot
            # Updates still being handled finish (their writes committed, their replies
            # sent); those not confirmed yet come again after a restart either way.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pipeline.drained(), DRAIN_SECONDS)
        finally:
            await sender.stop()
    finally:
        await bot.session.close()


@asynccontextmanager
async def _long_poll(
    dispatcher: Dispatcher, bot: Bot, introduced: bool, polling_timeout: int
) -> AsyncIterator[None]:
    started = asyncio.Event()

    async def mark_started() -> None:
        started.set()

    dispatcher.startup.register(mark_started)
    polling = asyncio.create_task(
        _poll(dispatcher, bot, introduced=introduced, polling_timeout=polling_timeout),
        name="telegram-polling",
    )
    polling.add_done_callback(log_failure)
    try:
        if introduced:
            # Until start-up has run, stop_polling() would find nothing to stop.
            waiter = asyncio.create_task(started.wait())
            try:
                await asyncio.wait((polling, waiter), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        yield
    finally:
        if started.is_set() and not polling.done():
            await dispatcher.stop_polling()
        else:
            polling.cancel()
        await asyncio.wait((polling,))


@asynccontextmanager
async def _receive_webhooks(
    settings: Settings, dispatcher: Dispatcher, bot: Bot, app: FastAPI, introduced: bool
) -> AsyncIterator[None]:
    """Mount the webhook route on the HTTP app and tell Telegram where it is.

    The webhook stays registered when the service stops: Telegram keeps the updates
    meanwhile and delivers them once the service answers again.
    """
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    assert settings.webhook_path is not None
    app.include_router(
        create_webhook_router(
            dispatcher, bot, path=settings.webhook_path, secret=settings.webhook_secret
        )
    )
    registering = asyncio.create_task(
        _register_webhook(settings, dispatcher, bot, introduced=introduced),
        name="telegram-webhook-registration",
    )
    registering.add_done_callback(log_failure)
    try:
        yield
    finally:
        registering.cancel()
        await asyncio.wait((registering,))


async def _register_webhook(
    settings: Settings, dispatcher: Dispatcher, bot: Bot, *, introduced: bool
) -> None:
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    if not introduced and not await _introduce_until_ready(bot):
        return
    backoff = Backoff(RETRY_BACKOFF)
    while True:
        try:
            await bot.set_webhook(
                str(settings.webhook_url),
                secret_token=settings.webhook_secret.get_secret_value(),
                allowed_updates=dispatcher.resolve_used_update_types(),
            )
        except _TRANSIENT_ERRORS as error:
            logger.warning("Cannot register the webhook yet (%s); retrying", error)
            await backoff.asleep()
            continue
        logger.info("Receiving updates on the webhook %s", settings.webhook_url)
        return


async def _poll(
    dispatcher: Dispatcher, bot: Bot, *, introduced: bool, polling_timeout: int
) -> None:
    if not introduced and not await _introduce_until_ready(bot):
        return
    await _forget_webhook(bot)
    await dispatcher.start_polling(
        bot,
        polling_timeout=polling_timeout,
        # Each update is a task, started in turn by the UpdatePipeline and confirmed by
        # ConfirmWhenHandled only once finished.
        handle_as_tasks=True,
        handle_signals=False,
        close_bot_session=False,
    )


async def _forget_webhook(bot: Bot) -> None:
    """Drop a webhook left from webhook mode: while one is set, getUpdates is refused.

    Its pending updates are kept: polling receives them next.
    """
    backoff = Backoff(RETRY_BACKOFF)
    while True:
        try:
            await bot.delete_webhook(drop_pending_updates=False)
        except _TRANSIENT_ERRORS as error:
            logger.warning("Cannot remove the webhook yet (%s); retrying", error)
            await backoff.asleep()
            continue
        return


async def _introduce(bot: Bot) -> bool:
    """Check the token and set the command menus; False if Telegram cannot be reached."""
    try:
        me = await bot.me()
        await set_commands(bot)
    except TelegramUnauthorizedError as error:
        raise BotStartError(f"Telegram rejected BOT_TOKEN: {error.message}") from error
    except _TRANSIENT_ERRORS as error:
        logger.warning("Telegram is not reachable yet (%s); retrying in the background", error)
        return False
    logger.info("Bot @%s is up", me.username)
    return True


async def _introduce_until_ready(bot: Bot) -> bool:
    backoff = Backoff(RETRY_BACKOFF)
    while True:
        await backoff.asleep()
        try:
            if await _introduce(bot):
                return True
        except BotStartError as error:
            logger.error("The bot is off: %s", error)
            return False


async def set_commands(bot: Bot) -> None:
    """The command menu, in English by default and in Russian for Russian users."""
    i18n = create_i18n()
    for locale, language_code in MENU_LANGUAGES:
        with i18n.context(), i18n.use_locale(locale):
            commands = bot_commands()
        await bot.set_my_commands(commands, language_code=language_code)
