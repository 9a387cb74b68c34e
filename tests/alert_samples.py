"""Bodies monitoring systems post, as their documentation shows them."""

from __future__ import annotations

import copy
from typing import Any

# Prometheus Alertmanager's webhook body, version 4, with the fields its configuration
# reference lists (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)
# and values as a blackbox probe's alert carries them.
ALERTMANAGER_EXAMPLE: dict[str, Any] = {
    "receiver": "sms",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "ProbeFailure",
                "instance": "https://server.example.org",
                "job": "http_checks",
                "monitor": "master",
                "severity": "critical",
            },
            "annotations": {
                "description": (
                    "Instance https://server.example.org has been down for over 5m."
                    " Job: http_checks"
                ),
                "summary": "BlackBox Probe Failure: https://server.example.org",
            },
            "startsAt": "2023-02-06T13:08:45.828Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": (
                "http://prometheus.example.org:9090/graph?g0.expr=probe_success+%3D%3D+0&g0.tab=1"
            ),
            "fingerprint": "1a30ba71cca2921f",
        }
    ],
    "groupLabels": {"alertname": "ProbeFailure"},
    "commonLabels": {
        "alertname": "ProbeFailure",
        "instance": "https://server.example.org",
        "job": "http_checks",
        "monitor": "master",
        "severity": "critical",
    },
    "commonAnnotations": {
        "description": (
            "Instance https://server.example.org has been down for over 5m. Job: http_checks"
        ),
        "summary": "BlackBox Probe Failure: https://server.example.org",
    },
    "externalURL": "http://prometheus.example.org:9093",
    "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="ProbeFailure"}',
    "truncatedAlerts": 0,
}

# Grafana Alerting's webhook body, as its webhook notifier documentation shows it.
GRAFANA_EXAMPLE: dict[str, Any] = {
    "receiver": "My Super Webhook",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
            "annotations": {
                "description": "The system has high memory usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone us-1",
            },
            "startsAt": "2021-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": (
                "https://play.grafana.org/alerting/silence/new?alertmanager=grafana"
                "&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1"
            ),
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
        },
        {
            "status": "firing",
            "labels": {"alertname": "High CPU usage", "team": "blue", "zone": "eu-1"},
            "annotations": {
                "description": "The system has high CPU usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone eu-1",
            },
            "startsAt": "2021-10-12T09:56:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/d1rdpdv7k/edit",
            "fingerprint": "bc97ff14869b13e3",
            "silenceURL": (
                "https://play.grafana.org/alerting/silence/new?alertmanager=grafana"
                "&matchers=alertname%3DT1%2Cteam%3Dblue%2Czone%3Deu-1"
            ),
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
        },
    ],
    "groupLabels": {},
    "commonLabels": {"team": "blue"},
    "commonAnnotations": {},
    "externalURL": "https://play.grafana.org/",
    "version": "1",
    "groupKey": "{}:{}",
    "truncatedAlerts": 0,
    "title": "[FIRING:2]  (blue)",
    "state": "alerting",
    "message": (
        "**Firing**\n\nLabels:\n - alertname = T2\n - team = blue\n - zone = us-1\n"
        "Annotations:\n - description = This is the alert rule checking the second system\n"
        "Source: https://play.grafana.org/alerting/1afz29v7z/edit\n"
    ),
}


def resolved(body: dict[str, Any]) -> dict[str, Any]:
    """The same group, all its alerts over (as Alertmanager and Grafana send it)."""
    over = copy.deepcopy(body)
    over["status"] = "resolved"
    for alert in over["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2023-02-06T13:30:00Z"
    if "state" in over:
        over["state"] = "ok"
    return over


def alertmanager_group(
    instances: list[str], *, status: str = "firing", alertname: str = "DiskFull"
) -> dict[str, Any]:
    """A group of `alertname` alerts, one per instance, grouped by alertname."""
    alerts = [
        {
            "status": status,
            "labels": {
                "alertname": alertname,
                "instance": instance,
                "job": "node",
                "severity": "warning",
            },
            "annotations": {"summary": f"Disk almost full on {instance}"},
            "startsAt": "2026-12-04T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=disk_free",
            "fingerprint": f"{abs(hash(instance)):016x}"[:16],
        }
        for instance in instances
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "incident-bot",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "job": "node", "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }
