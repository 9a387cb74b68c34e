"""One active instance among those sharing a database: the lease and the election."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from storage.leadership import Leadership, LeaseStore
from storage.store import IncidentStore

LONG = timedelta(seconds=60)


def lease(store: IncidentStore, holder: str, duration: timedelta = LONG) -> LeaseStore:
    return store.lease("telegram", holder, duration)


async def test_one_holder_at_a_time_and_renewal_keeps_it(store: IncidentStore) -> None:
    first, second = lease(store, "a"), lease(store, "b")

    taken = await first.acquire()
    refused = await second.acquire()
    renewed = await first.acquire()

    assert taken is not None and renewed is not None and renewed > taken
    assert refused is None
    assert await second.current_holder() == "a"


async def test_of_many_taking_at_once_exactly_one_wins(store: IncidentStore) -> None:
    outcomes = await asyncio.gather(*(lease(store, f"i{n}").acquire() for n in range(10)))

    assert sum(outcome is not None for outcome in outcomes) == 1


async def test_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(
    store: IncidentStore,
) -> None:
    brief = lease(store, "a", timedelta(milliseconds=50))
    other = lease(store, "b")
    assert await brief.acquire() is not None

    await asyncio.sleep(0.1)

    assert await other.acquire() is not None
    assert await brief.acquire() is None


async def test_released_lease_is_free_at_once(store: IncidentStore) -> None:
    first, second = lease(store, "a"), lease(store, "b")
    await first.acquire()

    await first.release()

    assert await second.acquire() is not None


class Recorder:
    """What a test instance does while it leads."""

    def __init__(self) -> None:
        self.leading = asyncio.Event()
        self.terms = 0

    @asynccontextmanager
    async def lead(self) -> AsyncIterator[None]:
        self.terms += 1
        self.leading.set()
        try:
            yield
        finally:
            self.leading.clear()


async def test_standby_takes_over_when_the_active_instance_stops(store: IncidentStore) -> None:
    first = Leadership(lease(store, "a"), check_every=0.05, renew_every=0.05)
    second = Leadership(lease(store, "b"), check_every=0.05, renew_every=0.05)
    one, two = Recorder(), Recorder()
    running_first = asyncio.create_task(first.run(one.lead))
    await asyncio.wait_for(one.leading.wait(), 5)
    running_second = asyncio.create_task(second.run(two.lead))
    await asyncio.sleep(0.2)  # several of the standby's tries

    assert (first.role, second.role, two.terms) == ("active", "standby", 0)
    first.stop()
    await running_first
    await asyncio.wait_for(two.leading.wait(), 5)
    second.stop()
    await running_second

    assert (one.terms, two.terms) == (1, 1)


async def test_active_instance_that_loses_its_lease_stops_leading(store: IncidentStore) -> None:
    # It renews less often than its lease lasts: the lease expires between renewals.
    brief = timedelta(milliseconds=100)
    first = Leadership(lease(store, "a", brief), check_every=0.05, renew_every=0.3)
    one = Recorder()
    running = asyncio.create_task(first.run(one.lead))
    await asyncio.wait_for(one.leading.wait(), 5)
    await asyncio.sleep(0.15)

    assert await lease(store, "b").acquire() is not None
    for _ in range(100):  # its next renewal is refused
        if not one.leading.is_set():
            break
        await asyncio.sleep(0.05)
    role = first.role
    first.stop()
    await running

    assert (one.terms, role) == (1, "standby")


async def test_lease_not_renewed_in_time_is_no_longer_held(store: IncidentStore) -> None:
    # Renewing less often than the lease lasts, as an instance paused too long would.
    brief = timedelta(milliseconds=100)
    first = Leadership(lease(store, "a", brief), check_every=0.05, renew_every=10.0)
    one = Recorder()
    running = asyncio.create_task(first.run(one.lead))
    await asyncio.wait_for(one.leading.wait(), 5)
    held_at_first = first.holds_lease()

    await asyncio.sleep(0.15)
    held_later = first.holds_lease()
    first.stop()
    await running

    assert (held_at_first, held_later) == (True, False)
