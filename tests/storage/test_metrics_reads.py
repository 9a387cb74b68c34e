"""What /metrics reads and hears from the store: totals by status and source, the
outbox by state, and each committed status change, told once it is stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_session_factory
from storage.models import DeliveryState
from storage.rules import Status
from storage.store import (
    CardRequest,
    IncidentStore,
    NewIncident,
    StatusChange,
    TransitionNotAllowedError,
)

GROUP, OTHER_GROUP = -100500, -100600


@pytest.fixture
def told() -> list[list[StatusChange]]:
    return []


@pytest.fixture
def store(engine: AsyncEngine, fast_paths: bool, told: list[list[StatusChange]]) -> IncidentStore:
    def observe(changes: Sequence[StatusChange]) -> None:
        told.append(list(changes))

    return IncidentStore(
        create_session_factory(engine), on_status_changed=observe, fast_paths=fast_paths
    )


async def create(
    store: IncidentStore, source: str = "monitoring", chat_id: int | None = None
) -> int:
    new = NewIncident(description="Disk full on db-1", source=source, chat_id=chat_id)
    return (await store.create(new)).incident.id


async def test_totals_add_every_chat_up_by_status_and_source(store: IncidentStore) -> None:
    first = await create(store, chat_id=GROUP)
    await create(store, chat_id=OTHER_GROUP)
    await create(store)  # of no chat
    await create(store, source="склад", chat_id=GROUP)
    await store.change_status(first, Status.RESOLVED)

    totals = await store.totals()

    assert sorted(totals) == [
        (Status.OPEN, "monitoring", 2),
        (Status.OPEN, "склад", 1),
        (Status.RESOLVED, "monitoring", 1),
    ]


async def test_totals_keep_a_status_emptied_at_zero(store: IncidentStore) -> None:
    incident = await create(store)
    await store.change_status(incident, Status.CLOSED)

    assert sorted(await store.totals()) == [
        (Status.CLOSED, "monitoring", 1),
        (Status.OPEN, "monitoring", 0),
    ]


async def test_outbox_counts_every_state_and_finds_the_oldest_pending(
    store: IncidentStore,
) -> None:
    outbox = store.outbox
    assert await outbox.count_by_state() == dict.fromkeys(DeliveryState, 0)
    assert await outbox.oldest_pending_since() is None
    for _ in range(3):
        await store.create(NewIncident(description="Disk full"), card=CardRequest(GROUP))
    first, second, third = await outbox.due()
    await outbox.mark_sent([first.delivery.id])
    await outbox.mark_folded([second.delivery.id])

    counted = await outbox.count_by_state()
    oldest = await outbox.oldest_pending_since()

    assert counted == {
        DeliveryState.PENDING: 1,
        DeliveryState.SENT: 1,
        DeliveryState.FOLDED: 1,
        DeliveryState.FAILED: 0,
    }
    assert oldest == third.delivery.created_at


async def test_committed_changes_are_told_in_order_without_no_ops_or_refusals(
    store: IncidentStore, told: list[list[StatusChange]]
) -> None:
    incident = await create(store)
    await store.change_status(incident, Status.IN_PROGRESS)
    await store.change_status(incident, Status.IN_PROGRESS)  # already: nothing to tell
    await store.change_status(incident, Status.CLOSED)
    with pytest.raises(TransitionNotAllowedError):
        await store.change_status(incident, Status.OPEN)

    changes = [change for commit in told for change in commit]
    assert [(change.previous, change.incident.status) for change in changes] == [
        (Status.OPEN, Status.IN_PROGRESS),
        (Status.IN_PROGRESS, Status.CLOSED),
    ]
    assert all(change.incident.updated_at >= change.incident.created_at for change in changes)


async def test_changes_made_together_are_each_told(
    store: IncidentStore, told: list[list[StatusChange]]
) -> None:
    incident = await create(store)

    await asyncio.gather(
        store.change_status(incident, Status.IN_PROGRESS),
        store.change_status(incident, Status.RESOLVED),
    )

    changes = [change for commit in told for change in commit]
    assert [(change.previous, change.incident.status) for change in changes] == [
        (Status.OPEN, Status.IN_PROGRESS),
        (Status.IN_PROGRESS, Status.RESOLVED),
    ]


async def test_observer_that_fails_does_not_undo_the_change(
    engine: AsyncEngine, fast_paths: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(changes: Sequence[StatusChange]) -> None:
        raise RuntimeError("observer bug")

    store = IncidentStore(
        create_session_factory(engine), on_status_changed=fail, fast_paths=fast_paths
    )
    incident = await create(store)

    with caplog.at_level(logging.ERROR):
        change = await store.change_status(incident, Status.RESOLVED)

    assert change.changed
    assert (await store.get(incident)).status == Status.RESOLVED
    assert "The status change observer failed" in caplog.text
