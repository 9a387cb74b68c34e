"""Building the bot and its dispatcher from the settings; nothing runs here."""

from __future__ import annotations

from collections.abc import Mapping

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode

from bot.filters import ServedChats
from bot.handlers import create_routers
from bot.handlers.errors import apologize
from bot.i18n import create_i18n, create_i18n_middleware
from bot.metrics import CountedCalls, CountedUpdates
from bot.operators import Operators
from bot.pipeline import PipelinedCalls, UpdatePipeline
from bot.rate_limits import RateLimiter, RateLimitMiddleware
from metrics import Metrics
from settings import Settings
from storage.store import IncidentStore


def create_bot(
    settings: Settings,
    *,
    limiter: RateLimiter | None = None,
    pipeline: UpdatePipeline | None = None,
    metrics: Metrics | None = None,
) -> Bot:
    """A Bot talking to TELEGRAM_API_URL: Telegram, a self-hosted Bot API or a stand-in.

    With `limiter`, every message the bot sends or edits takes its turn in it. With
    `pipeline`, the bot's calls keep to it (`bot.pipeline.PipelinedCalls`). With
    `metrics`, every call is counted in them by method and outcome.
    """
    if settings.bot_token is None:
        raise ValueError("BOT_TOKEN is not set")
    api = TelegramAPIServer.from_base(str(settings.telegram_api_url).rstrip("/"))
    bot = Bot(
        settings.bot_token.get_secret_value(),
        session=AiohttpSession(api=api),
        default=DefaultBotProperties(
            parse_mode=ParseMode.HTML,
            # A card still goes out when the message it answers was deleted meanwhile.
            allow_sending_without_reply=True,
            link_preview_is_disabled=True,
        ),
    )
    # The first middleware is the outermost: a call releases its update before it waits
    # for anything, its turn in the flood limiter included.
    if pipeline is not None:
        bot.session.middleware(PipelinedCalls(pipeline))
    if limiter is not None:
        bot.session.middleware(RateLimitMiddleware(limiter))
    # The innermost: it counts the requests that reach Telegram, each retry included.
    if metrics is not None:
        bot.session.middleware(CountedCalls(metrics))
    return bot


def create_served_chats(
    settings: Settings, migrations: Mapping[int, int] | None = None
) -> ServedChats:
    """The chats the settings name, followed through the upgrades seen so far."""
    return ServedChats(
        settings.allowed_chat_ids,
        notify_chat_id=settings.notify_chat_id,
        migrations=migrations,
    )


def create_operators(settings: Settings, admins_bot: Bot | None = None) -> Operators:
    """Who may act in the chat (OPERATOR_IDS, OPERATORS); `admins_bot` looks up each
    group's administrators for OPERATORS=admins (see `bot.operators`)."""
    if settings.operators == "admins" and admins_bot is None:
        raise ValueError("OPERATORS=admins needs a bot to look the administrators up with")
    return Operators(
        settings.operator_ids, admins_bot=admins_bot if settings.operators == "admins" else None
    )


def create_dispatcher(
    store: IncidentStore,
    settings: Settings,
    *,
    served: ServedChats | None = None,
    pipeline: UpdatePipeline | None = None,
    operators: Operators | None = None,
    metrics: Metrics | None = None,
) -> Dispatcher:
    """The dispatcher with every router, the i18n middleware and the error handler.

    With `pipeline`, updates fed concurrently are handled in turn (`bot.pipeline`); it is
    an outer middleware, so every update fed enters it. With `metrics`, each update is
    counted once handled, outside the pipeline (which handles an update again while the
    database is unavailable).

    The store, its outbox, the settings, the served chats and who may act reach handlers
    by name (`store: IncidentStore`, `outbox: Outbox`, `served: ServedChats`,
    `operators: Operators`; without one, `create_operators(settings)`).
    """
    if served is None:
        served = create_served_chats(settings)
    dispatcher = Dispatcher(
        store=store,
        outbox=store.outbox,
        settings=settings,
        served=served,
        operators=operators or create_operators(settings),
        disable_fsm=True,
    )
    if metrics is not None:
        dispatcher.update.outer_middleware(CountedUpdates(metrics))
    if pipeline is not None:
        dispatcher.update.outer_middleware(pipeline)
    create_i18n_middleware(create_i18n()).setup(dispatcher)
    dispatcher.errors.register(apologize)
    dispatcher.include_routers(*create_routers(served))
    return dispatcher
