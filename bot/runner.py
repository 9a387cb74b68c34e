"""Running the bot beside the HTTP API: `async with run_bot(settings, store): ...`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import TypeVar

from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    AiogramError,
    ClientDecodeError,
    TelegramAPIError,
    TelegramUnauthorizedError,
)
from aiogram.types import User
from aiogram.utils.backoff import Backoff, BackoffConfig
from fastapi import FastAPI

from bot.cards import shorten
from bot.delivery import DeliveryPolicy, Sender
from bot.errors import BotStartError
from bot.factory import (
    create_bot,
    create_dispatcher,
    create_operators,
    create_served_chats,
)
from bot.i18n import create_i18n
from bot.menu import bot_commands
from bot.pipeline import UpdatePipeline
from bot.rate_limits import Limits, RateLimiter
from bot.reminders import Reminders
from bot.tasks import log_failure
from bot.webhook import create_webhook_router
from metrics import Metrics
from settings import Settings
from storage.leadership import Leadership, instance_name
from storage.models import utcnow
from storage.outbox import Outbox
from storage.reminders import ReminderPolicy
from storage.store import IncidentStore

logger = logging.getLogger(__name__)

POLLING_TIMEOUT_SECONDS = 30
"""How long one getUpdates call waits for news (long polling)."""
MENU_LANGUAGES: tuple[tuple[str, str | None], ...] = (("en", None), ("ru", "ru"))
"""(catalogue, Telegram language_code) for each command menu; None is the default menu."""
DRAIN_SECONDS = 10
"""How long stopping waits for updates still being handled."""
LEASE_NAME = "telegram"
"""The lease the active instance holds: the right to poll Telegram and to send."""
RETRY_BACKOFF = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.5, jitter=0.1)
FAILURE_QUOTE_LENGTH = 200
"""How much of Telegram's (or a proxy's) error a log line quotes."""

T = TypeVar("T")


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
    on_token_rejected: Callable[[], None] | None = None,
    pipeline: UpdatePipeline | None = None,
    leadership: Leadership | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[Bot]:
    """Register the command menu, deliver the outbox and receive updates until the block
    exits: by long polling, or with WEBHOOK_URL set, on `app`'s webhook route.

    Updates are handled in order, each starting once the one before it finished, waits
    for its write to commit or talks to Telegram (`bot.pipeline`), and an update is
    confirmed to Telegram (by the next getUpdates offset, or the webhook's 200) only after
    its writes are committed. What the chat must be told is queued in the outbox and
    delivered by a background sender, within `limits`; `delivery_queued` (set by the
    store's `on_delivery_queued`) wakes it at once.

    Entering the block waits for nothing from Telegram: the bot introduces itself (checks
    the token, sets the command menus) in the background, retrying while Telegram cannot
    be reached or answers with something that is not the Bot API (a proxy's error page).
    A token Telegram rejects ends the bot: `on_token_rejected` is called at once, and
    leaving the block raises BotStartError.

    Several instances may share the database: only the one holding the lease (the
    active one, see `storage.leadership`) polls and sends; the others wait as standbys
    and take over within FAILOVER_SECONDS when it stops. `leadership` is the election to
    take part in (main.py's, whose role /health reports); without, one is made here.

    `metrics` count the bots' Telegram calls and the updates handled.

    `pipeline` is for tests that wait until every update has finished, replies included.
    """
    if not settings.allowed_chat_ids:
        logger.warning("ALLOWED_CHAT_IDS is empty: the bot serves every chat it is added to")
    limiter = RateLimiter(limits or Limits())
    pipeline = pipeline or UpdatePipeline()
    bot = create_bot(settings, limiter=limiter, pipeline=pipeline, metrics=metrics)
    # The sender takes its turns in the limiter itself (skipping a full chat rather than
    # waiting), so it sends through a bot without the limiter's middleware.
    sender_bot = create_bot(settings, metrics=metrics)
    rejected: list[BotStartError] = []

    def reject(error: BotStartError) -> None:
        rejected.append(error)
        if on_token_rejected is not None:
            on_token_rejected()

    try:
        outbox = store.outbox
        served = create_served_chats(settings, await outbox.chat_migrations())
        # Administrators are looked up through the sender's bot: a call through `bot`
        # would count as the update's answer before its write (`bot.pipeline`).
        operators = create_operators(settings, admins_bot=sender_bot)
        dispatcher = create_dispatcher(
            store,
            settings,
            served=served,
            pipeline=pipeline,
            operators=operators,
            metrics=metrics,
        )
        polling_started = _started_event(dispatcher)
        elected = leadership or create_leadership(settings, store)
        if settings.webhook_url is not None:
            if app is None:
                raise ValueError("webhook mode needs the HTTP app to receive updates on")
            # Every instance receives the updates sent to it; only the active one tells
            # Telegram where the webhook is.
            _mount_webhook(settings, dispatcher, bot, app, pipeline)

        @asynccontextmanager
        async def lead() -> AsyncIterator[None]:
            """What the active instance runs: the sender, the reminders, and polling or
            the webhook's registration."""
            sender = Sender(
                sender_bot,
                outbox.claiming_as(elected.lease.holder),
                limiter,
                served,
                create_i18n(),
                wake=delivery_queued or asyncio.Event(),
                policy=delivery,
                may_send=elected.holds_lease,
            )
            await _count_recent_sends(outbox, limiter)
            sender.start()
            reminding = asyncio.create_task(
                Reminders(store, reminder_policy(settings)).run(), name="reminders"
            )
            try:
                if settings.webhook_url is None:
                    receiving = _long_poll(
                        dispatcher, bot, polling_timeout, reject, started=polling_started
                    )
                else:
                    receiving = _registering_webhook(settings, dispatcher, bot, reject)
                async with receiving:
                    yield
            finally:
                reminding.cancel()
                await asyncio.wait((reminding,))
                await sender.stop()

        leading = asyncio.create_task(elected.run(lead), name="leadership")
        leading.add_done_callback(log_failure)
        try:
            yield bot
        finally:
            elected.stop()
            await asyncio.wait((leading,))
        # Updates still being handled finish (their writes committed, their replies
        # sent); those not confirmed yet come again after a restart either way.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pipeline.drained(), DRAIN_SECONDS)
    finally:
        await bot.session.close()
        await sender_bot.session.close()
    if rejected:
        raise rejected[0]


def reminder_policy(settings: Settings) -> ReminderPolicy:
    """REMIND_AFTER, REMIND_EVERY and STALE_AFTER."""
    return ReminderPolicy.from_seconds(
        settings.remind_after, settings.remind_every, settings.stale_after
    )


async def _count_recent_sends(outbox: Outbox, limiter: RateLimiter) -> None:
    """Count what was sent within the limits' windows (by an instance that was active
    before this one took over, say), so the first minute after a failover keeps to them."""
    now = utcnow()
    try:
        sent = await outbox.sent_since(now - timedelta(seconds=limiter.longest_window))
    except Exception as error:
        logger.warning("Cannot read what was sent recently: %s", error)
        return
    for chat_id, sent_at in sent:
        limiter.remember(chat_id, max((now - sent_at).total_seconds(), 0.0))


def create_leadership(settings: Settings, store: IncidentStore) -> Leadership:
    """This instance's part in electing the one that polls and sends."""
    return Leadership.for_failover(
        partial(store.lease, LEASE_NAME, instance_name()), settings.failover_seconds
    )


Rejected = Callable[[BotStartError], None]


def _started_event(dispatcher: Dispatcher) -> asyncio.Event:
    """Set each time the dispatcher starts polling (its start-up handlers run).

    Registered once per `run_bot`: the dispatcher outlives the leadership terms, and a
    handler per term would pile up with every failover back and forth.
    """
    started = asyncio.Event()

    async def mark_started() -> None:
        started.set()

    dispatcher.startup.register(mark_started)
    return started


@asynccontextmanager
async def _long_poll(
    dispatcher: Dispatcher,
    bot: Bot,
    polling_timeout: int,
    on_rejected: Rejected,
    *,
    started: asyncio.Event,
) -> AsyncIterator[None]:
    """Poll for this leadership term; `started` (`_started_event`) tells whether the
    dispatcher got as far as starting."""
    started.clear()
    polling = asyncio.create_task(
        _poll(dispatcher, bot, polling_timeout=polling_timeout, on_rejected=on_rejected),
        name="telegram-polling",
    )
    polling.add_done_callback(log_failure)
    try:
        yield
    finally:
        # Until start-up has run, stop_polling() would find nothing to stop; before it,
        # the task is introducing the bot or removing a webhook, and cancelling is safe.
        if started.is_set() and not polling.done():
            await dispatcher.stop_polling()
        else:
            polling.cancel()
        await asyncio.wait((polling,))


def _mount_webhook(
    settings: Settings, dispatcher: Dispatcher, bot: Bot, app: FastAPI, pipeline: UpdatePipeline
) -> None:
    """Receive updates on the HTTP app, at WEBHOOK_URL's path."""
    assert settings.webhook_path is not None and settings.webhook_secret is not None
    app.include_router(
        create_webhook_router(
            dispatcher,
            bot,
            path=settings.webhook_path,
            secret=settings.webhook_secret,
            pipeline=pipeline,
        )
    )


@asynccontextmanager
async def _registering_webhook(
    settings: Settings, dispatcher: Dispatcher, bot: Bot, on_rejected: Rejected
) -> AsyncIterator[None]:
    """Tell Telegram where the webhook is.

    The webhook stays registered when the service stops: Telegram keeps the updates
    meanwhile and delivers them once the service answers again.
    """
    registering = asyncio.create_task(
        _register_webhook(settings, dispatcher, bot, on_rejected=on_rejected),
        name="telegram-webhook-registration",
    )
    registering.add_done_callback(log_failure)
    try:
        yield
    finally:
        registering.cancel()
        await asyncio.wait((registering,))


async def _register_webhook(
    settings: Settings, dispatcher: Dispatcher, bot: Bot, *, on_rejected: Rejected
) -> None:
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    webhook_url, secret = str(settings.webhook_url), settings.webhook_secret.get_secret_value()

    async def register() -> bool:
        return await bot.set_webhook(
            webhook_url,
            secret_token=secret,
            allowed_updates=dispatcher.resolve_used_update_types(),
        )

    if not await _introduce(bot, on_rejected):
        return
    if await _until_done("register the webhook", register, on_rejected):
        logger.info("Receiving updates on the webhook %s", webhook_url)


async def _poll(
    dispatcher: Dispatcher, bot: Bot, *, polling_timeout: int, on_rejected: Rejected
) -> None:
    if not await _introduce(bot, on_rejected):
        return
    # While a webhook (left from webhook mode) is set, getUpdates is refused. Its pending
    # updates are kept: polling receives them next.
    forget_webhook = partial(bot.delete_webhook, drop_pending_updates=False)
    if not await _until_done("remove the webhook", forget_webhook, on_rejected):
        return
    await dispatcher.start_polling(
        bot,
        polling_timeout=polling_timeout,
        # Each update is a task, started in turn by the UpdatePipeline and confirmed by
        # PipelinedCalls only once its writes are committed.
        handle_as_tasks=True,
        handle_signals=False,
        close_bot_session=False,
    )


async def _introduce(bot: Bot, on_rejected: Rejected) -> bool:
    """Check the token and set the command menus; False if Telegram rejected the token."""

    async def introduce() -> User:
        me = await bot.me()
        await set_commands(bot)
        return me

    me = await _until_done("reach Telegram", introduce, on_rejected)
    if me is None:
        return False
    logger.info("Bot @%s is up", me.username)
    return True


async def _until_done(
    what: str, call: Callable[[], Awaitable[T]], on_rejected: Rejected
) -> T | None:
    """`call()`'s result, retried with backoff for as long as Telegram is unavailable or
    answers with something other than the Bot API; None if it rejects the token.

    Every answer other than a rejected token is worth waiting out: a proxy or captive
    portal in front of TELEGRAM_API_URL, an outage, a network down.
    """
    backoff = Backoff(RETRY_BACKOFF)
    while True:
        try:
            return await call()
        except TelegramUnauthorizedError as error:
            on_rejected(BotStartError(f"Telegram rejected BOT_TOKEN: {error.message}"))
            return None
        except (TelegramAPIError, AiogramError) as error:
            logger.warning(
                "Cannot %s yet (%s); retrying in %.0f s",
                what,
                describe_failure(error),
                backoff.next_delay,
            )
            await backoff.asleep()


def describe_failure(error: AiogramError) -> str:
    """One short line for the log: an HTML error page is not worth quoting whole."""
    if isinstance(error, ClientDecodeError):
        return "the answer is not the Bot API's JSON: is TELEGRAM_API_URL right?"
    return f"{type(error).__name__}: {shorten(str(error), FAILURE_QUOTE_LENGTH)}"


async def set_commands(bot: Bot) -> None:
    """The command menu, in English by default and in Russian for Russian users."""
    i18n = create_i18n()
    for locale, language_code in MENU_LANGUAGES:
        with i18n.context(), i18n.use_locale(locale):
            commands = bot_commands()
        await bot.set_my_commands(commands, language_code=language_code)
