"""What people's messages do to incidents, shared by commands, ingestion and buttons.

Each function makes one call on the store and turns the outcome into replies to the
person: the updated card for a status change, or a short explanation. What the chat must
see about a change (a new incident's card, an edit of a card) the store queues in the
outbox, and the sender (`bot.delivery`) posts it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot.callbacks import HistoryPage, StatusButton, TakeButton
from bot.cards import TEXT_LIMIT, Rendered, escape, render_card, status_label, visible_length
from bot.delivery import is_not_modified
from bot.operators import Operators
from bot.parsing import MissingDescription, Report
from bot.pipeline import OnQueued
from bot.timeline import RECENT_EVENTS, recent_events_text
from storage.models import IncidentRow
from storage.rules import InvalidIncidentError, Status
from storage.store import (
    Actor,
    CardRequest,
    ChatScope,
    IncidentNotFoundError,
    IncidentStore,
    NewIncident,
    StatusChangedMeanwhileError,
    TransitionNotAllowedError,
)

logger = logging.getLogger(__name__)


def author_name(message: Message) -> str | None:
    """Who wrote the message: the channel or anonymous admin's chat, else the person.

    As Telegram gives it: the store cleans and shortens names (`normalize_name`)."""
    if message.sender_chat is not None and message.sender_chat.title:
        return message.sender_chat.title
    if message.from_user is not None:
        return message.from_user.full_name
    return None


def actor_of(message: Message) -> Actor:
    """Who wrote the message, for the timeline: their name, and their user id unless
    they wrote as a chat (a channel, an anonymous administrator)."""
    user_id = None
    if message.sender_chat is None and message.from_user is not None:
        user_id = message.from_user.id
    return Actor(author_name(message), user_id)


def not_found_text(incident_id: int) -> str:
    return _("Incident #{id} not found").format(id=incident_id)


def forbidden_text(error: TransitionNotAllowedError) -> str:
    allowed = ", ".join(status_label(status) for status in error.allowed)
    return _(
        "Incident #{id} cannot go from {current} to {requested}."
        " Allowed from {current}: {allowed}."
    ).format(
        id=error.incident.id,
        current=status_label(error.current),
        requested=status_label(error.requested),
        allowed=allowed or _("none, it is final"),
    )


def changed_meanwhile_text(error: StatusChangedMeanwhileError) -> str:
    return _("Incident #{id} is {status} now: someone changed it first. Look again.").format(
        id=error.incident.id, status=status_label(error.incident.status)
    )


def not_stored_text(error: InvalidIncidentError) -> str:
    return _("Not stored: {reason}").format(reason=error)


def missing_description_text(report: MissingDescription) -> str:
    return _(
        "What happened? Write it after the tag, e.g. [{source}] Scooter #42 is not responding"
    ).format(source=report.source)


async def report_incident(
    message: Message,
    store: IncidentStore,
    report: Report | MissingDescription,
    *,
    on_queued: OnQueued = None,
) -> None:
    """Store the message as an incident; its card is queued in the same transaction.

    Nothing is sent from here: the sender posts the card as a reply to the report (in
    the report's forum topic, in the reporter's language), so storing never waits on
    Telegram. A redelivered message finds its incident already stored and queues nothing.
    `on_queued` is the update pipeline's (`bot.pipeline.OnQueued`).
    """
    if isinstance(report, MissingDescription):
        await message.reply(escape(missing_description_text(report)))
        return
    try:
        await store.create(
            NewIncident(
                description=report.description,
                source=report.source,
                created_by=author_name(message),
                created_by_id=actor_of(message).user_id,
                chat_id=message.chat.id,
                message_id=message.message_id,
            ),
            card=CardRequest(
                chat_id=message.chat.id,
                reply_to_message_id=message.message_id,
                message_thread_id=message.message_thread_id if message.is_topic_message else None,
                locale=get_i18n().current_locale,
            ),
            on_queued=on_queued,
        )
    except InvalidIncidentError as error:
        await message.reply(escape(not_stored_text(error)))


def not_an_operator_text() -> str:
    return _("Only the chat's operators can change incidents here.")


async def may_act(message: Message, operators: Operators) -> bool:
    """Whether the message's author may change incidents here; if not, they are told so."""
    if await operators.allow(message.chat, message.from_user, sender_chat=message.sender_chat):
        return True
    await message.reply(escape(not_an_operator_text()))
    return False


async def change_status(
    message: Message,
    store: IncidentStore,
    chats: ChatScope,
    operators: Operators,
    incident_id: int,
    status: Status,
    *,
    on_queued: OnQueued = None,
) -> None:
    """Move an incident of this chat's to `status` and reply with its card, or say why not.

    The incident's own card follows through the outbox: the store queued its edit.
    Another chat's incident is not found; someone who may not act (`bot.operators`) is
    told so, and nothing changes.
    """
    if not await may_act(message, operators):
        return
    try:
        change = await store.change_status(
            incident_id,
            status,
            changed_by=author_name(message),
            changed_by_id=actor_of(message).user_id,
            chats=chats,
            on_queued=on_queued,
        )
    except IncidentNotFoundError:
        await message.reply(escape(not_found_text(incident_id)))
        return
    except TransitionNotAllowedError as error:
        await message.reply(escape(forbidden_text(error)))
        return
    await reply_with_card(message, change.incident)


async def show_card(
    message: Message, store: IncidentStore, chats: ChatScope, incident_id: int
) -> None:
    """Reply with the card of an incident of this chat's and its latest events; another
    chat's is not found."""
    try:
        incident = await store.get(incident_id, chats=chats)
        latest = await store.events(incident_id, limit=RECENT_EVENTS, newest=True, chats=chats)
    except IncidentNotFoundError:
        await message.reply(escape(not_found_text(incident_id)))
        return
    card = render_card(incident)
    text = card.text
    if latest.items:
        events = recent_events_text(latest.items, latest.total, datetime.now(UTC))
        # Below the card when both fit one message; the 📜 History button shows them all.
        if visible_length(f"{text}\n\n{events}") <= TEXT_LIMIT:
            text = f"{text}\n\n{events}"
    await message.reply(text, reply_markup=card.reply_markup)


async def reply_with_card(message: Message, incident: IncidentRow) -> None:
    card = render_card(incident)
    await message.reply(card.text, reply_markup=card.reply_markup)


async def edit_message(bot: Bot, chat_id: int, message_id: int, rendered: Rendered) -> None:
    """Edit a message of the bot's; one that is unchanged, gone or too old is left be."""
    try:
        await bot.edit_message_text(
            text=rendered.text,
            chat_id=chat_id,
            message_id=message_id,
            reply_markup=rendered.reply_markup,
        )
    except TelegramBadRequest as error:
        if is_not_modified(error):
            return
        logger.warning("Cannot edit message %s in chat %s: %s", message_id, chat_id, error)


async def replied_incident_id(message: Message, store: IncidentStore, bot: Bot) -> int | None:
    """The incident a reply is about: the one made from the message it answers, or whose
    card (or a copy of it, a /status answer) it answers; None for any other reply."""
    replied = message.reply_to_message
    if replied is None:
        return None
    incident = await store.find_by_message(message.chat.id, replied.message_id)
    if incident is not None:
        return incident.id
    return _card_incident_id(replied, bot)


def _card_incident_id(replied: Message, bot: Bot) -> int | None:
    """The incident a card of this bot's is about, read from the card's buttons."""
    if replied.from_user is None or replied.from_user.id != bot.id:
        return None
    markup = replied.reply_markup
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data is None:
                continue
            for factory in (StatusButton, TakeButton, HistoryPage):
                try:
                    return factory.unpack(button.callback_data).incident
                except (TypeError, ValueError):
                    continue
    return None
