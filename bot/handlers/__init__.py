"""The bot's routers, in the order updates try them.

Ingestion first: reports are most of the traffic, and its message filters (a `[tag]`,
a status word in a reply, `#17 fixed`) match no command, so a report skips the command
filters. Then commands (the on-call ones too), then buttons, then replies that are notes
on an incident (a reply that is a report, a status word or a command is that instead);
all only for served chats, by a router-level filter. Ingestion's catch-all for edited
messages matches no command either: the commands handle new messages only. After them,
Telegram's notices of a group upgraded to a supergroup: no handler above takes a service
message, so they fall through to it whether the chat is served or (the new supergroup's
id) not yet, and a report does not pass its filters on the way. Last, the catch-all for
chats outside ALLOWED_CHAT_IDS.

Each module builds its router in `create_router()` rather than at import: an aiogram
router can be attached to one dispatcher only, and every `create_dispatcher()` call
(each start-up, each test) needs its own.
"""

from __future__ import annotations

from aiogram import Router

from bot.filters import ChatAllowed, ServedChats
from bot.handlers import buttons, commands, ingest, migrations, on_call, unserved


def create_routers(served_chats: ServedChats) -> list[Router]:
    served = Router(name="served_chats")
    in_scope = ChatAllowed(served_chats)
    for observer in (
        served.message,
        served.edited_message,
        served.channel_post,
        served.edited_channel_post,
        served.callback_query,
    ):
        observer.filter(in_scope)
    served.include_routers(
        ingest.create_router(),
        commands.create_router(),
        on_call.create_router(),
        buttons.create_router(),
        on_call.create_notes_router(),
    )
    return [served, migrations.create_router(), unserved.create_router(served_chats)]
