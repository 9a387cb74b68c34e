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
    EventOut,
    IncidentCreate,
    IncidentOut,
    IncidentPatch,
    Source,
    StatusUpdate,
    TransitionErrorOut,
)
from storage.models import IncidentRow
from storage.rules import INCIDENT_ID_MAX, Status, excerpt
from storage.store import UNSET, Actor, NewIncident, Unset

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
_EVENT_LIST = TypeAdapter(list[EventOut])


def _incident_response(
    incident: IncidentRow, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = _INCIDENT.dump_json(_INCIDENT.validate_python(incident, from_attributes=True))
    headers = {**(headers or {}), "ETag": entity_tag(incident)}
    return Response(body, status_code, headers, media_type="application/json")


def entity_tag(incident: IncidentRow) -> str:
    """The incident's ETag: its version, which every change moves on."""
    return f'"v{incident.version}"'


def _tagged_versions(header: str) -> set[int] | None:
    """The versions an If-Match or If-None-Match header names; None for `*` (any).

    Tags this API never gave (another format, a weak one for If-Match) name no version.
    """
    versions: set[int] = set()
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return None
        tag = tag.removeprefix("W/")
        if tag.startswith('"v') and tag.endswith('"') and tag[2:-1].isdigit():
            versions.add(int(tag[2:-1]))
    return versions


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


_ETAG = {
    "ETag": {"description": "The incident's version, for If-Match", "schema": {"type": "string"}}
}


@router.get(
    "/{incident_id}",
    response_model=IncidentOut,
    responses={
        **_NOT_FOUND,
        200: {"headers": _ETAG},
        304: {"description": "Unchanged since the version If-None-Match names", "headers": _ETAG},
    },
)
async def get_incident(
    incident_id: IncidentId,
    store: Store,
    if_none_match: Annotated[
        str | None,
        Header(
            max_length=1024,
            description="An ETag from before: 304 without a body if it is still current.",
        ),
    ] = None,
) -> Response:
    """Get one incident, with its version as the ETag."""
    incident = await store.get(incident_id)
    if if_none_match is not None:
        versions = _tagged_versions(if_none_match)
        if versions is None or incident.version in versions:
            return Response(status_code=304, headers={"ETag": entity_tag(incident)})
    return _incident_response(incident)


@router.patch(
    "/{incident_id}",
    response_model=IncidentOut,
    responses={
        **_NOT_FOUND,
        200: {"headers": _ETAG},
        409: {
            "model": TransitionErrorOut,
            "description": "The incident's current status does not allow the requested one",
        },
        412: {
            "model": ErrorOut,
            "description": "The incident changed since the version If-Match names",
            "headers": _ETAG,
        },
    },
)
async def amend_incident(
    incident_id: IncidentId,
    patch: IncidentPatch,
    store: Store,
    if_match: Annotated[
        str | None,
        Header(
            max_length=1024,
            description=(
                "The ETag the change is based on: if the incident has changed since, 412"
                " and nothing changes."
            ),
        ),
    ] = None,
) -> Response:
    """Change status, description and owner at once, each an event on the timeline."""
    owner: Actor | Unset | None = UNSET
    if "owner" in patch.model_fields_set:
        owner = None if patch.owner is None else Actor(patch.owner.name, patch.owner.id)
    versions = None if if_match is None else _tagged_versions(if_match)
    result = await store.amend(
        incident_id,
        by=Actor(API_ACTOR),
        status=patch.status,
        description_append=patch.description_append,
        owner=owner,
        if_versions=None if versions is None else frozenset(versions),
    )
    return _incident_response(result.incident)


@router.get(
    "/{incident_id}/events",
    response_model=list[EventOut],
    responses={
        **_NOT_FOUND,
        200: {
            "headers": {
                TOTAL_COUNT_HEADER: {
                    "description": "How many events the incident has, on all pages",
                    "schema": {"type": "integer"},
                }
            }
        },
    },
)
async def list_incident_events(
    incident_id: IncidentId,
    store: Store,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=INCIDENT_ID_MAX, description="How many events to skip.")
    ] = 0,
) -> Response:
    """The incident's timeline, oldest first: every change, who made it and when."""
    page = await store.events(incident_id, limit=limit, offset=offset)
    items = _EVENT_LIST.validate_python(page.items, from_attributes=True)
    return Response(
        _EVENT_LIST.dump_json(items),
        media_type="application/json",
        headers={TOTAL_COUNT_HEADER: str(page.total)},
    )


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
