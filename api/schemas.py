"""Request and response bodies: the HTTP API's contract, independent of the ORM.

Validation reuses `storage.rules`, so the API accepts exactly what the store accepts
and reports it with the same words the bot uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    computed_field,
    model_validator,
)

from storage.models import EventKind
from storage.rules import (
    DEFAULT_SOURCE,
    DESCRIPTION_MAX_LENGTH,
    DESCRIPTION_PATTERN,
    INCIDENT_ID_MAX,
    NAME_MAX_LENGTH,
    SOURCE_MAX_LENGTH,
    SOURCE_PATTERN,
    Status,
    normalize_description,
    normalize_name,
    normalize_source,
)

IDEMPOTENCY_KEY_MAX_LENGTH = 255

Description = Annotated[
    str,
    AfterValidator(normalize_description),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": DESCRIPTION_MAX_LENGTH,
            "pattern": DESCRIPTION_PATTERN,
        }
    ),
]
"""Control characters removed, trimmed, 1-4096 characters, something visible among them."""


def _visible_name(raw: str) -> str:
    name = normalize_name(raw)
    if name is None:
        raise ValueError("Name is empty")
    return name


Name = Annotated[
    str,
    AfterValidator(_visible_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": NAME_MAX_LENGTH}),
]
"""A person's name: cleaned like a description, cut to 128 characters, not empty."""

Source = Annotated[
    str,
    AfterValidator(normalize_source),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SOURCE_PATTERN,
            "maxLength": SOURCE_MAX_LENGTH,
            "examples": ["operator", "monitoring", "zabbix", "склад"],
        }
    ),
]
"""Trimmed and lower-cased: letters of any script, digits, '_' or '-', 1-32 characters."""


class IncidentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Description = Field(
        description=(
            "What is wrong; trimmed, 1-4096 characters. Control characters other than tab"
            " and line breaks are removed; text with nothing visible (only spaces,"
            " zero-width or other invisible characters) is refused as empty."
        ),
        examples=["Disk full on db-1"],
    )
    source: Source = Field(
        default=DEFAULT_SOURCE,
        description="Who reports it; lower-cased letters, digits, '_' or '-', 1-32 characters.",
    )
    status: Status = Field(default=Status.OPEN, description="The status to start in.")


class StatusUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status = Field(description="The status to move the incident to.")


class Owner(BaseModel):
    """Who is handling an incident."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = Field(
        default=None,
        ge=1,
        le=INCIDENT_ID_MAX,
        description="Their Telegram user id, if they are one (null for someone else).",
    )
    name: Name = Field(description="Their name, as cards show it.")


class IncidentPatch(BaseModel):
    """Changes to make together, in one transaction, each recorded on the timeline."""

    model_config = ConfigDict(extra="forbid")

    status: Status | None = Field(
        default=None, description="The status to move to (the same rules as /status)."
    )
    description_append: Description | None = Field(
        default=None,
        description=(
            "Text added to the description on a line of its own (cleaned as a description"
            " is; the whole must stay within 4096 characters)."
        ),
        examples=["Restarted the router; watching."],
    )
    owner: Owner | None = Field(
        default=None, description="The new owner; null gives the incident back (no owner)."
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> IncidentPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of status, description_append, owner")
        return self


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    description: str
    status: Status
    source: str
    created_at: datetime = Field(description="When it was reported (UTC).")
    updated_at: datetime = Field(description="When it last changed (UTC).")
    created_by: str | None = Field(
        description="Who reported it: 'api', a Telegram user or a monitoring system."
    )
    updated_by: str | None = Field(description="Who last changed its status.")
    owner_id: int | None = Field(default=None, exclude=True)
    owner_name: str | None = Field(default=None, exclude=True)

    @computed_field(description="Who is handling it, or null.")  # type: ignore[prop-decorator]
    @property
    def owner(self) -> Owner | None:
        if self.owner_name is None:
            return None
        return Owner(id=self.owner_id, name=self.owner_name)


class EventOut(BaseModel):
    """One change on an incident's timeline."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime = Field(description="When it happened (UTC).")
    kind: EventKind
    actor: str | None = Field(description="Who: a Telegram user's name, 'api', or a system.")
    actor_id: int | None = Field(description="The actor's Telegram user id, if a user.")
    status_from: Status | None = Field(description="For status_changed: the status before.")
    status_to: Status | None = Field(
        description="For status_changed: the status after; for created: the first status."
    )
    text: str | None = Field(
        description=(
            "For a note, an edit or an appended text: the text; for owner_set/owner_released:"
            " the owner's name; for created: where from (chat, api, ...)."
        )
    )


class AlertIncidentOut(IncidentOut):
    """An incident as the /alerts receivers answer: with what its alert adds."""

    severity: str | None = Field(description="The alert's severity label, if it has one.")
    repeat_count: int = Field(
        description="How many times the alert came again while the incident was unresolved."
    )
    last_seen_at: datetime | None = Field(description="When the alert last came (UTC).")
    previous_id: int | None = Field(
        description="The incident the same alert raised before (resolved or closed since)."
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]
    bot: Literal["off", "starting", "active", "standby"] = Field(
        description=(
            "This instance's part in the bot: off (no BOT_TOKEN), active (it polls Telegram"
            " and sends), standby (another instance sharing the database does)"
        )
    )


class ErrorOut(BaseModel):
    detail: str = Field(examples=["Incident 7 not found"])


RETRY_AFTER_SECONDS = 5
"""What a 503 asks the client to wait: long enough for a lock to be let go."""


def retry_after() -> dict[str, str]:
    """The header of every 503."""
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}


_RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}
STORAGE_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorOut,
        "description": "The database is unavailable (locked, full or unreachable); retry later",
        "headers": _RETRY_AFTER_HEADER,
    }
}
"""The 503 every route that touches the database can answer, for OpenAPI."""


class TransitionErrorOut(ErrorOut):
    current: Status = Field(description="The incident's status now.")
    requested: Status = Field(description="The status asked for.")
    allowed: list[Status] = Field(description="The statuses it may move to from `current`.")
