"""End to end with Prometheus Alertmanager itself: a group of three alerts that keeps
firing, then resolves, as Alertmanager delivers it to main.py (one process, or two on
PostgreSQL with the receiver listing both): one incident whose repeats are counted,
resolved by Alertmanager, one card in the chat (edited) and one resolve notice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from storage.models import IncidentRow
from storage.rules import Status
from storage.store import IncidentStore
from tests import alertmanager
from tests.alertmanager import Alertmanager
from tests.bot.conftest import all_delivered
from tests.bot.test_instances import bot_role
from tests.service import START_TIMEOUT, Service, ServiceRunner
from tests.telegram_stub import TelegramStub

KEY = "alert-key-42"
NOTIFY_CHAT_ID = -1_009_000_000_077
INSTANCES = ["db-1:9100", "db-2:9100", "db-3:9100"]
REPEATS = 2
"""Repeats to see before resolving: at Alertmanager's shortest intervals, a repeat every
3 s (the issue's 60 s of firing, scaled down; the assertions are the same)."""
REPEATS_TIMEOUT = 30.0


@pytest.fixture
async def alertmanagers(tmp_path: Path) -> AsyncIterator[list[Alertmanager]]:
    """The Alertmanagers a test started; stopped at its end."""
    started: list[Alertmanager] = []
    yield started
    for process in started:
        await process.stop()


async def start_alertmanager(
    started: list[Alertmanager], workdir: Path, services: Sequence[Service]
) -> Alertmanager:
    urls = [f"{service.base_url}/alerts/alertmanager" for service in services]
    process = alertmanager.start(workdir, alertmanager.config(urls, bearer_token=KEY))
    started.append(process)
    await process.wait_until_ready()
    return process


def start_services(stub: TelegramStub, services: ServiceRunner, count: int) -> list[Service]:
    settings = {
        "BOT_TOKEN": stub.token,
        "TELEGRAM_API_URL": stub.base_url,
        "NOTIFY_CHAT_ID": str(NOTIFY_CHAT_ID),
        "API_KEY": KEY,
        "FAILOVER_SECONDS": "3",
    }
    return [services.start(**settings) for _ in range(count)]


async def one_active(*instances: Service) -> None:
    """Wait until one instance polls and sends, the others standing by."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while sorted([await bot_role(service) for service in instances]) != [
        "active",
        *["standby"] * (len(instances) - 1),
    ]:
        assert loop.time() < deadline, "no instance became active"
        await asyncio.sleep(0.1)


async def repeats_seen(store: IncidentStore, at_least: int) -> list[int]:
    """The alert's incident's repeat counts as they grow, until `at_least`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REPEATS_TIMEOUT
    seen: list[int] = []
    while not seen or seen[-1] < at_least:
        assert loop.time() < deadline, f"repeats seen: {seen}"
        page = await store.list()
        if page.items:
            count = page.items[0].repeat_count
            if not seen or count != seen[-1]:
                seen.append(count)
        await asyncio.sleep(0.1)
    return seen


async def fire_then_resolve(
    stub: TelegramStub, store: IncidentStore, manager: Alertmanager
) -> tuple[list[int], IncidentRow]:
    """Fire the group, let Alertmanager repeat it, resolve it; the repeat counts seen
    and the incident once the chat shows it resolved."""
    chat = stub.supergroup("Incidents", chat_id=NOTIFY_CHAT_ID)
    await manager.post_alerts(alertmanager.alerts("DiskFull", INSTANCES))
    card = await stub.wait_for_message(chat, timeout=START_TIMEOUT)
    seen = await repeats_seen(store, REPEATS)
    await manager.post_alerts(alertmanager.alerts("DiskFull", INSTANCES, ended=True))
    await stub.wait_for_message(chat, reply_to=card.message_id, timeout=REPEATS_TIMEOUT)
    await stub.wait_for(lambda: "resolved" in (card.text or ""), what="the card resolved")
    await all_delivered(store)
    [incident] = (await store.list()).items
    return seen, incident


def assert_one_card_edited_and_one_notice(stub: TelegramStub, incident: IncidentRow) -> None:
    messages = stub.sent_messages(NOTIFY_CHAT_ID)
    assert len(messages) == 2, stub.chat_transcript(NOTIFY_CHAT_ID)
    card, notice = messages
    assert card.edited
    # (On PostgreSQL an instance that lost the race for the key took an id with it.)
    assert (card.text or "").startswith(f"🟢 Incident #{incident.id} · resolved · alertmanager\n")
    assert "Disk almost full\n3 firing: db-1:9100, db-2:9100, db-3:9100 · job node" in (
        card.text or ""
    )
    assert "Severity: critical" in (card.text or "")
    assert f"Repeats: {incident.repeat_count} · last seen" in (card.text or "")
    assert (card.text or "").endswith("Status set by Alertmanager")
    assert (notice.text, notice.reply_to_message_id) == (
        "✅ Resolved by Alertmanager",
        card.message_id,
    )


async def assert_every_notification_delivered(manager: Alertmanager, at_least: int) -> None:
    sent = await manager.metric("alertmanager_notifications_total", integration="webhook")
    failed = await manager.metric("alertmanager_notifications_failed_total", integration="webhook")
    assert sent >= at_least, manager.log()
    assert failed == 0, manager.log()


async def test_alertmanager_group_firing_then_resolved_is_one_incident_and_one_card(
    stub: TelegramStub,
    services: ServiceRunner,
    store: IncidentStore,
    alertmanagers: list[Alertmanager],
    tmp_path: Path,
) -> None:
    [service] = start_services(stub, services, 1)
    await service.wait_until_ready()
    manager = await start_alertmanager(alertmanagers, tmp_path / "alertmanager", [service])

    seen, incident = await fire_then_resolve(stub, store, manager)
    returncode = await service.stop()

    assert seen[0] <= 1 and seen[-1] >= REPEATS and seen == sorted(seen), seen
    assert (incident.status, incident.updated_by, incident.source) == (
        Status.RESOLVED,
        "Alertmanager",
        "alertmanager",
    )
    assert incident.repeat_count >= REPEATS
    assert_one_card_edited_and_one_notice(stub, incident)
    # The first notification, the repeats and the resolve, all answered 2xx.
    await assert_every_notification_delivered(manager, REPEATS + 2)
    assert returncode == 0
    assert "Traceback" not in service.log()


@pytest.mark.postgresql_only
async def test_two_instances_both_notified_still_make_one_incident_and_one_card(
    stub: TelegramStub,
    services: ServiceRunner,
    store: IncidentStore,
    alertmanagers: list[Alertmanager],
    tmp_path: Path,
) -> None:
    first, second = start_services(stub, services, 2)
    await first.wait_until_ready()
    await second.wait_until_ready()
    await one_active(first, second)
    manager = await start_alertmanager(alertmanagers, tmp_path / "alertmanager", [first, second])

    seen, incident = await fire_then_resolve(stub, store, manager)
    returncodes = [await first.stop(), await second.stop()]

    assert (incident.status, incident.updated_by) == (Status.RESOLVED, "Alertmanager")
    assert seen[-1] >= REPEATS and seen == sorted(seen), seen
    assert_one_card_edited_and_one_notice(stub, incident)
    # Every notification went to both instances, and both took them.
    await assert_every_notification_delivered(manager, 2 * (REPEATS + 2))
    for service in (first, second):
        log = service.log()
        assert '"POST /alerts/alertmanager HTTP/1.1" 201' in log or (
            '"POST /alerts/alertmanager HTTP/1.1" 200' in log
        ), log
        assert "Traceback" not in log
    assert returncodes == [0, 0]
