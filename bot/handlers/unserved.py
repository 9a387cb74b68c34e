"""Chats outside ALLOWED_CHAT_IDS: a private chat is told once per message; others, nothing.

Registered last: it sees only what the served routers let through.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.cards import escape
from bot.filters import ChatAllowed


async def not_served(message: Message) -> None:
    await message.reply(escape(_("Sorry, this chat is not served.")))


async def ignore_press(callback: CallbackQuery) -> None:
    # Answered all the same: an unanswered press keeps spinning.
    await callback.answer()


def create_router(allowed_chat_ids: frozenset[int]) -> Router:
    router = Router(name=__name__)
    outside = ~ChatAllowed(allowed_chat_ids)
    router.message.register(not_served, outside, F.chat.type == ChatType.PRIVATE)
    router.callback_query.register(ignore_press, outside)
    return router
