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
# Letters of any script, digits, "_" and "-": operator, monitoring, zabbix, склад.
# `\w` is Unicode-aware for str patterns; it also admits "_" and digits.
SOURCE_PATTERN = rf"^[\w-]{{1,{SOURCE_MAX_LENGTH}}}$"
_SOURCE_RE = re.compile(SOURCE_PATTERN)


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


def normalize_source(raw: str) -> str:
    source = raw.strip().lower()
    if not _SOURCE_RE.fullmatch(source):
        raise InvalidIncidentError(
            f"Invalid source {raw!r}: use 1-{SOURCE_MAX_LENGTH} letters, digits, '_' or '-'"
        )
    return source


def normalize_description(raw: str) -> str:
    description = raw.strip()
    if not description:
        raise InvalidIncidentError("Description is empty")
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise InvalidIncidentError(
            f"Description is {len(description)} characters long;"
            f" the limit is {DESCRIPTION_MAX_LENGTH}"
        )
    return description
