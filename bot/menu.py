"""The bot's commands, as Telegram's command menu and /help list them."""

from __future__ import annotations

from aiogram.types import BotCommand
from aiogram.utils.i18n import gettext as _


def command_descriptions() -> list[tuple[str, str]]:
    """(command, what it does) in the current i18n locale, in menu order."""
    return [
        ("new", _("Report an incident: /new [source] text")),
        ("list", _("Recent incidents: /list [status] [mine]")),
        ("status", _("Show or change an incident: /status 17 resolved")),
        ("take", _("Take an incident on: /take 17")),
        ("release", _("Give an incident back: /release 17")),
        ("mine", _("Your unresolved incidents")),
        ("note", _("A note on an incident's timeline: /note 17 text")),
        ("help", _("How to report incidents")),
    ]


def bot_commands() -> list[BotCommand]:
    """The menu for `setMyCommands`, in the current i18n locale."""
    return [
        BotCommand(command=command, description=description)
        for command, description in command_descriptions()
    ]
