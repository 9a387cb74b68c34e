"""What the bot's inline buttons carry, as aiogram `CallbackData` factories.

Telegram allows 64 bytes of callback data; statuses travel as one-letter codes
(`s:17:o:i` = "incident 17, the card showed open, move it to in progress"), so even a
19-digit incident id stays far below the limit.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import Field, field_validator

from storage.rules import INCIDENT_ID_MAX, Status

STATUS_CODES: MappingProxyType[Status, str] = MappingProxyType(
    {status: status.value[0] for status in Status}
)
_STATUS_BY_CODE: MappingProxyType[str, Status] = MappingProxyType(
    {code: status for status, code in STATUS_CODES.items()}
)
ALL_STATUSES = "a"
"""The /list filter code meaning "every status"."""

# Button data comes from whoever presses: data the bot cannot have sent (an id past
# 64 bits, a negative page) fails to unpack, and the press is answered as a button that
# no longer works. (Every page of up to 1,000 incidents starts within 64 bits.)
IncidentId = Annotated[int, Field(ge=1, le=INCIDENT_ID_MAX)]
PageNumber = Annotated[int, Field(ge=0, le=INCIDENT_ID_MAX // 1000)]


def status_code(status: Status) -> str:
    return STATUS_CODES[status]


def status_from_code(code: str) -> Status:
    return _STATUS_BY_CODE[code]


class StatusButton(CallbackData, prefix="s"):
    """A card's button: move `incident` from the status the card showed to `to`."""

    incident: IncidentId
    seen: str
    to: str

    @field_validator("seen", "to")
    @classmethod
    def _known_code(cls, code: str) -> str:
        if code not in _STATUS_BY_CODE:
            raise ValueError(f"unknown status code {code!r}")
        return code

    @classmethod
    def for_change(cls, incident_id: int, seen: Status, to: Status) -> StatusButton:
        return cls(incident=incident_id, seen=status_code(seen), to=status_code(to))

    @property
    def seen_status(self) -> Status:
        return status_from_code(self.seen)

    @property
    def target(self) -> Status:
        return status_from_code(self.to)


class ListPage(CallbackData, prefix="l"):
    """A /list paging button: page `page` (from 0) of the list filtered by `status`, and
    with `mine`, to the incidents the person pressing owns.

    The page is found by key, as fast at any depth: the incidents just older than
    `before` (Next), or just newer than `after` (Prev); with neither, by its number.
    """

    status: str
    page: PageNumber
    before: IncidentId | None = None
    after: IncidentId | None = None
    mine: bool = False

    @field_validator("status")
    @classmethod
    def _known_code(cls, code: str) -> str:
        if code != ALL_STATUSES and code not in _STATUS_BY_CODE:
            raise ValueError(f"unknown status code {code!r}")
        return code

    @classmethod
    def for_page(
        cls,
        status: Status | None,
        page: int,
        *,
        before: int | None = None,
        after: int | None = None,
        mine: bool = False,
    ) -> ListPage:
        code = ALL_STATUSES if status is None else status_code(status)
        return cls(status=code, page=page, before=before, after=after, mine=mine)

    @property
    def status_filter(self) -> Status | None:
        return None if self.status == ALL_STATUSES else status_from_code(self.status)


class TakeButton(CallbackData, prefix="t"):
    """🙋 Take: the presser becomes the incident's owner.

    `confirm` is the incident's version when someone else owned it and the bot asked
    whether to take it over (0 on a card's own button): the second press takes it over
    only if nothing changed since (`IncidentStore.take`).
    """

    incident: IncidentId
    confirm: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class HistoryPage(CallbackData, prefix="h"):
    """📜 History: page `page` (from 0, oldest first) of an incident's timeline. From a
    card (`fresh`) it is sent as a new message; from a history page, that page is edited."""

    incident: IncidentId
    page: PageNumber = 0
    fresh: bool = False


SNOOZE_HOURS = (1, 4)
"""What a card's 🔕 buttons offer."""


class SnoozeButton(CallbackData, prefix="z"):
    """🔕 1h / 🔕 4h: no reminders about `incident` for `hours`."""

    incident: IncidentId
    hours: int

    @field_validator("hours")
    @classmethod
    def _offered(cls, hours: int) -> int:
        if hours not in SNOOZE_HOURS:
            raise ValueError(f"cannot snooze for {hours} hours")
        return hours
