"""Who may act on incidents in the chat: change a status (and, later, take, release or
snooze one).

OPERATOR_IDS names people by their Telegram user id; OPERATORS=admins lets each group's
administrators act there. With both, either is enough; with neither, everyone in a served
chat may act. Reporting, listing and looking are open to everyone the bot serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from aiogram import Bot
from aiogram.enums import ChatType
from aiogram.exceptions import AiogramError
from aiogram.types import Chat, User

logger = logging.getLogger(__name__)

ADMINS_KEPT_SECONDS = 300.0
"""How long a group's list of administrators is trusted before it is looked up again: a
promotion or demotion counts within this long."""
ADMINS_KEPT_CHATS = 1000


class Operators:
    """Decides whether a person may act in a chat.

    `admins_bot` looks the administrators up (getChatAdministrators). It should be a bot
    whose calls hold up no update: a lookup made through the handlers' own bot would
    count as the update's answer in the pipeline (`bot.pipeline`), before its write.
    """

    def __init__(
        self,
        user_ids: Iterable[int] = (),
        *,
        admins_bot: Bot | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._user_ids = frozenset(user_ids)
        self._admins_bot = admins_bot
        self._clock = clock
        self._admins: OrderedDict[int, tuple[float, frozenset[int]]] = OrderedDict()
        self._lookups: dict[int, asyncio.Task[frozenset[int] | None]] = {}

    @property
    def everyone(self) -> bool:
        """No rule is set: everyone in a served chat may act."""
        return not self._user_ids and self._admins_bot is None

    async def allow(
        self, chat: Chat | None, user: User | None, *, sender_chat: Chat | None = None
    ) -> bool:
        """Whether `user` (or, for an anonymous administrator or a channel's post, the
        `sender_chat`) may act on incidents in `chat` (None: a button on a message the
        bot cannot see, where only OPERATOR_IDS count)."""
        if self.everyone:
            return True
        if user is not None and user.id in self._user_ids:
            return True
        if self._admins_bot is None or chat is None:
            return False
        if sender_chat is not None and sender_chat.id == chat.id:
            # Written as the chat itself: an anonymous administrator, or a channel's post.
            return True
        if chat.type == ChatType.PRIVATE:
            # A private chat has one person in it, who is its owner.
            return user is not None and user.id == chat.id
        if user is None:
            return False
        admins = await self._chat_admins(chat.id)
        return admins is not None and user.id in admins

    async def _chat_admins(self, chat_id: int) -> frozenset[int] | None:
        kept = self._admins.get(chat_id)
        if kept is not None and kept[0] > self._clock():
            return kept[1]
        # Presses arriving together wait for one lookup.
        lookup = self._lookups.get(chat_id)
        if lookup is None:
            lookup = self._lookups[chat_id] = asyncio.create_task(self._look_up(chat_id))
            lookup.add_done_callback(lambda _: self._lookups.pop(chat_id, None))
        found = await asyncio.shield(lookup)
        if found is None:
            # Telegram cannot say now: the last list known, however old, or nobody.
            return None if kept is None else kept[1]
        return found

    async def _look_up(self, chat_id: int) -> frozenset[int] | None:
        assert self._admins_bot is not None
        try:
            members = await self._admins_bot.get_chat_administrators(chat_id)
        except AiogramError as error:
            logger.warning("Cannot look up the administrators of chat %s: %s", chat_id, error)
            return None
        admins = frozenset(member.user.id for member in members)
        self._admins[chat_id] = (self._clock() + ADMINS_KEPT_SECONDS, admins)
        self._admins.move_to_end(chat_id)
        while len(self._admins) > ADMINS_KEPT_CHATS:
            self._admins.popitem(last=False)
        return admins
