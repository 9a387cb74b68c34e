"""Building the bot and its dispatcher from the settings; nothing runs here."""

from __future__ import annotations

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode

from bot.handlers import create_routers
from bot.handlers.errors import apologize
from bot.i18n import create_i18n, create_i18n_middleware
from settings import Settings
from storage.store import IncidentStore


def create_bot(settings: Settings) -> Bot:
    """A Bot talking to TELEGRAM_API_URL: Telegram, a self-hosted Bot API or a stand-in."""
    if settings.bot_token is None:
        raise ValueError("BOT_TOKEN is not set")
    api = TelegramAPIServer.from_base(str(settings.telegram_api_url).rstrip("/"))
    return Bot(
        settings.bot_token.get_secret_value(),
        session=AiohttpSession(api=api),
        default=DefaultBotProperties(
            parse_mode=ParseMode.HTML,
            # A card still goes out when the message it answers was deleted meanwhile.
            allow_sending_without_reply=True,
            link_preview_is_disabled=True,
        ),
    )


def create_dispatcher(store: IncidentStore, settings: Settings) -> Dispatcher:
    """The dispatcher with every router, the i18n middleware and the error handler.

    The store and settings reach handlers by name (`store: IncidentStore`).
    """
    dispatcher = Dispatcher(store=store, settings=settings, disable_fsm=True)
    create_i18n_middleware(create_i18n()).setup(dispatcher)
    dispatcher.errors.register(apologize)
    dispatcher.include_routers(*create_routers(settings.allowed_chat_ids))
    return dispatcher
