"""Commands: /start, /help, /new, /list and /status."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot import actions
from bot.cards import LIST_PAGE_SIZE, escape, render_list_page
from bot.menu import command_descriptions
from bot.operators import Operators
from bot.parsing import Report, parse_incident_id, parse_report, parse_status_word
from bot.pipeline import OnQueued
from storage.rules import DEFAULT_SOURCE, STATUS_VALUES, excerpt
from storage.store import ChatScope, IncidentStore

MINE_WORDS = frozenset({"mine", "my", "мои", "мое", "моё", "мой"})
"""What `/list` takes as "only the incidents I own"."""


def help_text() -> str:
    commands = "\n".join(
        f"/{name} — {description}" for name, description in command_descriptions()
    )
    return "\n\n".join(
        (
            _("I turn chat messages into tracked incidents."),
            _(
                "To report one, start a message (or a photo's caption) with a tag in"
                " square brackets:\n[monitoring] Scooter #42 is not responding\n"
                "Tags: operator, monitoring, partner (оператор, мониторинг, партнёр),"
                " or any one-word source."
            ),
            _(
                "To change a status, press a button on the incident's card, reply to the"
                " card or the report with a status word (in progress, resolved, closed),"
                " or write: #17 fixed"
            ),
            commands,
        )
    )


def unknown_status_text(given: str) -> str:
    # Only the start of what was given: the whole of a long one would not fit a message.
    return _("Unknown status “{given}”. Valid statuses: {valid}.").format(
        given=excerpt(given), valid=", ".join(STATUS_VALUES)
    )


def status_usage_text() -> str:
    return _(
        "Usage: /status <id> [new status], e.g. /status 17 resolved. Statuses: {valid}."
    ).format(valid=", ".join(STATUS_VALUES))


async def show_help(message: Message) -> None:
    await message.reply(escape(help_text()))


async def new_incident(
    message: Message, command: CommandObject, store: IncidentStore, on_queued: OnQueued = None
) -> None:
    """`/new text` or `/new [source] text`: an incident, reported explicitly."""
    text = (command.args or "").strip()
    if not text:
        await message.reply(escape(_("Usage: /new [source] what happened")))
        return
    report = parse_report(text) or Report(DEFAULT_SOURCE, text)
    await actions.report_incident(message, store, report, on_queued=on_queued)


async def list_incidents(
    message: Message, command: CommandObject, store: IncidentStore, chats: ChatScope
) -> None:
    """`/list [status] [mine]`: this chat's newest incidents (those you own, with `mine`),
    a page at a time."""
    words = (command.args or "").split()
    mine = any(word.lower() in MINE_WORDS for word in words)
    wanted = " ".join(word for word in words if word.lower() not in MINE_WORDS)
    status = None
    if wanted:
        status = parse_status_word(wanted)
        if status is None:
            await message.reply(escape(unknown_status_text(wanted)))
            return
    owner_id = message.from_user.id if mine and message.from_user is not None else None
    page = await store.list(status=status, owner_id=owner_id, limit=LIST_PAGE_SIZE, chats=chats)
    rendered = render_list_page(
        page.items,
        total=page.total,
        status=status,
        page=0,
        now=datetime.now(UTC),
        mine=owner_id is not None,
    )
    await message.reply(rendered.text, reply_markup=rendered.reply_markup)


async def change_or_show_status(
    message: Message,
    command: CommandObject,
    store: IncidentStore,
    chats: ChatScope,
    operators: Operators,
    on_queued: OnQueued = None,
) -> None:
    """`/status 17 resolved` changes the status; `/status 17` shows the card."""
    parts = (command.args or "").split(maxsplit=1)
    incident_id = parse_incident_id(parts[0]) if parts else None
    if incident_id is None:
        await message.reply(escape(status_usage_text()))
        return
    if len(parts) == 1:
        await actions.show_card(message, store, chats, incident_id)
        return
    status = parse_status_word(parts[1])
    if status is None:
        await message.reply(escape(unknown_status_text(parts[1].strip())))
        return
    await actions.change_status(
        message, store, chats, operators, incident_id, status, on_queued=on_queued
    )


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(show_help, CommandStart())
    router.message.register(show_help, Command("help"))
    router.message.register(new_incident, Command("new"))
    router.message.register(list_incidents, Command("list"))
    router.message.register(change_or_show_status, Command("status"))
    return router
