"""Filters: which chats the bot serves, and what a message asks of it.

The message filters parse once and hand the result to the handler by name (`report`,
`status_command`, `status`), so a handler's signature says what it works on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiogram.filters import Filter
from aiogram.types import Chat, Message, TelegramObject

from bot.parsing import parse_report, parse_status_command, parse_status_word
from storage.store import ChatScope


def message_text(message: Message) -> str | None:
    """What the person wrote: the text, or the caption of a photo or document."""
    return message.text if message.text is not None else message.caption


class ServedChats:
    """The chats the bot serves, and where Telegram moved them.

    ALLOWED_CHAT_IDS (every chat when it is empty), NOTIFY_CHAT_ID, and the supergroup each
    of those became when Telegram upgraded a group (`migrate_to_chat_id`): the settings
    keep naming the old group, and the bot keeps serving the chat under its new id.
    One object, shared by the chat filter and the sender, updated when a migration is seen.
    """

    def __init__(
        self,
        allowed_chat_ids: Iterable[int],
        *,
        notify_chat_id: int | None = None,
        migrations: Mapping[int, int] | None = None,
    ) -> None:
        self._ids = set(allowed_chat_ids)
        self.serves_every_chat = not self._ids
        if notify_chat_id is not None and not self.serves_every_chat:
            self._ids.add(notify_chat_id)
        self._moved: dict[int, int] = {}
        self._moved_from: dict[int, set[int]] = {}
        for old, new in (migrations or {}).items():
            self.follow(old, new)

    def __contains__(self, chat_id: object) -> bool:
        return self.serves_every_chat or chat_id in self._ids

    def follow(self, old_chat_id: int, new_chat_id: int) -> None:
        """The group `old_chat_id` is now the supergroup `new_chat_id`."""
        previous = self._moved.get(old_chat_id)
        if previous is not None:
            self._moved_from[previous].discard(old_chat_id)
        self._moved[old_chat_id] = new_chat_id
        self._moved_from.setdefault(new_chat_id, set()).add(old_chat_id)
        if old_chat_id in self._ids:
            self._ids.add(new_chat_id)

    def moved_to(self, chat_id: int) -> int | None:
        """The supergroup a group became, or None if it was never upgraded."""
        return self._moved.get(chat_id)

    def scope(self, chat_id: int) -> ChatScope:
        """The incidents this chat sees: its own and those of the groups that became it
        (a group upgraded to a supergroup keeps its incidents)."""
        chat_ids = {chat_id}
        unvisited = [chat_id]
        while unvisited:
            for old in self._moved_from.get(unvisited.pop(), ()):
                if old not in chat_ids:
                    chat_ids.add(old)
                    unvisited.append(old)
        return ChatScope(frozenset(chat_ids))


class ChatAllowed(Filter):
    """The update comes from a served chat (see ServedChats): passes `chats`, the scope of
    the incidents it may see and change (`ServedChats.scope`).

    An update with no chat (a button on an inline message) sees no incident.
    """

    def __init__(self, served: ServedChats) -> None:
        self.served = served

    async def __call__(
        self, event: TelegramObject, event_chat: Chat | None = None
    ) -> bool | dict[str, Any]:
        if event_chat is None:
            if not self.served.serves_every_chat:
                return False
            return {"chats": ChatScope(frozenset())}
        if event_chat.id not in self.served:
            return False
        return {"chats": self.served.scope(event_chat.id)}


class IsReport(Filter):
    """`[tag] text`: passes `report` (a Report, or MissingDescription for a bare tag)."""

    async def __call__(self, message: Message) -> bool | dict[str, Any]:
        report = parse_report(message_text(message))
        if report is None:
            return False
        return {"report": report}


class IsStatusCommand(Filter):
    """`#17 fixed`: passes `status_command`."""

    async def __call__(self, message: Message) -> bool | dict[str, Any]:
        command = parse_status_command(message_text(message))
        if command is None:
            return False
        return {"status_command": command}


class IsStatusReply(Filter):
    """A reply whose whole text is a status word (`fixed`, `в работе`): passes `status`."""

    async def __call__(self, message: Message) -> bool | dict[str, Any]:
        if message.reply_to_message is None:
            return False
        status = parse_status_word(message_text(message))
        if status is None:
            return False
        return {"status": status}


class IsNote(Filter):
    """A reply that may be a note on an incident: it has text (or a caption) and is not
    a command. Whether it answers an incident's card or report, its handler finds out."""

    async def __call__(self, message: Message) -> bool:
        text = message_text(message)
        if message.reply_to_message is None or not text:
            return False
        return not text.startswith("/")
