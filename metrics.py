"""The service's Prometheus metrics, in a registry of its own, served at GET /metrics.

Two kinds. What happens in this process is counted as it happens: Telegram calls and
updates (the bot's middlewares, `bot.metrics`), HTTP requests (`api.request_metrics`),
the times to take and to resolve (the store's status observer, `status_changed`). What
the database holds (incidents by status and source, the outbox) is read when Prometheus
scrapes (`read_stored`), so every instance sharing the database reports the same figures
and none of them keeps a copy that could drift.

Each `Metrics` has its own `CollectorRegistry`, not the library's global one: tests, and
several apps in one process, never see each other's figures.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from storage.errors import describe
from storage.models import DeliveryState, utcnow
from storage.rules import Status
from storage.store import IncidentStore, StatusChange

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text exposition format, which every Prometheus version reads."""

ROLES = ("off", "starting", "active", "standby")
"""The instance's part, as /health says it: `off` without the bot."""

STORE_READ_TIMEOUT_SECONDS = 5
"""A scrape must answer even when the database hangs (without the stored figures then)."""

# An incident is taken or resolved within minutes to days.
HANDLING_BUCKETS = (
    60.0,
    5 * 60.0,
    15 * 60.0,
    30 * 60.0,
    3600.0,
    2 * 3600.0,
    4 * 3600.0,
    8 * 3600.0,
    24 * 3600.0,
    3 * 24 * 3600.0,
    7 * 24 * 3600.0,
    math.inf,
)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; anything else a client makes up is counted as `other`."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What the database holds, read for one scrape."""

    incidents: Sequence[tuple[Status, str, int]]
    """(status, source, how many), every chat's together."""
    outbox: Mapping[DeliveryState, int]
    oldest_pending_since: datetime | None


async def read_stored(store: IncidentStore) -> Stored | None:
    """The stored figures for a scrape; None (and a warning) if the database cannot
    give them now: the scrape still serves what this process counted."""
    try:
        async with asyncio.timeout(STORE_READ_TIMEOUT_SECONDS):
            outbox = store.outbox
            return Stored(
                incidents=await store.totals(),
                outbox=await outbox.count_by_state(),
                oldest_pending_since=await outbox.oldest_pending_since(),
            )
    except Exception as error:
        reason = describe(error) if str(error) else type(error).__name__
        logger.warning("Metrics without the stored figures: cannot read the database: %s", reason)
        return None


class Metrics:
    """The instruments the service's parts feed, and the text a scrape returns."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._time_to_take = Histogram(
            "incident_bot_time_to_take_seconds",
            "Seconds from an incident's creation to its move from open to in_progress"
            " (counted by the instance that stored the move)",
            buckets=HANDLING_BUCKETS,
            registry=self.registry,
        )
        self._time_to_resolve = Histogram(
            "incident_bot_time_to_resolve_seconds",
            "Seconds from an incident's creation to a change of its status to resolved"
            " (counted by the instance that stored the change)",
            buckets=HANDLING_BUCKETS,
            registry=self.registry,
        )
        self._telegram_calls = Counter(
            "incident_bot_telegram_calls",
            "Bot API calls this instance made, by method and outcome"
            " (ok, 429, or the kind of error)",
            ["method", "outcome"],
            registry=self.registry,
        )
        self._updates_handled = Counter(
            "incident_bot_updates_handled",
            "Telegram updates this instance handled, by update type",
            ["type"],
            registry=self.registry,
        )
        self._http_requests = Counter(
            "incident_bot_http_requests",
            "HTTP requests this instance answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._http_duration = Histogram(
            "incident_bot_http_request_duration_seconds",
            "Seconds from an HTTP request's arrival to the end of its answer, by method and"
            " route template",
            ["method", "route"],
            registry=self.registry,
        )

    def status_changed(self, changes: Sequence[StatusChange]) -> None:
        """The store's status observer: each committed change to in_progress from open,
        or to resolved, is a time to take or to resolve."""
        for change in changes:
            incident = change.incident
            since_created = max((incident.updated_at - incident.created_at).total_seconds(), 0)
            if change.previous == Status.OPEN and incident.status == Status.IN_PROGRESS:
                self._time_to_take.observe(since_created)
            elif incident.status == Status.RESOLVED:
                self._time_to_resolve.observe(since_created)

    def telegram_call(self, method: str, outcome: str) -> None:
        self._telegram_calls.labels(method, outcome).inc()

    def update_handled(self, update_type: str) -> None:
        self._updates_handled.labels(update_type).inc()

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        counted_method = method if method in HTTP_METHODS else "other"
        self._http_requests.labels(counted_method, route, str(status)).inc()
        self._http_duration.labels(counted_method, route).observe(seconds)

    def exposition(self, stored: Stored | None, role: str) -> bytes:
        """The text a scrape returns: what this process counted, `stored` (when the
        database could be read), and the instance's `role` (one of `ROLES`)."""
        return generate_latest(_Scrape(self.registry, stored, role))


class _Scrape:
    """One scrape's metrics: the registry's, and the gauges read for this scrape alone
    (held here rather than set on shared gauges, so concurrent scrapes cannot mix)."""

    def __init__(self, registry: CollectorRegistry, stored: Stored | None, role: str) -> None:
        self._registry = registry
        self._stored = stored
        self._role = role

    def collect(self) -> Iterable[Metric]:
        yield from self._registry.collect()
        role = GaugeMetricFamily(
            "incident_bot_role",
            "The instance's part among those sharing the database: 1 for the current one"
            " (off: no bot; active: polls Telegram and sends; standby: waits to take over)",
            labels=["role"],
        )
        for name in ROLES:
            role.add_metric([name], 1 if name == self._role else 0)
        yield role
        yield GaugeMetricFamily(
            "incident_bot_store_readable",
            "1 if this scrape read the incident and outbox figures from the database;"
            " 0 if it could not, and they are missing from it",
            value=0 if self._stored is None else 1,
        )
        if self._stored is not None:
            yield from _stored_metrics(self._stored)


def _stored_metrics(stored: Stored) -> Iterable[Metric]:
    incidents = GaugeMetricFamily(
        "incident_bot_incidents",
        "Incidents in the database by status and source (every instance reports the same)",
        labels=["status", "source"],
    )
    for status, source, total in stored.incidents:
        incidents.add_metric([status.value, source], total)
    yield incidents
    deliveries = GaugeMetricFamily(
        "incident_bot_outbox_deliveries",
        "Messages in the outbox by state: pending (to send), sent, folded (into a storm's"
        " summary), failed (refused by Telegram for good)",
        labels=["state"],
    )
    for state, count in stored.outbox.items():
        deliveries.add_metric([state.value], count)
    yield deliveries
    oldest = stored.oldest_pending_since
    yield GaugeMetricFamily(
        "incident_bot_outbox_oldest_pending_age_seconds",
        "Seconds since the oldest message still waiting in the outbox was queued"
        " (0 when none is waiting)",
        value=0 if oldest is None else max((utcnow() - oldest).total_seconds(), 0),
    )
