"""Who is on it and what happened: /take, /release, /mine, /note, the card's 🙋 Take and
📜 History buttons, and notes written as replies to a card or a report.

Taking and releasing are for operators (`bot.operators`); notes, /mine and history are
for everyone in a served chat.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import (
    CallbackQuery,
    InaccessibleMessage,
    Message,
    ReactionTypeEmoji,
    User,
)
from aiogram.utils.i18n import gettext as _

from bot import actions
from bot.callbacks import HistoryPage, SnoozeButton, TakeButton
from bot.cards import LIST_PAGE_SIZE, escape, list_line, render_card, shorten, take_over_keyboard
from bot.filters import IsNote, message_text
from bot.operators import Operators
from bot.parsing import parse_incident_id
from bot.timeline import EVENTS_PER_PAGE, render_history
from storage.models import IncidentRow
from storage.rules import InvalidIncidentError
from storage.store import (
    Actor,
    Amended,
    ChatScope,
    IncidentNotFoundError,
    IncidentStore,
    OwnedByOtherError,
    TransitionNotAllowedError,
)

ANSWER_LIMIT = 200
"""Telegram's limit for the text of a button press's answer."""
NOTED = "✍"
"""The reaction that acknowledges a note (one of those Telegram allows bots to set)."""


def person(user: User) -> Actor:
    return Actor(user.full_name, user.id)


def owned_by_other_text(error: OwnedByOtherError) -> str:
    return _("{owner} is on incident #{id}. Press “Take over” to take it from them.").format(
        owner=error.incident.owner_name, id=error.incident.id
    )


def usage_text(command: str) -> str:
    return _("Usage: /{command} <id>, e.g. /{command} 17").format(command=command)


async def _incident_to_act_on(
    message: Message, command: CommandObject, operators: Operators, name: str
) -> int | None:
    """The incident `/<name> 17` names, if its author may act on it; otherwise they are
    told how to write it, or that they may not, and None."""
    incident_id = parse_incident_id(command.args or "")
    if incident_id is None or message.from_user is None:
        await message.reply(escape(usage_text(name)))
        return None
    if not await actions.may_act(message, operators):
        return None
    return incident_id


async def _press_allowed(callback: CallbackQuery, operators: Operators) -> bool:
    """Whether the presser may act here; if not, the press is answered so."""
    pressed = callback.message
    if await operators.allow(pressed.chat if pressed is not None else None, callback.from_user):
        return True
    await callback.answer(_short(actions.not_an_operator_text()), show_alert=True)
    return False


async def take_command(
    message: Message,
    command: CommandObject,
    store: IncidentStore,
    chats: ChatScope,
    operators: Operators,
) -> None:
    """`/take 17`: you own incident 17 (an open one moves to in progress)."""
    incident_id = await _incident_to_act_on(message, command, operators, "take")
    if incident_id is None or message.from_user is None:
        return
    try:
        taken = await store.take(incident_id, person(message.from_user), chats=chats)
    except OwnedByOtherError as error:
        # The confirmation is a press on this reply's button, which carries the version.
        await message.reply(
            escape(owned_by_other_text(error)), reply_markup=take_over_keyboard(error.incident)
        )
        return
    except (IncidentNotFoundError, TransitionNotAllowedError) as error:
        await message.reply(escape(_refusal(incident_id, error)))
        return
    await actions.reply_with_card(message, taken.incident)


async def release_command(
    message: Message,
    command: CommandObject,
    store: IncidentStore,
    chats: ChatScope,
    operators: Operators,
) -> None:
    """`/release 17`: incident 17 has no owner any more."""
    incident_id = await _incident_to_act_on(message, command, operators, "release")
    if incident_id is None or message.from_user is None:
        return
    try:
        released = await store.release(incident_id, person(message.from_user), chats=chats)
    except IncidentNotFoundError:
        await message.reply(escape(actions.not_found_text(incident_id)))
        return
    await actions.reply_with_card(message, released.incident)


async def mine_command(message: Message, store: IncidentStore, chats: ChatScope) -> None:
    """`/mine`: the unresolved incidents you own in this chat, newest first."""
    if message.from_user is None:
        return
    page = await store.list(
        owner_id=message.from_user.id, unresolved=True, limit=LIST_PAGE_SIZE, chats=chats
    )
    if not page.items:
        await message.reply(escape(_("You own no unresolved incidents here.")))
        return
    now = datetime.now(UTC)
    heading = _("Yours, unresolved · {shown} of {total}, newest first, times in UTC").format(
        shown=len(page.items), total=page.total
    )
    lines = [f"<b>{escape(heading)}</b>"]
    lines.extend(escape(list_line(incident, now)) for incident in page.items)
    await message.reply("\n".join(lines))


async def note_command(
    message: Message, command: CommandObject, store: IncidentStore, chats: ChatScope
) -> None:
    """`/note 17 restarted the router`: a note on incident 17's timeline."""
    parts = (command.args or "").split(maxsplit=1)
    incident_id = parse_incident_id(parts[0]) if parts else None
    if incident_id is None or len(parts) < 2:
        await message.reply(
            escape(_("Usage: /note <id> text, e.g. /note 17 restarted the router"))
        )
        return
    await add_note(message, store, chats, incident_id, parts[1])


async def note_by_reply(
    message: Message, store: IncidentStore, chats: ChatScope, bot: Bot
) -> None:
    """A reply to an incident's card or report that is neither a report nor a status word:
    a note on its timeline. A reply to anything else is chat, and left alone."""
    text = message_text(message)
    if not text:
        return
    incident_id = await actions.replied_incident_id(message, store, bot)
    if incident_id is None:
        return
    await add_note(message, store, chats, incident_id, text)


async def add_note(
    message: Message, store: IncidentStore, chats: ChatScope, incident_id: int, text: str
) -> None:
    """Store the note, then acknowledge it with a reaction (a one-line reply where
    reactions are off)."""
    by = actions.actor_of(message)
    try:
        noted = await store.add_note(incident_id, text, by, chats=chats)
    except IncidentNotFoundError:
        await message.reply(escape(actions.not_found_text(incident_id)))
        return
    except InvalidIncidentError as error:
        await message.reply(escape(actions.not_stored_text(error)))
        return
    try:
        await message.react([ReactionTypeEmoji(emoji=NOTED)])
    except TelegramBadRequest:
        await message.reply(escape(_("📝 Noted on #{id}.").format(id=noted.incident.id)))


async def press_take(
    callback: CallbackQuery,
    callback_data: TakeButton,
    store: IncidentStore,
    chats: ChatScope,
    operators: Operators,
    bot: Bot,
) -> None:
    """🙋 Take (or Take over, the confirming second press)."""
    pressed = callback.message
    if not await _press_allowed(callback, operators):
        return
    try:
        taken: Amended = await store.take(
            callback_data.incident,
            person(callback.from_user),
            confirmed_version=callback_data.confirm or None,
            chats=chats,
        )
    except OwnedByOtherError as error:
        await callback.answer(_short(owned_by_other_text(error)), show_alert=True)
        if pressed is not None:
            await bot.edit_message_reply_markup(
                chat_id=pressed.chat.id,
                message_id=pressed.message_id,
                reply_markup=take_over_keyboard(error.incident),
            )
        return
    except (IncidentNotFoundError, TransitionNotAllowedError) as error:
        await callback.answer(_short(_refusal(callback_data.incident, error)), show_alert=True)
        return
    incident = taken.incident
    await callback.answer(_short(_("You own incident #{id} now.").format(id=incident.id)))
    await _refresh_pressed(bot, pressed, incident)


async def press_snooze(
    callback: CallbackQuery,
    callback_data: SnoozeButton,
    store: IncidentStore,
    chats: ChatScope,
    operators: Operators,
    bot: Bot,
) -> None:
    """🔕 1h / 🔕 4h: no reminders about the incident (nor alert-repeat edits) until then."""
    pressed = callback.message
    if not await _press_allowed(callback, operators):
        return
    until = datetime.now(UTC) + timedelta(hours=callback_data.hours)
    try:
        snoozed = await store.snooze(
            callback_data.incident, until, person(callback.from_user), chats=chats
        )
    except IncidentNotFoundError:
        await callback.answer(
            _short(actions.not_found_text(callback_data.incident)), show_alert=True
        )
        return
    answer = _("No reminders about incident #{id} until {time} UTC.").format(
        id=callback_data.incident, time=f"{until:%H:%M}"
    )
    await callback.answer(_short(answer))
    await _refresh_pressed(bot, pressed, snoozed.incident)


async def press_history(
    callback: CallbackQuery,
    callback_data: HistoryPage,
    store: IncidentStore,
    chats: ChatScope,
    bot: Bot,
) -> None:
    """📜 History: the incident's timeline, a page at a time."""
    try:
        page = await store.events(
            callback_data.incident,
            limit=EVENTS_PER_PAGE,
            offset=callback_data.page * EVENTS_PER_PAGE,
            chats=chats,
        )
    except IncidentNotFoundError:
        await callback.answer(
            _short(actions.not_found_text(callback_data.incident)), show_alert=True
        )
        return
    rendered = render_history(
        callback_data.incident,
        page.items,
        total=page.total,
        page=callback_data.page,
        now=datetime.now(UTC),
    )
    await callback.answer()
    pressed = callback.message
    if pressed is None:
        return
    if callback_data.fresh:
        await bot.send_message(
            pressed.chat.id,
            rendered.text,
            reply_to_message_id=pressed.message_id,
            reply_markup=rendered.reply_markup,
        )
    else:
        await actions.edit_message(bot, pressed.chat.id, pressed.message_id, rendered)


async def _refresh_pressed(
    bot: Bot, pressed: Message | InaccessibleMessage | None, incident: IncidentRow
) -> None:
    """The card follows through the outbox; another message with the card's buttons (a
    /status answer, a take-over question) is brought up to date here."""
    if pressed is None:
        return
    is_the_card = (pressed.chat.id, pressed.message_id) == (
        incident.card_chat_id,
        incident.card_message_id,
    )
    if not is_the_card:
        await actions.edit_message(bot, pressed.chat.id, pressed.message_id, render_card(incident))


def _refusal(incident_id: int, error: IncidentNotFoundError | TransitionNotAllowedError) -> str:
    if isinstance(error, IncidentNotFoundError):
        return actions.not_found_text(incident_id)
    return _("Incident #{id} is closed: nobody can take it.").format(id=incident_id)


def _short(text: str) -> str:
    return shorten(text, ANSWER_LIMIT)


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(take_command, Command("take"))
    router.message.register(release_command, Command("release"))
    router.message.register(mine_command, Command("mine"))
    router.message.register(note_command, Command("note"))
    router.callback_query.register(press_take, TakeButton.filter())
    router.callback_query.register(press_snooze, SnoozeButton.filter())
    router.callback_query.register(press_history, HistoryPage.filter())
    return router


def create_notes_router() -> Router:
    """Replies that are notes: after every other handler, so a reply that is a report, a
    status word or a command is that instead."""
    router = Router(name=f"{__name__}.notes")
    router.message.register(note_by_reply, IsNote())
    return router
