"""The store against a real SQLite file: rules, idempotency, races, listing."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC
from typing import Any

import pytest
from sqlalchemy import Select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.database import create_engine, create_session_factory
from storage.rules import TRANSITIONS, InvalidIncidentError, Status
from storage.store import (
    _INSERTED,
    IncidentNotFoundError,
    IncidentStore,
    NewIncident,
    StatusChangedMeanwhileError,
    TransitionNotAllowedError,
    _incident_values,
)
from tests.storage.counts import counts_match_incidents

# A route from `open` to each status, through allowed transitions only.
PATH_FROM_OPEN = {
    Status.OPEN: (),
    Status.IN_PROGRESS: (Status.IN_PROGRESS,),
    Status.RESOLVED: (Status.RESOLVED,),
    Status.CLOSED: (Status.CLOSED,),
}


async def _incident_in(store: IncidentStore, status: Status) -> int:
    incident = (await store.create(NewIncident("Самокат #42 не отвечает"))).incident
    for step in PATH_FROM_OPEN[status]:
        await store.change_status(incident.id, step)
    return incident.id


@pytest.mark.parametrize(("current", "new"), list(itertools.product(Status, Status)))
async def test_change_status_follows_transition_table(
    store: IncidentStore, current: Status, new: Status
) -> None:
    incident_id = await _incident_in(store, current)

    if new == current:
        change = await store.change_status(incident_id, new)
        assert (change.changed, change.previous, change.incident.status) == (False, new, new)
    elif new in TRANSITIONS[current]:
        change = await store.change_status(incident_id, new, changed_by="alice")
        assert (change.changed, change.previous, change.incident.status) == (True, current, new)
        assert change.incident.updated_by == "alice"
    else:
        with pytest.raises(TransitionNotAllowedError) as refused:
            await store.change_status(incident_id, new)
        assert (refused.value.current, refused.value.requested) == (current, new)
        assert refused.value.allowed == TRANSITIONS[current]
        assert (await store.get(incident_id)).status == current


async def test_change_status_same_status_keeps_updated_at(store: IncidentStore) -> None:
    incident_id = await _incident_in(store, Status.IN_PROGRESS)
    before = await store.get(incident_id)

    change = await store.change_status(incident_id, Status.IN_PROGRESS, changed_by="bob")

    assert not change.changed
    assert change.incident.updated_at == before.updated_at
    assert change.incident.updated_by == before.updated_by


async def test_change_status_missing_incident_raises_not_found(store: IncidentStore) -> None:
    with pytest.raises(IncidentNotFoundError, match="Incident 404 not found"):
        await store.change_status(404, Status.CLOSED)


async def test_change_status_concurrent_same_target_has_one_winner(store: IncidentStore) -> None:
    incident_id = await _incident_in(store, Status.OPEN)

    changes = await asyncio.gather(
        *(store.change_status(incident_id, Status.IN_PROGRESS) for _ in range(50))
    )

    assert sum(change.changed for change in changes) == 1
    assert all(change.incident.status == Status.IN_PROGRESS for change in changes)


async def test_change_status_racing_presses_on_one_card_have_one_winner(
    store: IncidentStore,
) -> None:
    # Ten people press different buttons on the same `open` card at the same moment.
    incident_id = await _incident_in(store, Status.OPEN)
    targets = [Status.IN_PROGRESS, Status.RESOLVED, Status.CLOSED] * 10

    results = await asyncio.gather(
        *(store.change_status(incident_id, t, expected=Status.OPEN) for t in targets),
        return_exceptions=True,
    )

    winners = [r for r in results if not isinstance(r, BaseException) and r.changed]
    assert len(winners) == 1
    final = (await store.get(incident_id)).status
    assert winners[0].incident.status == final
    losers = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(loser, StatusChangedMeanwhileError) for loser in losers)
    # Presses for the winning target itself are no-ops, not errors.
    assert len(losers) == len(targets) - targets.count(final)


async def test_change_status_from_two_engines_at_once_never_locks(
    engine: AsyncEngine, database_url: str, fast_paths: bool
) -> None:
    # The bot and the HTTP API (or a second process) writing the same file at once.
    second_engine = create_engine(database_url)
    try:
        stores = [
            IncidentStore(create_session_factory(engine), fast_paths=fast_paths),
            IncidentStore(create_session_factory(second_engine), fast_paths=fast_paths),
        ]
        created = await asyncio.gather(
            *(stores[n % 2].create(NewIncident(f"report {n}")) for n in range(200))
        )
        ids = [result.incident.id for result in created]
        await asyncio.gather(
            *(stores[n % 2].change_status(ids[n], Status.RESOLVED) for n in range(200))
        )
        page = await stores[0].list(status=Status.RESOLVED, limit=500)
    finally:
        await second_engine.dispose()

    assert len(set(ids)) == 200
    assert page.total == 200


async def test_two_processes_changing_the_same_incidents_never_deadlock(
    engine: AsyncEngine, database_url: str, caplog: pytest.LogCaptureFixture, fast_paths: bool
) -> None:
    # Two instances, each with a batch of changes to the same incidents, asked for in
    # opposite orders: rows locked in the order asked would wait for each other.
    second_engine = create_engine(database_url)
    try:
        first = IncidentStore(create_session_factory(engine), fast_paths=fast_paths)
        second = IncidentStore(create_session_factory(second_engine), fast_paths=fast_paths)
        created = await asyncio.gather(
            *(first.create(NewIncident(f"report {n}")) for n in range(30))
        )
        ids = [result.incident.id for result in created]
        for status in [Status.IN_PROGRESS, Status.RESOLVED] * 3:
            results = await asyncio.gather(
                *(first.change_status(id_, status) for id_ in ids),
                *(second.change_status(id_, status) for id_ in reversed(ids)),
                return_exceptions=True,
            )
            assert not [r for r in results if isinstance(r, BaseException)], results
    finally:
        await second_engine.dispose()

    assert "deadlock" not in caplog.text
    assert "failed" not in caplog.text
    assert await counts_match_incidents(engine)


async def test_change_status_is_judged_again_when_another_process_moved_it_meanwhile(
    store: IncidentStore,
    engine: AsyncEngine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    incident = (await store.create(NewIncident("Точка 3 не отвечает"))).incident
    statements = store._statements
    run_in_transaction = statements.all_in
    reads_of_the_batch = 0

    async def another_process_closes_it_after_the_first_read(
        connection: AsyncConnection, statement: Any, values: Any
    ) -> list[tuple[Any, ...]]:
        # Between the batch's read and its compare-and-set UPDATE, once: what a second
        # process (or a second instance of the service) may do at any time.
        nonlocal reads_of_the_batch
        rows = await run_in_transaction(connection, statement, values)
        if isinstance(statement, Select):
            reads_of_the_batch += 1
            if reads_of_the_batch == 1:
                await _close_as_another_process(database_url, incident.id)
        return rows

    monkeypatch.setattr(statements, "all_in", another_process_closes_it_after_the_first_read)

    with pytest.raises(TransitionNotAllowedError) as refused:
        await store.change_status(incident.id, Status.IN_PROGRESS)

    assert reads_of_the_batch == 2
    assert refused.value.current is Status.CLOSED
    assert (await store.get(incident.id)).status is Status.CLOSED
    assert await counts_match_incidents(engine)


async def _close_as_another_process(database_url: str, incident_id: int) -> None:
    other = create_engine(database_url)
    try:
        async with other.begin() as connection:
            await connection.execute(
                text("UPDATE incidents SET status = 'closed' WHERE id = :id"), {"id": incident_id}
            )
            await connection.execute(
                text(
                    "UPDATE incident_counts SET total = total - 1"
                    " WHERE chat_id = 0 AND status = 'open' AND source = 'operator'"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO incident_counts (chat_id, status, source, total)"
                    " VALUES (0, 'closed', 'operator', 1) ON CONFLICT (chat_id, status, source)"
                    " DO UPDATE SET total = incident_counts.total + 1"
                )
            )
    finally:
        await other.dispose()


def test_a_creations_insert_writes_every_value_it_carries() -> None:
    # Each row's values are bound by name into the INSERT; one it did not name would be
    # dropped without a word.
    values = _incident_values(NewIncident("Точка не отвечает"))

    assert {*values, "created_at", "updated_at"} == set(_INSERTED)


async def test_create_a_burst_of_any_size_stores_each_report_once_in_order(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    # 76 reports and a redelivered one: one transaction of 77 rows, written as INSERTs of
    # a few fixed sizes (64 + 8 + 4 + 1).
    reports = [
        NewIncident(f"Самокат #{n} не отвечает", chat_id=-100, message_id=n) for n in range(76)
    ]
    # Report 3 seen again, in a later INSERT than its first time.
    submitted = [*reports[:70], reports[3], *reports[70:]]

    created = await asyncio.gather(*(store.create(report) for report in submitted))

    assert [c.incident.description for c in created] == [r.description for r in submitted]
    assert [c.created for c in created] == [True] * 70 + [False] + [True] * 6
    assert created[70].incident == created[3].incident
    ids = [c.incident.id for c in created if c.created]
    assert ids == sorted(ids)
    assert len(set(ids)) == 76
    assert (await store.list(limit=200)).total == 76
    assert await counts_match_incidents(engine)


async def test_create_same_message_twice_stores_one_incident(store: IncidentStore) -> None:
    report = NewIncident("Точка не отвечает", source="monitoring", chat_id=-100, message_id=7)

    first = await store.create(report)
    again = await store.create(report)

    assert first.created and not again.created
    assert again.incident.id == first.incident.id
    assert (await store.list()).total == 1


async def test_create_concurrent_same_idempotency_key_stores_one(store: IncidentStore) -> None:
    request = NewIncident("report not uploaded", idempotency_key="retry-1")

    results = await asyncio.gather(*(store.create(request) for _ in range(20)))

    assert sum(result.created for result in results) == 1
    assert len({result.incident.id for result in results}) == 1


async def test_create_normalizes_source_and_description(store: IncidentStore) -> None:
    created = await store.create(NewIncident("  line one\nline two  ", source=" Склад "))

    assert created.incident.source == "склад"
    assert created.incident.description == "line one\nline two"
    assert created.incident.status == Status.OPEN
    assert created.incident.created_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("description", "source"),
    [("   ", "operator"), ("x" * 4097, "operator"), ("ok", "two words"), ("ok", "x" * 33)],
)
async def test_create_invalid_input_is_refused(
    store: IncidentStore, description: str, source: str
) -> None:
    with pytest.raises(InvalidIncidentError):
        await store.create(NewIncident(description, source=source))
    assert (await store.list()).total == 0


async def test_get_after_reopen_returns_aware_utc_times(database_url: str) -> None:
    from storage.database import migrate

    engine = create_engine(database_url)
    await migrate(engine)
    incident_id = (
        await IncidentStore(create_session_factory(engine)).create(NewIncident("a"))
    ).incident.id
    await engine.dispose()

    engine = create_engine(database_url)
    try:
        incident = await IncidentStore(create_session_factory(engine)).get(incident_id)
    finally:
        await engine.dispose()

    assert incident.created_at.tzinfo is UTC
    assert incident.updated_at >= incident.created_at


async def test_list_filters_newest_first_with_total(store: IncidentStore) -> None:
    for n in range(7):
        source = "monitoring" if n % 2 else "operator"
        await store.create(NewIncident(f"incident {n}", source=source))
    await store.change_status(1, Status.CLOSED)

    everything = await store.list(limit=3)
    monitoring = await store.list(source="Monitoring")
    open_operator = await store.list(status=Status.OPEN, source="operator")
    deep = await store.list(limit=3, offset=6)

    assert [i.description for i in everything.items] == ["incident 6", "incident 5", "incident 4"]
    assert everything.total == 7
    assert [i.id for i in monitoring.items] == [6, 4, 2]
    assert [i.id for i in open_operator.items] == [7, 5, 3]
    assert open_operator.total == 3
    assert [i.id for i in deep.items] == [1]


async def test_update_description_follows_message_edit(store: IncidentStore) -> None:
    await store.create(NewIncident("typo", chat_id=-5, message_id=9))

    edited = await store.update_description(-5, 9, "  fixed text ")
    unknown = await store.update_description(-5, 10, "nothing")

    assert edited is not None and edited.description == "fixed text"
    assert unknown is None


async def test_find_by_message_matches_report_and_card(store: IncidentStore) -> None:
    incident = (await store.create(NewIncident("a", chat_id=-5, message_id=9))).incident
    await store.outbox.mark_sent([], card=(incident.id, -5, 10))

    by_report = await store.find_by_message(-5, 9)
    by_card = await store.find_by_message(-5, 10)

    assert by_report is not None and by_report.id == incident.id
    assert by_card is not None and by_card.id == incident.id
    assert await store.find_by_message(-5, 11) is None


@pytest.mark.parametrize("incident_id", [0, -1, 2**63, 10**30])
async def test_id_no_incident_can_have_is_not_found_and_fails_no_other_change(
    store: IncidentStore, incident_id: int
) -> None:
    created = await store.create(NewIncident(description="Point 7 down"))

    with pytest.raises(IncidentNotFoundError):
        await store.get(incident_id)
    outcomes = await asyncio.gather(
        store.change_status(incident_id, Status.CLOSED),
        store.change_status(created.incident.id, Status.RESOLVED),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], IncidentNotFoundError)
    assert not isinstance(outcomes[1], BaseException)
    assert outcomes[1].incident.status == Status.RESOLVED
