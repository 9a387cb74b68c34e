"""Rendering an incident's timeline for the chat: one line per event, a page per message.

Like `bot.cards`, pure functions returning HTML for the bot's parse mode, translated
through aiogram's i18n context.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from bot.callbacks import HistoryPage
from bot.cards import Rendered, escape, format_time, shorten, status_label
from storage.models import EventKind, EventRow

EVENTS_PER_PAGE = 15
EVENT_LINE_LENGTH = 200
"""How much of one event a line shows: a page of them stays well within 4096 characters."""
RECENT_EVENTS = 5
"""How many of the latest events `/status 17` shows under the card."""

EVENT_EMOJI = {
    EventKind.CREATED: "🆕",
    EventKind.STATUS_CHANGED: "🔄",
    EventKind.DESCRIPTION_EDITED: "✏️",
    EventKind.DESCRIPTION_APPENDED: "✏️",
    EventKind.OWNER_SET: "🙋",
    EventKind.OWNER_RELEASED: "👋",
    EventKind.NOTE: "📝",
    EventKind.REMINDER_SENT: "⏰",
    EventKind.SNOOZED: "🔕",
    EventKind.ALERT_REPEATED: "🔁",
}


def describe_event(event: EventRow) -> str:
    """What happened, in a sentence: `Oleg took it`, `Anna: open → in progress`."""
    who = event.actor or _("someone")
    match event.kind:
        case EventKind.CREATED:
            return _("{who} reported it ({origin})").format(who=who, origin=event.text or "?")
        case EventKind.STATUS_CHANGED if event.status_from and event.status_to:
            return _("{who}: {before} → {after}").format(
                who=who,
                before=status_label(event.status_from),
                after=status_label(event.status_to),
            )
        case EventKind.DESCRIPTION_EDITED:
            return _("{who} edited the description").format(who=who)
        case EventKind.DESCRIPTION_APPENDED:
            return _("{who} added: {text}").format(who=who, text=event.text or "")
        case EventKind.OWNER_SET if event.text == event.actor:
            return _("{who} took it").format(who=who)
        case EventKind.OWNER_SET:
            return _("{who} gave it to {owner}").format(who=who, owner=event.text or "?")
        case EventKind.OWNER_RELEASED:
            return _("{who} released it").format(who=who)
        case EventKind.NOTE:
            return _("{who}: {text}").format(who=who, text=event.text or "")
        case EventKind.REMINDER_SENT if event.text == "stale":
            return _("Reminder: no news for a while")
        case EventKind.REMINDER_SENT:
            return _("Reminder: nobody has taken it")
        case EventKind.ALERT_REPEATED:
            return _("{who}: the alert came again ({count} repeats)").format(
                who=who, count=event.text or "?"
            )
        case EventKind.SNOOZED:
            return _("{who} snoozed reminders until {time} UTC").format(
                who=who, time=_snoozed_until(event)
            )
        case _:
            return _("{who}: {what}").format(who=who, what=event.kind.value)


def event_line(event: EventRow, now: datetime) -> str:
    """`14:05 🙋 Oleg took it`, one line of plain text."""
    line = f"{format_time(event.at, now)} {EVENT_EMOJI[event.kind]} {describe_event(event)}"
    return shorten(line, EVENT_LINE_LENGTH)


def recent_events_text(events: Sequence[EventRow], total: int, now: datetime) -> str:
    """The latest events (given newest first), oldest of them first, as HTML."""
    heading = _("Latest events ({shown} of {total}), times in UTC:").format(
        shown=len(events), total=total
    )
    lines = [escape(event_line(event, now)) for event in reversed(events)]
    return f"<i>{escape(heading)}</i>\n" + "\n".join(lines)


def render_history(
    incident_id: int, events: Sequence[EventRow], *, total: int, page: int, now: datetime
) -> Rendered:
    """One page of an incident's timeline, oldest first, with Prev/Next when there is more."""
    first = page * EVENTS_PER_PAGE + 1
    heading = _("History of incident #{id}").format(id=incident_id)
    if events:
        summary = _("{first}-{last} of {total}, times in UTC").format(
            first=first, last=first + len(events) - 1, total=total
        )
    else:
        summary = _("no events on this page")
    lines = [f"<b>{escape(heading)}</b> · {escape(summary)}"]
    lines.extend(escape(event_line(event, now)) for event in events)
    buttons = []
    if page > 0:
        buttons.append(
            InlineKeyboardButton(
                text="◀ " + _("Prev"),
                callback_data=HistoryPage(incident=incident_id, page=page - 1).pack(),
            )
        )
    if (page + 1) * EVENTS_PER_PAGE < total:
        buttons.append(
            InlineKeyboardButton(
                text=_("Next") + " ▶",
                callback_data=HistoryPage(incident=incident_id, page=page + 1).pack(),
            )
        )
    keyboard = InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None
    return Rendered("\n".join(lines), keyboard)


def _snoozed_until(event: EventRow) -> str:
    try:
        until = datetime.fromisoformat(event.text or "")
    except ValueError:
        return event.text or "?"
    return format_time(until, event.at)
