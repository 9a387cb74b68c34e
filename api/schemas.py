"""Request and response bodies: the HTTP API's contract, independent of the ORM.

Validation reuses `storage.rules`, so the API accepts exactly what the store accepts
and reports it with the same words the bot uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from storage.rules import (
    DEFAULT_SOURCE,
    DESCRIPTION_MAX_LENGTH,
    DESCRIPTION_PATTERN,
    SOURCE_MAX_LENGTH,
    SOURCE_PATTERN,
    Status,
    normalize_description,
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
