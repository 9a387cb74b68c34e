"""The /incidents resource: create, list, read and move incidents between statuses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Response
from pydantic import TypeAdapter

from api.dependencies import Announcement, Store
from api.routing import KeyFirstRoute
from api.schemas import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    ErrorOut,
    IncidentCreate,
    IncidentOut,
    Source,
    StatusUpdate,
    TransitionErrorOut,
)
from storage.models import IncidentRow
from storage.rules import INCIDENT_ID_MAX, Status, excerpt
from storage.store import NewIncident

# Who the store records as the author of changes made through this API.
API_ACTOR = "api"
MAX_PAGE_SIZE = 200
TOTAL_COUNT_HEADER = "X-Total-Count"

# The largest valid body (4096 characters, each JSON-escaped) fits well within this.
MAX_BODY_BYTES = 64 * 1024

router = APIRouter(
    prefix="/incidents",
    tags=["incidents"],
    route_class=KeyFirstRoute,
    max_body_size=MAX_BODY_BYTES,
    responses={
        413: {
            "model": ErrorOut,
            "description": f"The body is larger than {MAX_BODY_BYTES} bytes",
            # Starlette answers in plain text when Content-Length already says too much,
            # and FastAPI in JSON when a body without one runs over.
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)

IncidentId = Annotated[
    int,
    Path(ge=1, le=INCIDENT_ID_MAX, description="The incident's id, a positive 64-bit integer."),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        description=(
            "Makes retries safe: a repeated request with the same key returns the incident"
            " the first one created (200) instead of creating another."
        ),
    ),
]

_LOCATION = {
    "Location": {
        "description": "The incident's URL, /incidents/{id}",
        "schema": {"type": "string"},
    }
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such incident"}
}

# Every route turns the store's rows into JSON here, in one validating pass, and returns
# the bytes as the Response. Returning the models instead would have FastAPI validate
# them a second time before it serialises them. `response_model` on the routes keeps
# the documented schema; the bytes are the same either way.
_INCIDENT_LIST = TypeAdapter(list[IncidentOut])
_INCIDENT = TypeAdapter(IncidentOut)


def _incident_response(
    incident: IncidentRow, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = _INCIDENT.dump_json(_INCIDENT.validate_python(incident, from_attributes=True))
    return Response(body, status_code, headers, media_type="application/json")


@router.post(
    "",
    status_code=201,
    response_model=IncidentOut,
    responses={
        200: {
            "model": IncidentOut,
            "description": "A retry: the incident this Idempotency-Key created before",
            "headers": _LOCATION,
        },
        201: {"description": "Created", "headers": _LOCATION},
        409: {
            "model": ErrorOut,
            "description": "The Idempotency-Key was used before for a different incident",
        },
    },
)
async def create_incident(
    payload: IncidentCreate,
    store: Store,
    announcement: Announcement,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Report a new incident."""
    result = await store.create(
        NewIncident(
            description=payload.description,
            source=payload.source,
            status=payload.status,
            created_by=API_ACTOR,
            idempotency_key=idempotency_key,
        ),
        card=announcement,
    )
    incident = result.incident
    # A retry must be the same request. Its status may differ: the incident may have moved
    # on since it was created, which does not make this a different incident.
    if not result.created and (incident.description, incident.source) != (
        payload.description,
        payload.source,
    ):
        raise HTTPException(
            status_code=409,
            detail=(
                f"Idempotency-Key {excerpt(idempotency_key or '')!r} was already used to"
                f" create incident {incident.id} with a different description or source;"
                " use a new key for a new incident"
            ),
        )
    # get_incident's path, written out: url_path_for would try every route in turn.
    location = {"Location": f"{router.prefix}/{incident.id}"}
    return _incident_response(
        incident, status_code=201 if result.created else 200, headers=location
    )


@router.get(
    "",
    response_model=list[IncidentOut],
    responses={
        200: {
            "headers": {
                TOTAL_COUNT_HEADER: {
                    "description": "How many incidents match the filters, on all pages",
                    "schema": {"type": "integer"},
                }
            }
        }
    },
)
async def list_incidents(
    store: Store,
    status: Annotated[Status | None, Query(description="Only incidents in this status.")] = None,
    source: Annotated[Source | None, Query(description="Only incidents from this source.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=INCIDENT_ID_MAX, description="How many incidents to skip.")
    ] = 0,
    before: Annotated[
        int | None,
        Query(
            ge=1,
            le=INCIDENT_ID_MAX,
            description=(
                "Only incidents older than this id. For the next page, pass the last id of"
                " this one: as fast at any depth, where a large offset is slow."
            ),
        ),
    ] = None,
) -> Response:
    """List incidents, newest first, with the total count in X-Total-Count."""
    page = await store.list(
        status=status, source=source, limit=limit, offset=offset, before=before
    )
    items = _INCIDENT_LIST.validate_python(page.items, from_attributes=True)
    return Response(
        _INCIDENT_LIST.dump_json(items),
        media_type="application/json",
        headers={TOTAL_COUNT_HEADER: str(page.total)},
    )


@router.get("/{incident_id}", response_model=IncidentOut, responses=_NOT_FOUND)
async def get_incident(incident_id: IncidentId, store: Store) -> Response:
    """Get one incident."""
    return _incident_response(await store.get(incident_id))


@router.patch(
    "/{incident_id}/status",
    response_model=IncidentOut,
    responses={
        **_NOT_FOUND,
        409: {
            "model": TransitionErrorOut,
            "description": "The incident's current status does not allow the requested one",
        },
    },
)
async def change_incident_status(
    incident_id: IncidentId, change: StatusUpdate, store: Store
) -> Response:
    """Move an incident to another status (its current status is a no-op)."""
    result = await store.change_status(incident_id, change.status, changed_by=API_ACTOR)
    return _incident_response(result.incident)
