"""A group upgraded to a supergroup: follow it to its new chat id.

Telegram announces the upgrade twice: a service message with `migrate_to_chat_id` in the
old group and one with `migrate_from_chat_id` in the new supergroup. Either is enough:
what is still queued for the old id goes to the new one, the new id is served from now
on (ALLOWED_CHAT_IDS still names the old one), and both survive a restart. This router
is not behind the served-chats filter, since the new id is not served until this runs.
"""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.types import Message

from bot.filters import ServedChats
from storage.outbox import Outbox

logger = logging.getLogger(__name__)


async def follow_migration(
    old_chat_id: int, new_chat_id: int, served: ServedChats, outbox: Outbox
) -> None:
    """Record the upgrade and serve the new chat if the old one was served."""
    if old_chat_id not in served or served.moved_to(old_chat_id) == new_chat_id:
        return
    await outbox.move_chat(old_chat_id, new_chat_id)
    served.follow(old_chat_id, new_chat_id)
    logger.info("Chat %s became supergroup %s: following it", old_chat_id, new_chat_id)


async def migrated_to(message: Message, served: ServedChats, outbox: Outbox) -> None:
    """The old group's notice: `migrate_to_chat_id`."""
    if message.migrate_to_chat_id is not None:
        await follow_migration(message.chat.id, message.migrate_to_chat_id, served, outbox)


async def migrated_from(message: Message, served: ServedChats, outbox: Outbox) -> None:
    """The new supergroup's notice: `migrate_from_chat_id`."""
    if message.migrate_from_chat_id is not None:
        await follow_migration(message.migrate_from_chat_id, message.chat.id, served, outbox)


# Coroutine filters: every message the served chats' routers leave passes this router, and
# aiogram runs a plain function filter (F.migrate_to_chat_id) in a worker thread.
async def _announces_migration_to(message: Message) -> bool:
    return message.migrate_to_chat_id is not None


async def _announces_migration_from(message: Message) -> bool:
    return message.migrate_from_chat_id is not None


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(migrated_to, _announces_migration_to)
    router.message.register(migrated_from, _announces_migration_from)
    return router
