"""Rendering incidents for the chat: pure functions from incidents to text and buttons.

Everything here returns HTML for the bot's default parse mode, and every piece of user
text passes through `escape()` exactly once. The functions read no state but the
incidents they are given, so a background sender can reuse them; they translate through
aiogram's i18n context (the middleware sets it per update; elsewhere wrap the call in
`with i18n.context(), i18n.use_locale("en"):`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from bot.callbacks import (
    SNOOZE_HOURS,
    HistoryPage,
    ListPage,
    SnoozeButton,
    StatusButton,
    TakeButton,
)
from storage.models import IncidentRow
from storage.rules import Status, allowed_next

TEXT_LIMIT = 4096
"""Telegram's limit for a message's text, in characters after entity parsing."""
LIST_PAGE_SIZE = 20
LIST_DESCRIPTION_LENGTH = 60
"""How much of a description a /list line shows."""
RANGE_DASH = "\u2013"
"""An en dash, between the ends of a range of ids."""
SUMMARY_IDS_LENGTH = 3000
"""How many characters of incident ids a storm summary lists at most."""

STATUS_EMOJI = {
    Status.OPEN: "🔴",
    Status.IN_PROGRESS: "🟡",
    Status.RESOLVED: "🟢",
    Status.CLOSED: "⚪",
}

_WHITESPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message ready to send or edit: HTML text and its inline keyboard, if any."""

    text: str
    reply_markup: InlineKeyboardMarkup | None = None


def escape(text: str) -> str:
    """User text made safe for Telegram's HTML parse mode: shown exactly as written."""
    return html.escape(text, quote=False)


def visible_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji counts as two)."""
    return len(text.encode("utf-16-le")) // 2


def cut_to(text: str, limit: int) -> str:
    """The longest prefix of `text` whose visible length is at most `limit`."""
    if visible_length(text) <= limit:
        return text
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return text[:index]
    return text


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters, ending in "…" when something was cut."""
    line = _WHITESPACE_RE.sub(" ", text).strip()
    if visible_length(line) <= limit:
        return line
    return cut_to(line, limit - 1).rstrip() + "…"


def status_label(status: Status) -> str:
    labels = {
        Status.OPEN: _("open"),
        Status.IN_PROGRESS: _("in progress"),
        Status.RESOLVED: _("resolved"),
        Status.CLOSED: _("closed"),
    }
    return labels[status]


def button_label(target: Status) -> str:
    """What a card's button says for moving an incident to `target`."""
    labels = {
        Status.OPEN: "🔴 " + _("Reopen"),
        Status.IN_PROGRESS: "🛠 " + _("In progress"),
        Status.RESOLVED: "✅ " + _("Resolved"),
        Status.CLOSED: "🔒 " + _("Close"),
    }
    return labels[target]


def card_title(incident: IncidentRow) -> str:
    """`🔴 Incident #17 · open · monitoring`, as plain text."""
    title = _("Incident #{id} · {status} · {source}").format(
        id=incident.id, status=status_label(incident.status), source=incident.source
    )
    return f"{STATUS_EMOJI[incident.status]} {title}"


def card_keyboard(incident: IncidentRow) -> InlineKeyboardMarkup:
    """One button per status the incident may move to next, then 🙋 Take (unless it is
    closed) and 📜 History."""
    take = InlineKeyboardButton(
        text="🙋 " + _("Take"), callback_data=TakeButton(incident=incident.id).pack()
    )
    return _keyboard(incident, take)


def take_over_keyboard(incident: IncidentRow) -> InlineKeyboardMarkup:
    """The card's buttons with Take turned into the confirming "Take over from Oleg",
    which takes the incident only if it is still as it is now (its version)."""
    take_over = InlineKeyboardButton(
        text="🙋 " + _("Take over from {owner}").format(owner=incident.owner_name),
        callback_data=TakeButton(incident=incident.id, confirm=incident.version).pack(),
    )
    return _keyboard(incident, take_over)


def _keyboard(incident: IncidentRow, take: InlineKeyboardButton) -> InlineKeyboardMarkup:
    statuses = [
        InlineKeyboardButton(
            text=button_label(target),
            callback_data=StatusButton.for_change(incident.id, incident.status, target).pack(),
        )
        for target in allowed_next(incident.status)
    ]
    history = InlineKeyboardButton(
        text="📜 " + _("History"),
        callback_data=HistoryPage(incident=incident.id, fresh=True).pack(),
    )
    snooze = [
        InlineKeyboardButton(
            text=f"🔕 {hours}" + _("h"),
            callback_data=SnoozeButton(incident=incident.id, hours=hours).pack(),
        )
        for hours in SNOOZE_HOURS
    ]
    if incident.status == Status.CLOSED:
        on_call = [history]
    elif incident.status == Status.RESOLVED:
        on_call = [take, history]
    else:
        on_call = [take, *snooze, history]
    return InlineKeyboardMarkup(inline_keyboard=[row for row in (statuses, on_call) if row])


def _alert_lines(incident: IncidentRow) -> list[str]:
    """What a monitoring system's incident adds: its severity, its repeats and when it
    was last seen, and the incident the same alert raised before."""
    lines = []
    if incident.severity:
        lines.append(_("Severity: {severity}").format(severity=incident.severity))
    if incident.repeat_count and incident.last_seen_at is not None:
        lines.append(
            _("Repeats: {count} · last seen {time} UTC").format(
                count=incident.repeat_count,
                time=format_time(incident.last_seen_at, incident.created_at),
            )
        )
    if incident.previous_id is not None:
        lines.append(_("Fired again; previous: #{id}").format(id=incident.previous_id))
    return lines


def _card_footer(incident: IncidentRow) -> str:
    lines = _alert_lines(incident)
    if incident.created_by:
        lines.append(_("Reported by {name}").format(name=incident.created_by))
    if incident.status != Status.OPEN and incident.updated_by:
        lines.append(_("Status set by {name}").format(name=incident.updated_by))
    if incident.owner_name:
        lines.append(_("Owner: {name}").format(name=incident.owner_name))
    now = datetime.now(UTC)
    if incident.snoozed_until is not None and incident.snoozed_until > now:
        until = format_time(incident.snoozed_until, now)
        lines.append("🔕 " + _("Snoozed until {time} UTC").format(time=until))
    return "\n".join(lines)


def render_card(incident: IncidentRow) -> Rendered:
    """The incident's card: title, description, who reported and who changed it, buttons.

    A description too long for one message is cut (never inside markup, since it is cut
    before escaping) and the card says so.
    """
    title = card_title(incident)
    footer = _card_footer(incident)
    description = incident.description
    # Visible text: title, "\n", description, then "\n\n" + footer when there is one.
    fixed = visible_length(title) + 1 + (visible_length(footer) + 2 if footer else 0)
    if fixed + visible_length(description) > TEXT_LIMIT:
        note = "\n\n✂️ " + _("The description is cut to fit Telegram's message limit.")
        room = TEXT_LIMIT - fixed - visible_length(note) - 1
        description = cut_to(description, room).rstrip() + "…" + note
    text = f"<b>{escape(title)}</b>\n{escape(description)}"
    if footer:
        text += f"\n\n<i>{escape(footer)}</i>"
    return Rendered(text, card_keyboard(incident))


def compact_ids(ids: Iterable[int], *, limit: int = SUMMARY_IDS_LENGTH) -> str:
    """`#101-#137`, or `#3, #5-#9, #12` (with en dashes): runs of three or more as ranges.

    Cut to about `limit` characters, ending in `… (+N)` for the N ids left out.
    """
    ordered = sorted(set(ids))
    runs: list[tuple[int, int]] = []
    for number in ordered:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    pieces: list[tuple[str, int]] = []  # (text, how many ids it stands for)
    for first, last in runs:
        if last - first >= 2:
            pieces.append((f"#{first}{RANGE_DASH}#{last}", last - first + 1))
        else:
            pieces.extend((f"#{number}", 1) for number in range(first, last + 1))
    parts: list[str] = []
    shown = length = 0
    for text, count in pieces:
        if length + len(text) + 2 > limit:
            return ", ".join(parts) + f", … (+{len(ordered) - shown})"
        parts.append(text)
        shown += count
        length += len(text) + 2
    return ", ".join(parts)


def render_summary(incident_ids: Sequence[int]) -> Rendered:
    """One message for many new incidents at once (a storm), instead of a card each."""
    registered = _("Registered {count} incidents: {ids}.").format(
        count=len(incident_ids), ids=compact_ids(incident_ids)
    )
    how = _(
        "Too many at once for a card each: /list open shows them,"
        " /status <id> shows one incident's card."
    )
    return Rendered(escape(f"{registered}\n{how}"))


def render_resolved_notice(incident_id: int, actor: str, *, replying: bool) -> Rendered:
    """The short reply to a card that tells the chat a monitoring system resolved it;
    naming the incident when there is no card to reply to (a storm folded it)."""
    if replying:
        text = _("Resolved by {actor}").format(actor=actor)
    else:
        text = _("Incident #{id} resolved by {actor}").format(id=incident_id, actor=actor)
    return Rendered(escape(f"✅ {text}"))


def render_reminder(incident: IncidentRow, now: datetime, *, replying: bool) -> Rendered | None:
    """The reminder an incident is due as it is now: nobody took it (open, no owner), or
    its owner, named so that Telegram notifies them, has let it go quiet (in progress).
    None when neither holds any more (taken, resolved or snoozed since it was queued)."""
    if incident.snoozed_until is not None and incident.snoozed_until > now:
        return None
    subject = _("this incident") if replying else f"#{incident.id}"
    if incident.status == Status.OPEN and incident.owner_name is None:
        text = _("Nobody has taken {subject} for {age}. Press 🙋 Take on its card.").format(
            subject=subject, age=format_age(now - incident.created_at)
        )
        return Rendered(escape(f"⏰ {text}"))
    if incident.status == Status.IN_PROGRESS and incident.owner_name is not None:
        owner = escape(incident.owner_name)
        if incident.owner_id is not None:
            owner = f'<a href="tg://user?id={incident.owner_id}">{owner}</a>'
        text = escape(
            _("{subject} has had no news for a while: a note or a new status, please.").format(
                subject=subject
            )
        )
        return Rendered(f"⏰ {owner}, {text}")
    return None


def render_reminder_summary(incident_ids: Sequence[int]) -> Rendered:
    """One message for many reminders at once, instead of a reply to each card."""
    text = _("{count} incidents are waiting for someone: {ids}. /list open shows them.").format(
        count=len(incident_ids), ids=compact_ids(incident_ids)
    )
    return Rendered(escape(f"⏰ {text}"))


def format_age(age: timedelta) -> str:
    """`45 min`, `3 h 20 min`, `2 d 4 h`: how long, to the minute."""
    minutes = max(1, int(age.total_seconds() // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return _("{days} d {hours} h").format(days=days, hours=hours)
    if hours:
        return _("{hours} h {minutes} min").format(hours=hours, minutes=minutes)
    return _("{minutes} min").format(minutes=minutes)


def render_resolved_summary(incident_ids: Sequence[int]) -> Rendered:
    """One message for many resolve notices at once, instead of a reply to each card."""
    text = _("Resolved {count} incidents: {ids}.").format(
        count=len(incident_ids), ids=compact_ids(incident_ids)
    )
    return Rendered(escape(f"✅ {text}"))


def format_time(moment: datetime, now: datetime) -> str:
    """`14:02` for today (UTC), `21.11 14:02` this year, `21.11.2024 14:02` before."""
    if moment.date() == now.date():
        return f"{moment:%H:%M}"
    if moment.year == now.year:
        return f"{moment:%d.%m %H:%M}"
    return f"{moment:%d.%m.%Y %H:%M}"


def list_line(incident: IncidentRow, now: datetime) -> str:
    """`#17 · open · monitoring · 14:02 · Scooter #42 is not responding`, plain text."""
    return " · ".join(
        (
            f"#{incident.id}",
            status_label(incident.status),
            incident.source,
            format_time(incident.created_at, now),
            shorten(incident.description, LIST_DESCRIPTION_LENGTH),
        )
    )


def render_list_page(
    incidents: Sequence[IncidentRow],
    *,
    total: int,
    status: Status | None,
    page: int,
    now: datetime,
    mine: bool = False,
) -> Rendered:
    """One /list page (newest first) with Prev/Next buttons when there is more; `mine`,
    of the incidents the reader owns."""
    if status is None:
        heading = _("Incidents")
    else:
        heading = _("Incidents · {status}").format(status=status_label(status))
    if mine:
        heading += " · " + _("yours")
    if not incidents:
        if status is None:
            empty = _("No incidents.")
        else:
            empty = _("No incidents with status {status}.").format(status=status_label(status))
        text = escape(empty)
    else:
        first = page * LIST_PAGE_SIZE + 1
        summary = _("{first}-{last} of {total}, newest first, times in UTC").format(
            first=first, last=first + len(incidents) - 1, total=total
        )
        lines = [f"<b>{escape(heading)}</b> · {escape(summary)}"]
        lines.extend(escape(list_line(incident, now)) for incident in incidents)
        text = "\n".join(lines)
    # The neighbours are found by key: the incidents just above this page's first or
    # just below its last (the first page is always the newest).
    buttons = []
    if page > 0:
        after = incidents[0].id if incidents and page > 1 else None
        buttons.append(
            InlineKeyboardButton(
                text="◀ " + _("Prev"),
                callback_data=ListPage.for_page(status, page - 1, after=after, mine=mine).pack(),
            )
        )
    if incidents and (page + 1) * LIST_PAGE_SIZE < total:
        buttons.append(
            InlineKeyboardButton(
                text=_("Next") + " ▶",
                callback_data=ListPage.for_page(
                    status, page + 1, before=incidents[-1].id, mine=mine
                ).pack(),
            )
        )
    keyboard = InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None
    return Rendered(text, keyboard)
