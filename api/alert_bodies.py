"""What monitoring systems post, as their documentation spells it, and the alert each is.

- Prometheus Alertmanager's webhook (`version` "4"): a group of alerts (`group_by`),
  `firing` while any of them fires, `resolved` once all have.
  https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
- Grafana Alerting's webhook contact point (`version` "1"): the same shape, plus `orgId`,
  `title`, `state`, `message` and per alert its dashboard, panel and silence links and
  values. https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/
- A small generic event of this service's own, for everything else (Zabbix, scripts,
  uptime checkers).

A group is one problem, keyed by its `groupKey` (as the best-known receivers do): a
hundred firing hosts are one incident whose description says how many fire and where.
Fields the bodies carry beyond these are ignored; a missing or malformed one that is
described here gets a 422 naming it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import Description, Source
from storage.alerts import Alert, AlertAction
from storage.rules import (
    DESCRIPTION_MAX_LENGTH,
    SEVERITY_MAX_LENGTH,
    InvalidIncidentError,
    normalize_source,
)

DEDUP_KEY_MAX_LENGTH = 255
LISTED_INSTANCES = 10
"""How many of a group's firing instances a description names before "and N more"."""
ANNOTATION_MAX_LENGTH = 1000
"""How much of one annotation (a summary, a description) an incident's description takes."""
GENERIC_SOURCE = "monitoring"
"""The source of a generic event that names none."""
GENERIC_ORIGIN = "alerts"
"""Where a generic event came from, as the timeline's "created" event says it."""

Labels = dict[str, str]


class _Body(BaseModel):
    # Monitoring systems add fields over time; what is not described here is ignored.
    model_config = ConfigDict(extra="ignore")


class PrometheusAlert(_Body):
    """One alert of an Alertmanager group."""

    status: Literal["firing", "resolved"]
    labels: Labels = Field(description="Identify the alert: alertname, instance, job, ...")
    annotations: Labels = Field(
        default_factory=dict, description="summary, description, runbook_url, ..."
    )
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(
        default="", alias="generatorURL", description="Where the alert comes from"
    )
    fingerprint: str = ""


class AlertmanagerNotification(_Body):
    """Alertmanager's webhook body, version 4."""

    version: Literal["4"]
    group_key: str = Field(
        alias="groupKey", min_length=1, description="Identifies the group: one incident per key"
    )
    truncated_alerts: int = Field(
        default=0, ge=0, alias="truncatedAlerts", description="Alerts left out (max_alerts)"
    )
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: Labels = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[PrometheusAlert]

    def to_alert(self) -> Alert:
        return _group_alert(self, key=f"alertmanager:{self.group_key}", kind="alertmanager")


class GrafanaAlert(PrometheusAlert):
    """One alert of a Grafana notification."""

    dashboard_url: str = Field(default="", alias="dashboardURL")
    panel_url: str = Field(default="", alias="panelURL")
    silence_url: str = Field(default="", alias="silenceURL")
    values: dict[str, float | None] | None = Field(
        default=None, description="The values of the rule's expressions"
    )


class GrafanaNotification(AlertmanagerNotification):
    """Grafana Alerting's webhook body, version 1."""

    version: Literal["1"]  # type: ignore[assignment]
    org_id: int = Field(alias="orgId")
    title: str = ""
    state: str = Field(default="", description="alerting or ok")
    message: str = ""
    alerts: list[GrafanaAlert]  # type: ignore[assignment]

    def to_alert(self) -> Alert:
        # Group keys are Grafana's per organisation.
        return _group_alert(
            self, key=f"grafana:{self.org_id}:{self.group_key}", kind="grafana", title=self.title
        )


class _GenericEvent(_Body):
    dedup_key: str = Field(
        min_length=1,
        max_length=DEDUP_KEY_MAX_LENGTH,
        description="Names the problem: events with the same key are one incident",
        examples=["zabbix-trigger-18254"],
    )
    source: Source = Field(
        default=GENERIC_SOURCE, description="Who reports it; it also resolves it"
    )


class GenericTrigger(_GenericEvent):
    """The problem is there: the first time raises an incident, repeats count on it."""

    action: Literal["trigger"]
    description: Description = Field(
        description="What is wrong; trimmed, 1-4096 characters.",
        examples=["Disk full on db-1"],
    )
    severity: str | None = Field(
        default=None, max_length=SEVERITY_MAX_LENGTH, examples=["critical", "warning"]
    )

    def to_alert(self) -> Alert:
        return Alert(
            key=f"event:{self.dedup_key}",
            action=AlertAction.TRIGGER,
            description=self.description,
            source=self.source,
            actor=self.source,
            origin=GENERIC_ORIGIN,
            severity=self.severity,
        )


class GenericResolve(_GenericEvent):
    """The problem is over: the key's open incident is resolved."""

    action: Literal["resolve"]

    def to_alert(self) -> Alert:
        return Alert(
            key=f"event:{self.dedup_key}",
            action=AlertAction.RESOLVE,
            description="",
            source=self.source,
            actor=self.source,
            origin=GENERIC_ORIGIN,
        )


def _group_alert(
    body: AlertmanagerNotification,
    *,
    key: str,
    kind: Literal["alertmanager", "grafana"],
    title: str = "",
) -> Alert:
    """The group as one alert; `title` is the body's own (Grafana's), taken when the
    alerts have neither a summary nor a name."""
    firing = [alert for alert in body.alerts if alert.status == "firing"]
    shown = firing or body.alerts
    first = shown[0] if shown else None
    labels = {**(first.labels if first else {}), **body.common_labels}
    return Alert(
        key=key,
        action=AlertAction.TRIGGER if body.status == "firing" else AlertAction.RESOLVE,
        description=_description(body, shown, fallback_title=title),
        source=_source(labels.get("source"), default=kind),
        actor="Alertmanager" if kind == "alertmanager" else "Grafana",
        origin=kind,
        severity=labels.get("severity"),
    )


def _description(
    body: AlertmanagerNotification, alerts: list[PrometheusAlert], *, fallback_title: str
) -> str:
    """A title, the group's description, how many alerts fire and on what, and a link to
    where they come from.

    The title is the group's summary, else the one summary all its alerts share, else
    its alert name, else the names of its alerts, else the body's own title (Grafana's).
    """
    summaries = _distinct(alert.annotations.get("summary") for alert in alerts)
    names = _distinct(alert.labels.get("alertname") for alert in alerts)
    title = (
        body.common_annotations.get("summary")
        or (summaries[0] if len(summaries) == 1 else "")
        or body.common_labels.get("alertname")
        or body.group_labels.get("alertname")
        or ", ".join(names[:LISTED_INSTANCES])
        or fallback_title
        or "Alert"
    )
    lines = [_cut(title)]
    detail = body.common_annotations.get("description")
    if detail and detail != title:
        lines.append(_cut(detail))
    lines.append(_where(body, alerts))
    link = _link(alerts[0] if alerts else None, body.external_url)
    if link:
        lines.append(link)
    return "\n".join(lines)[:DESCRIPTION_MAX_LENGTH]


def _where(body: AlertmanagerNotification, alerts: list[PrometheusAlert]) -> str:
    """`3 firing: db-1:9100, db-2:9100, db-3:9100 · job node`."""
    state = "firing" if body.status == "firing" else "resolved"
    count = len(alerts) + body.truncated_alerts
    line = f"{count} {state}"
    instances = _distinct(alert.labels.get("instance") for alert in alerts)
    if instances:
        listed = ", ".join(instances[:LISTED_INSTANCES])
        more = len(instances) - LISTED_INSTANCES
        line += f": {listed}" + (f" and {more} more" if more > 0 else "")
    jobs = _distinct(alert.labels.get("job") for alert in alerts)
    if jobs:
        line += " · job " + ", ".join(jobs[:LISTED_INSTANCES])
    return line


def _link(first: PrometheusAlert | None, external_url: str) -> str:
    """Where to look: the panel or dashboard (Grafana), the alert's source, or the
    monitoring system itself."""
    candidates: list[str] = []
    if isinstance(first, GrafanaAlert):
        candidates += [first.panel_url, first.dashboard_url]
    if first is not None:
        candidates.append(first.generator_url)
    candidates.append(external_url)
    return next((url.strip() for url in candidates if url.strip()), "")


def _distinct(values: Any) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def _cut(text: str) -> str:
    text = text.strip()
    return text if len(text) <= ANNOTATION_MAX_LENGTH else text[:ANNOTATION_MAX_LENGTH] + "…"


def _source(label: str | None, *, default: str) -> str:
    """A `source` label that makes a valid source, else the monitoring system's kind."""
    if label:
        try:
            return normalize_source(label)
        except InvalidIncidentError:
            pass
    return default
