"""Chats outside ALLOWED_CHAT_IDS: a private chat gets a short reply now and then; others,
nothing.

Registered last: it sees only what the served routers let through. Each such chat is
logged once, with its id, which is also how an admin finds the id of a new group.

Anyone can write to the bot in private, as often as they like. Answering each message
would spend the bot's flood allowance (a private chat's is one message a second, and
all chats share thirty a second) on strangers, so a chat gets the answer at most once per
`ANSWER_EVERY`, and all of them together at most `ANSWERS_PER_MINUTE`. What is
remembered about strangers is bounded too.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aiogram import Router
from aiogram.enums import ChatType
from aiogram.types import CallbackQuery, Chat, Message
from aiogram.utils.i18n import gettext as _

from bot.cards import escape
from bot.filters import ChatAllowed, ServedChats

logger = logging.getLogger(__name__)

ANSWER_EVERY = 600.0
"""Seconds before an unserved private chat is told again that it is not served."""
ANSWERS_PER_MINUTE = 10
"""How many "not served" answers all unserved chats together get in a minute."""
REMEMBERED_CHATS = 10_000
"""Unserved chats remembered (for the log and the answers); the oldest are forgotten."""


class UnservedChats:
    """Which unserved chats were seen and when each was last answered."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._answered_at: OrderedDict[int, float | None] = OrderedDict()
        self._recent_answers: deque[float] = deque()

    def note(self, chat: Chat) -> None:
        """Log the chat the first time it is seen."""
        if chat.id in self._answered_at:
            return
        self._remember(chat.id, None)
        name = chat.title or chat.full_name or chat.username or ""
        logger.info(
            "Ignoring chat %s (%s, %r): it is not in ALLOWED_CHAT_IDS", chat.id, chat.type, name
        )

    def may_answer(self, chat_id: int) -> bool:
        """Whether the chat is due an answer now; if so, it counts as answered."""
        now = self._clock()
        last = self._answered_at.get(chat_id)
        if last is not None and now - last < ANSWER_EVERY:
            return False
        while self._recent_answers and now - self._recent_answers[0] >= 60.0:
            self._recent_answers.popleft()
        if len(self._recent_answers) >= ANSWERS_PER_MINUTE:
            return False
        self._recent_answers.append(now)
        self._remember(chat_id, now)
        return True

    def _remember(self, chat_id: int, answered_at: float | None) -> None:
        self._answered_at[chat_id] = answered_at
        self._answered_at.move_to_end(chat_id)
        while len(self._answered_at) > REMEMBERED_CHATS:
            self._answered_at.popitem(last=False)


async def _in_private_chat(message: Message) -> bool:
    # A coroutine: aiogram runs a plain function filter (F.chat.type == ...) in a thread.
    return message.chat.type == ChatType.PRIVATE


def create_router(served: ServedChats) -> Router:
    router = Router(name=__name__)
    unserved = UnservedChats()
    outside = ~ChatAllowed(served)

    async def not_served(message: Message) -> None:
        unserved.note(message.chat)
        if unserved.may_answer(message.chat.id):
            await message.reply(escape(_("Sorry, this chat is not served.")))

    async def ignore(message: Message) -> None:
        unserved.note(message.chat)

    async def ignore_press(callback: CallbackQuery) -> None:
        # Answered all the same: an unanswered press keeps spinning. Button answers are
        # not messages: Telegram's flood limits do not count them.
        await callback.answer()

    router.message.register(not_served, outside, _in_private_chat)
    router.message.register(ignore, outside)
    router.channel_post.register(ignore, outside)
    router.callback_query.register(ignore_press, outside)
    return router
