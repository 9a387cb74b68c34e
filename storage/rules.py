"""The incident rules, defined once.

Which statuses exist, which transitions are allowed and what a valid source or description
looks like. The bot's replies, the HTTP schemas and the database constraints all read them
from here, so the three doors can never disagree.
"""

from __future__ import annotations

import re
from enum import StrEnum
from types import MappingProxyType


class Status(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


TRANSITIONS: MappingProxyType[Status, tuple[Status, ...]] = MappingProxyType(
    {
        Status.OPEN: (Status.IN_PROGRESS, Status.RESOLVED, Status.CLOSED),
        Status.IN_PROGRESS: (Status.RESOLVED, Status.CLOSED),
        Status.RESOLVED: (Status.IN_PROGRESS, Status.CLOSED),
        Status.CLOSED: (),
    }
)
"""Allowed next statuses, in the order buttons and error messages list them."""

STATUS_VALUES: tuple[str, ...] = tuple(status.value for status in Status)

INCIDENT_ID_MAX = 2**63 - 1
"""Ids are positive 64-bit integers on every database; anything past this is no id."""

DEFAULT_SOURCE = "operator"
SOURCE_MAX_LENGTH = 32
DESCRIPTION_MAX_LENGTH = 4096
NAME_MAX_LENGTH = 128
"""Who reported or changed an incident (`created_by`, `updated_by`): longer names are cut."""
SEVERITY_MAX_LENGTH = 32
"""A monitoring system's severity label (`critical`, `warning`, `P1`): longer ones are cut."""
EXCERPT_MAX_LENGTH = 64
"""How much of a bad input an error message repeats: enough to recognise it, never all."""
# Letters of any script, digits, "_" and "-": operator, monitoring, zabbix, склад.
# `\w` is Unicode-aware for str patterns; it also admits "_" and digits.
SOURCE_PATTERN = rf"^[\w-]{{1,{SOURCE_MAX_LENGTH}}}$"
_SOURCE_RE = re.compile(SOURCE_PATTERN)

# Free text (a description, a person's name) is cleaned the same way at every door: the
# HTTP API, a chat report, /new, an edit. Per kind of character:
# - Control characters (Unicode Cc: C0, DEL, C1) other than tab, line feed and carriage
#   return are removed. They are invisible, so removing them leaves the text as its
#   author saw it; refusing would lose an alert that a monitoring system pasted from a
#   terminal (ANSI escapes) and will not send again. Left in, NUL cuts SQLite's
#   length() short and PostgreSQL refuses it outright.
# - A lone surrogate ("\ud800", which JSON can spell) is no character at all: no database
#   can store it and no reply can show it, so a description holding one is refused.
# - Invisible characters (whitespace, and Unicode's Default_Ignorable_Code_Point: zero-
#   width space and joiners, BOM, word joiner, bidi marks, soft hyphen, variation
#   selectors, Hangul fillers, tags) are kept, since inside a text they do work (a joiner
#   makes one emoji of several, a variation selector picks how one looks, Persian needs
#   the non-joiner), but they are no content: a text made only of them is empty.
# - A source is a name, not free text: anything outside SOURCE_PATTERN, controls
#   included, is refused rather than removed, exactly as the pattern documents.
_CONTROLS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LONE_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt), written as regex
# escapes that both Python and JSON Schema (ECMA-262) read. The astral part is separate:
# ECMA-262 cannot name those characters in a class without the `u` flag.
_IGNORABLE_BMP = (
    r"\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
)
_IGNORABLE_ASTRAL = r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
DESCRIPTION_PATTERN = rf"[^\s\x00-\x1f\x7f-\x9f{_IGNORABLE_BMP}]"
"""JSON Schema for "has something to read": one character that is not invisible."""
_VISIBLE_RE = re.compile(rf"[^\s\x00-\x1f\x7f-\x9f{_IGNORABLE_BMP}{_IGNORABLE_ASTRAL}]")


class InvalidIncidentError(ValueError):
    """A source, status or description that breaks the rules above."""


def allowed_next(status: Status) -> tuple[Status, ...]:
    return TRANSITIONS[status]


def can_transition(current: Status, new: Status) -> bool:
    return new in TRANSITIONS[current]


def parse_status(raw: str) -> Status:
    try:
        return Status(raw.strip().lower())
    except ValueError:
        raise InvalidIncidentError(
            f"Unknown status {raw!r}; valid statuses: {', '.join(STATUS_VALUES)}"
        ) from None


def excerpt(raw: str) -> str:
    """`raw` as an error message may repeat it: its first characters, "…" if cut."""
    if len(raw) <= EXCERPT_MAX_LENGTH:
        return raw
    return raw[:EXCERPT_MAX_LENGTH] + "…"


def has_visible_text(text: str) -> bool:
    """Whether `text` shows anything: a character other than whitespace, controls and
    invisible formatting (zero-width space, BOM, joiners, ...)."""
    return _VISIBLE_RE.search(text) is not None


def clean_text(raw: str) -> str:
    """Free text with its control characters removed; InvalidIncidentError for a lone
    surrogate. Tabs and line breaks stay."""
    if _LONE_SURROGATE_RE.search(raw):
        raise InvalidIncidentError("Text must be valid Unicode (no lone surrogates)")
    return _CONTROLS_RE.sub("", raw)


def normalize_source(raw: str) -> str:
    source = raw.strip().lower()
    if not _SOURCE_RE.fullmatch(source):
        raise InvalidIncidentError(
            f"Invalid source {excerpt(raw)!r}:"
            f" use 1-{SOURCE_MAX_LENGTH} letters, digits, '_' or '-'"
        )
    return source


def normalize_name(raw: str | None) -> str | None:
    """Who did something, cleaned like a description and cut to NAME_MAX_LENGTH; None
    when nothing of it shows. A name is never a reason to refuse a report: a lone
    surrogate in it is shown as U+FFFD."""
    if raw is None:
        return None
    readable = raw.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    name = clean_text(readable).strip()[:NAME_MAX_LENGTH].strip()
    return name if has_visible_text(name) else None


def normalize_severity(raw: str | None) -> str | None:
    """A severity as a monitoring system labels it, on one line, lower-cased and cut to
    SEVERITY_MAX_LENGTH; None when nothing of it shows. Like a name, never a reason to
    refuse an alert."""
    name = normalize_name(raw)
    if name is None:
        return None
    severity = " ".join(name.split()).lower()[:SEVERITY_MAX_LENGTH].strip()
    return severity or None


def normalize_description(raw: str) -> str:
    description = clean_text(raw).strip()
    if not has_visible_text(description):
        raise InvalidIncidentError("Description is empty")
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise InvalidIncidentError(
            f"Description is {len(description)} characters long;"
            f" the limit is {DESCRIPTION_MAX_LENGTH}"
        )
    return description
