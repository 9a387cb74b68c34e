"""Reading the chat: reports become incidents, edits follow them, status words move them.

Matches any text, so its router comes after the commands. Plain chat matches nothing
here and gets no reply.
"""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot import actions
from bot.cards import escape
from bot.filters import IsReport, IsStatusCommand, IsStatusReply, message_text
from bot.operators import Operators
from bot.parsing import MissingDescription, Report, StatusCommand, parse_report
from bot.pipeline import OnQueued
from storage.rules import DEFAULT_SOURCE, InvalidIncidentError, Status
from storage.store import ChatScope, IncidentStore


async def ingest_report(
    message: Message,
    report: Report | MissingDescription,
    store: IncidentStore,
    on_queued: OnQueued = None,
) -> None:
    """`[monitoring] Scooter #42 is not responding` → an incident and its card."""
    await actions.report_incident(message, store, report, on_queued=on_queued)


async def change_by_reply(
    message: Message,
    status: Status,
    store: IncidentStore,
    chats: ChatScope,
    operators: Operators,
    bot: Bot,
    on_queued: OnQueued = None,
) -> None:
    """A status word replying to a card or to a report changes that incident (if it is
    this chat's: a card forwarded from another chat names an incident it does not see)."""
    incident_id = await actions.replied_incident_id(message, store, bot)
    if incident_id is None:
        return
    await actions.change_status(
        message, store, chats, operators, incident_id, status, on_queued=on_queued
    )


async def change_by_number(
    message: Message,
    status_command: StatusCommand,
    store: IncidentStore,
    chats: ChatScope,
    operators: Operators,
    on_queued: OnQueued = None,
) -> None:
    """`#17 fixed`."""
    await actions.change_status(
        message,
        store,
        chats,
        operators,
        status_command.incident_id,
        status_command.status,
        on_queued=on_queued,
    )


async def follow_edit(message: Message, store: IncidentStore, on_queued: OnQueued = None) -> None:
    """An edited report updates its incident's description; the store queues the card's
    edit.

    An edit that turns a plain message into a report (the tag was forgotten) reports it.
    """
    await _follow_edit(message, store, parse_report(message_text(message)), on_queued)


async def follow_new_edit(
    message: Message, command: CommandObject, store: IncidentStore, on_queued: OnQueued = None
) -> None:
    """An edited `/new` command updates its incident like an edited report."""
    text = (command.args or "").strip()
    report = (parse_report(text) or Report(DEFAULT_SOURCE, text)) if text else None
    await _follow_edit(message, store, report, on_queued)


async def _follow_edit(
    message: Message,
    store: IncidentStore,
    report: Report | MissingDescription | None,
    on_queued: OnQueued,
) -> None:
    incident = await store.find_by_message(message.chat.id, message.message_id)
    if incident is None:
        if isinstance(report, Report):
            await actions.report_incident(message, store, report, on_queued=on_queued)
        return
    if not isinstance(report, Report) or report.description == incident.description:
        return
    try:
        await store.update_description(
            message.chat.id, message.message_id, report.description, by=actions.actor_of(message)
        )
    except InvalidIncidentError as error:
        # The incident keeps its description; the person learns why the edit did not count.
        await message.reply(escape(actions.not_stored_text(error)))


def create_router() -> Router:
    router = Router(name=__name__)
    for new_messages in (router.message, router.channel_post):
        new_messages.register(ingest_report, IsReport())
        new_messages.register(change_by_reply, IsStatusReply())
        new_messages.register(change_by_number, IsStatusCommand())
    for edits in (router.edited_message, router.edited_channel_post):
        edits.register(follow_new_edit, Command("new"))
        edits.register(follow_edit)
    return router
