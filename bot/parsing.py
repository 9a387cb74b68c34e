"""Reading what people write: incident reports and status words.

Pure functions over plain text; the handlers decide what to do with the results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

from storage.rules import InvalidIncidentError, Status, has_visible_text, normalize_source

SOURCE_ALIASES: MappingProxyType[str, str] = MappingProxyType(
    {
        "оператор": "operator",
        "мониторинг": "monitoring",
        "партнер": "partner",
        "партнёр": "partner",
    }
)
"""Tags people type in Russian, and the source each one stands for."""

STATUS_WORDS: MappingProxyType[str, Status] = MappingProxyType(
    {
        # English
        "open": Status.OPEN,
        "reopen": Status.OPEN,
        "in progress": Status.IN_PROGRESS,
        "in_progress": Status.IN_PROGRESS,
        "in-progress": Status.IN_PROGRESS,
        "working": Status.IN_PROGRESS,
        "on it": Status.IN_PROGRESS,
        "resolved": Status.RESOLVED,
        "fixed": Status.RESOLVED,
        "done": Status.RESOLVED,
        "closed": Status.CLOSED,
        "close": Status.CLOSED,
        # Russian; "ё" is read as "е"  # noqa: RUF003
        "открыт": Status.OPEN,
        "открыто": Status.OPEN,
        "открыть": Status.OPEN,
        "в работе": Status.IN_PROGRESS,
        "в работу": Status.IN_PROGRESS,
        "взял": Status.IN_PROGRESS,
        "взяла": Status.IN_PROGRESS,
        "решено": Status.RESOLVED,
        "решен": Status.RESOLVED,
        "исправлено": Status.RESOLVED,
        "исправлен": Status.RESOLVED,
        "починили": Status.RESOLVED,
        "готово": Status.RESOLVED,
        "закрыто": Status.CLOSED,
        "закрыт": Status.CLOSED,
        "закрыть": Status.CLOSED,
    }
)
"""Whole messages that mean "move the incident to this status"."""

_TAG_RE = re.compile(r"\A\s*\[([^\[\]\n]*)\]")
_INCIDENT_REF_RE = re.compile(r"\A\s*#(\d{1,18})\s+(.+?)\s*\Z", re.DOTALL)
_ID_RE = re.compile(r"\A#?(\d{1,18})\Z")
_SPACES_RE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Report:
    """A message that reports an incident: `[monitoring] Scooter #42 is not responding`."""

    source: str
    description: str


@dataclass(frozen=True, slots=True)
class MissingDescription:
    """A tag with nothing after it: `[monitoring]`."""

    source: str


@dataclass(frozen=True, slots=True)
class StatusCommand:
    """`#17 fixed`: a status word aimed at an incident by its number."""

    incident_id: int
    status: Status


def parse_report(text: str | None) -> Report | MissingDescription | None:
    """A report when the first non-blank token is a `[tag]` naming a valid source.

    The tag is case-insensitive and may be a Russian alias; the description is the rest
    of the text, trimmed, with its line breaks kept. Anything else (plain chat, a
    bracketed phrase that is no source name) is not a report: None.
    """
    if not text:
        return None
    match = _TAG_RE.match(text)
    if match is None:
        return None
    source = parse_source(match.group(1))
    if source is None:
        return None
    description = text[match.end() :].strip()
    # Invisible characters alone (a zero-width space, a BOM) are no description either.
    if not has_visible_text(description):
        return MissingDescription(source)
    return Report(source, description)


def parse_source(tag: str) -> str | None:
    """The source a tag names (`Мониторинг` → `monitoring`), or None if it names none."""
    cleaned = tag.strip().lower()
    cleaned = SOURCE_ALIASES.get(cleaned, cleaned)
    try:
        return normalize_source(cleaned)
    except InvalidIncidentError:
        return None


def parse_status_word(text: str | None) -> Status | None:
    """The status a whole message names: `fixed`, `In progress`, `в работе!`, `resolved`."""
    if not text:
        return None
    word = _SPACES_RE.sub(" ", text).strip().strip(".!").strip().lower()
    word = word.replace("ё", "е")  # noqa: RUF001
    status = STATUS_WORDS.get(word)
    if status is not None:
        return status
    try:
        return Status(word)
    except ValueError:
        return None


def parse_status_command(text: str | None) -> StatusCommand | None:
    """`#17 fixed` → StatusCommand(17, resolved); anything else → None."""
    if not text:
        return None
    match = _INCIDENT_REF_RE.match(text)
    if match is None:
        return None
    status = parse_status_word(match.group(2))
    if status is None:
        return None
    return StatusCommand(int(match.group(1)), status)


def parse_incident_id(text: str) -> int | None:
    """`17` or `#17` → 17; anything else → None."""
    match = _ID_RE.match(text.strip())
    return int(match.group(1)) if match else None
