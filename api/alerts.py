"""The /alerts receivers: Alertmanager's and Grafana's webhooks, and a generic event.

Each body becomes one alert (`api.alert_bodies`) and the alert store applies it
(`storage.alerts`): one incident per problem while it lasts, resolved when it is over.
An answer comes only after the change is committed: a monitoring system retries what got
no 2xx (Alertmanager does, on 5xx and lost connections), and a retry finds nothing
half-stored.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, Field, TypeAdapter

from api.alert_bodies import (
    AlertmanagerNotification,
    GenericResolve,
    GenericTrigger,
    GrafanaNotification,
)
from api.dependencies import Alerts, Announcement
from api.routing import KeyFirstRoute
from api.schemas import AlertIncidentOut, ErrorOut
from storage.alerts import Alert, AlertOutcome, AlertReceived

MAX_BODY_BYTES = 1024 * 1024
"""An Alertmanager group of a few thousand alerts, each with its labels and annotations."""

router = APIRouter(
    prefix="/alerts",
    tags=["alerts"],
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


class AlertAnswer(BaseModel):
    outcome: AlertOutcome = Field(
        description=(
            "created: a new incident; repeated: the key's unresolved incident counted it;"
            " resolved: the key's incident was resolved; ignored: a resolve with nothing"
            " unresolved to resolve"
        )
    )
    incident: AlertIncidentOut | None = Field(
        description="The key's incident as the alert left it; null if it never raised one"
    )


GenericEvent = Annotated[GenericTrigger | GenericResolve, Body(discriminator="action")]
"""A trigger or a resolve, told apart by `action`."""

_ANSWER = TypeAdapter(AlertAnswer)
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A repeat counted, a resolve applied, or nothing to resolve"},
    201: {
        "model": AlertAnswer,
        "description": "A new incident was raised",
        "headers": {
            "Location": {
                "description": "The incident's URL, /incidents/{id}",
                "schema": {"type": "string"},
            }
        },
    },
}


def _group_rules(key: str) -> str:
    """What the OpenAPI document says of a group receiver, whose groups `key` names."""
    return f"""

{key} names the problem. While the key's incident is open or in progress, a `firing`
notification counts a repeat on it (and takes the group's description and severity as
they are now); `resolved` resolves it, replying to its card. A `firing` notification for
a key whose incident was resolved or closed raises a new incident that names the earlier
one. Its source is a `source` label, else the receiver's kind; its severity, a `severity`
label."""


async def _receive(alerts: Alerts, announcement: Announcement, alert: Alert) -> Response:
    received = await alerts.receive(alert, card=announcement)
    return _answer(received)


def _answer(received: AlertReceived) -> Response:
    answer = AlertAnswer(
        outcome=received.outcome,
        incident=None
        if received.incident is None
        else AlertIncidentOut.model_validate(received.incident, from_attributes=True),
    )
    incident = received.incident
    if received.outcome is AlertOutcome.CREATED and incident is not None:
        # get_incident's path, written out, as create_incident does.
        location = {"Location": f"/incidents/{incident.id}"}
        return Response(_ANSWER.dump_json(answer), 201, location, "application/json")
    return Response(_ANSWER.dump_json(answer), media_type="application/json")


@router.post(
    "/alertmanager",
    response_model=AlertAnswer,
    responses=_RESPONSES,
    description="Prometheus Alertmanager's webhook body (version 4)."
    + _group_rules("The group's `groupKey`"),
)
async def receive_alertmanager(
    notification: AlertmanagerNotification, alerts: Alerts, announcement: Announcement
) -> Response:
    """Receive a notification from Prometheus Alertmanager's webhook."""
    return await _receive(alerts, announcement, notification.to_alert())


@router.post(
    "/grafana",
    response_model=AlertAnswer,
    responses=_RESPONSES,
    description="Grafana Alerting's webhook contact point body (version 1)."
    + _group_rules("The group's `groupKey`, within its `orgId`,"),
)
async def receive_grafana(
    notification: GrafanaNotification, alerts: Alerts, announcement: Announcement
) -> Response:
    """Receive a notification from a Grafana Alerting webhook contact point."""
    return await _receive(alerts, announcement, notification.to_alert())


@router.post(
    "",
    response_model=AlertAnswer,
    responses=_RESPONSES,
    description=(
        "A small event for any other monitoring system (Zabbix, scripts, uptime checks)."
        " `trigger` raises an incident for the `dedup_key`, or counts a repeat on its open"
        " one; `resolve` resolves it, by the `source`. A trigger after the key's incident"
        " was resolved or closed raises a new one that names the earlier."
    ),
)
async def receive_event(
    event: GenericEvent, alerts: Alerts, announcement: Announcement
) -> Response:
    """Receive a generic trigger or resolve event."""
    return await _receive(alerts, announcement, event.to_alert())
