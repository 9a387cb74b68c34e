"""Chats outside ALLOWED_CHAT_IDS: a private chat gets a short reply; others, nothing.

Registered last: it sees only what the served routers let through. Each such chat is
logged once, with its id, which is also how an admin finds the id of a new group.
"""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.enums import ChatType
from aiogram.types import CallbackQuery, Chat, Message
from aiogram.utils.i18n import gettext as _

from bot.cards import escape
from bot.filters import ChatAllowed, ServedChats

logger = logging.getLogger(__name__)


class _UnservedChats:
    """Remembers which unserved chats were logged, so each is logged once."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def note(self, chat: Chat) -> None:
        if chat.id in self._seen:
            return
        self._seen.add(chat.id)
        name = chat.title or chat.full_name or chat.username or ""
        logger.info(
            "Ignoring chat %s (%s, %r): it is not in ALLOWED_CHAT_IDS", chat.id, chat.type, name
        )


async def _in_private_chat(message: Message) -> bool:
    # A coroutine: aiogram runs a plain function filter (F.chat.type == ...) in a thread.
    return message.chat.type == ChatType.PRIVATE


def create_router(served: ServedChats) -> Router:
    router = Router(name=__name__)
    unserved = _UnservedChats()
    outside = ~ChatAllowed(served)

    async def not_served(message: Message) -> None:
        unserved.note(message.chat)
        await message.reply(escape(_("Sorry, this chat is not served.")))

    async def ignore(message: Message) -> None:
        unserved.note(message.chat)

    async def ignore_press(callback: CallbackQuery) -> None:
        # Answered all the same: an unanswered press keeps spinning.
        await callback.answer()

    router.message.register(not_served, outside, _in_private_chat)
    router.message.register(ignore, outside)
    router.channel_post.register(ignore, outside)
    router.callback_query.register(ignore_press, outside)
    return router
