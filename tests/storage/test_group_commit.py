"""Group commit: concurrent writes share transactions, each keeping its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.batching import GroupCommit
from storage.rules import Status
from storage.store import (
    CardRequest,
    IncidentStore,
    NewIncident,
    StatusChangedMeanwhileError,
    TransitionNotAllowedError,
)
from tests.storage.counts import counts_match_incidents


class Recorder:
    """A write that records its batches; "bad" makes a batch fail, and fails alone."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def write(self, batch: Sequence[str]) -> list[str | Exception]:
        self.batches.append(list(batch))
        self.writing.set()
        await self.release.wait()
        if "bad" in batch:
            raise ValueError("bad operation")
        return [operation.upper() for operation in batch]


async def test_operations_submitted_during_a_write_form_the_next_batch() -> None:
    recorder = Recorder()
    commit: GroupCommit[str, str] = GroupCommit(recorder.write, name="test")

    first = asyncio.create_task(commit.submit("a"))
    await recorder.writing.wait()  # "a" is being written alone: nothing came with it
    later = [asyncio.create_task(commit.submit(name)) for name in ("b", "c", "d")]
    await asyncio.sleep(0)
    recorder.release.set()

    assert await asyncio.gather(first, *later) == ["A", "B", "C", "D"]
    assert recorder.batches == [["a"], ["b", "c", "d"]]


async def test_a_burst_submitted_together_is_one_batch() -> None:
    recorder = Recorder()
    recorder.release.set()
    commit: GroupCommit[str, str] = GroupCommit(recorder.write, name="test")

    results = await asyncio.gather(*(commit.submit(str(n)) for n in range(50)))

    assert results == [str(n) for n in range(50)]
    assert recorder.batches == [[str(n) for n in range(50)]]


async def test_a_failing_operation_fails_alone() -> None:
    recorder = Recorder()
    recorder.release.set()
    commit: GroupCommit[str, str] = GroupCommit(recorder.write, name="test")

    results = await asyncio.gather(
        *(commit.submit(name) for name in ("a", "bad", "c")), return_exceptions=True
    )

    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], ValueError)
    assert recorder.batches == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


async def test_a_submitter_that_gives_up_leaves_its_operation_written() -> None:
    recorder = Recorder()
    commit: GroupCommit[str, str] = GroupCommit(recorder.write, name="test")

    impatient = asyncio.create_task(commit.submit("a"))
    await asyncio.sleep(0)
    impatient.cancel()
    settled = asyncio.create_task(commit.settled())
    await asyncio.sleep(0)
    assert not settled.done()
    recorder.release.set()
    await settled

    assert impatient.cancelled()
    assert recorder.batches == [["a"]]


async def test_concurrent_changes_of_one_incident_are_judged_in_order(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    incident = (await store.create(NewIncident("Самокат #42 не отвечает"))).incident

    results = await asyncio.gather(
        store.change_status(incident.id, Status.IN_PROGRESS, changed_by="ann"),
        store.change_status(incident.id, Status.RESOLVED, changed_by="bob"),
        store.change_status(incident.id, Status.OPEN),
        store.change_status(incident.id, Status.IN_PROGRESS, expected=Status.IN_PROGRESS),
        store.change_status(incident.id, Status.CLOSED, changed_by="cat"),
        return_exceptions=True,
    )

    took, resolved, refused, stale, closed = results
    assert not isinstance(took, BaseException) and not isinstance(resolved, BaseException)
    assert (took.previous, took.incident.status, took.incident.updated_by) == (
        Status.OPEN,
        Status.IN_PROGRESS,
        "ann",
    )
    assert (resolved.previous, resolved.incident.status) == (Status.IN_PROGRESS, Status.RESOLVED)
    assert isinstance(refused, TransitionNotAllowedError) and refused.current == Status.RESOLVED
    assert isinstance(stale, StatusChangedMeanwhileError)
    assert not isinstance(closed, BaseException) and closed.previous == Status.RESOLVED
    stored = await store.get(incident.id)
    assert (stored.status, stored.updated_by) == (Status.CLOSED, "cat")
    assert await counts_match_incidents(engine)


async def test_concurrent_creations_get_their_own_incidents_and_one_card_each(
    store: IncidentStore, engine: AsyncEngine
) -> None:
    reports = [
        NewIncident(f"Точка {n} не отвечает", source="monitoring", chat_id=-100, message_id=n)
        for n in range(30)
    ]
    redelivered = reports[:10]  # the same messages again, in the same burst
    card = CardRequest(chat_id=-100)

    results = await asyncio.gather(
        *(store.create(report, card=card) for report in [*reports, *redelivered])
    )

    for report, result in zip([*reports, *redelivered], results, strict=True):
        assert (result.incident.chat_id, result.incident.message_id) == (
            report.chat_id,
            report.message_id,
        )
        assert result.incident.description == report.description
    assert sum(result.created for result in results) == 30
    assert {r.incident.id for r in results[30:]} == {r.incident.id for r in results[:10]}
    async with engine.connect() as connection:
        cards = await connection.scalar(text("SELECT count(*) FROM outbox"))
    assert cards == 30
    assert await counts_match_incidents(engine)


async def test_a_change_sees_the_creations_queued_before_it(store: IncidentStore) -> None:
    # The first creation is being written when the second is queued, and then a change
    # of the second: the change must not be judged before the second is stored.
    first = asyncio.create_task(store.create(NewIncident("Точка 1 не отвечает")))
    for _ in range(10):  # until the first batch is waiting on the database
        await asyncio.sleep(0)
    second = asyncio.create_task(store.create(NewIncident("Точка 2 не отвечает")))
    change = asyncio.create_task(store.change_status(2, Status.RESOLVED))

    await first
    created, changed = await asyncio.gather(second, change)

    assert created.incident.id == 2
    assert changed.changed and changed.incident.status == Status.RESOLVED
