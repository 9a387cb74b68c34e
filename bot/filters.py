"""Filters: which chats the bot serves, and what a message asks of it.

The message filters parse once and hand the result to the handler by name (`report`,
`status_command`, `status`), so a handler's signature says what it works on.
"""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import Chat, Message, TelegramObject

from bot.parsing import parse_report, parse_status_command, parse_status_word


def message_text(message: Message) -> str | None:
    """What the person wrote: the text, or the caption of a photo or document."""
    return message.text if message.text is not None else message.caption


class ChatAllowed(Filter):
    """The update comes from a chat in ALLOWED_CHAT_IDS (any chat when that is empty)."""

    def __init__(self, allowed_chat_ids: frozenset[int]) -> None:
        self.allowed_chat_ids = allowed_chat_ids

    async def __call__(self, event: TelegramObject, event_chat: Chat | None = None) -> bool:
        if not self.allowed_chat_ids:
            return True
        return event_chat is not None and event_chat.id in self.allowed_chat_ids


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
