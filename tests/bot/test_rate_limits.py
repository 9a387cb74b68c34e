"""The limiter on its own, on a hand-turned clock: windows, reserve, bans, waiting."""

from __future__ import annotations

import pytest

from bot.rate_limits import ChatFlooded, Limits, Rate, RateLimiter

GROUP = -1_001
OTHER_GROUP = -1_002
PERSON = 42


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_limiter(clock: Clock, **limits: object) -> RateLimiter:
    values: dict[str, object] = {
        "group": Rate(3, 10.0),
        "private": Rate(1, 1.0),
        "overall": Rate(30, 1.0),
        "reserve_for_replies": 0,
    }
    values.update(limits)
    return RateLimiter(Limits(**values), clock=clock)  # type: ignore[arg-type]


def send(limiter: RateLimiter, chat_id: int, *, reserve: int = 0) -> bool:
    slot = limiter.try_acquire(chat_id, reserve=reserve)
    if slot is None:
        return False
    with slot:
        pass
    return True


def test_try_acquire_within_group_window_then_refuses(clock: Clock) -> None:
    limiter = make_limiter(clock)

    assert [send(limiter, GROUP) for _ in range(4)] == [True, True, True, False]
    assert limiter.delay(GROUP) == pytest.approx(10.0)
    assert send(limiter, OTHER_GROUP)
    clock.now += 10.0
    assert send(limiter, GROUP)


def test_try_acquire_private_chat_once_a_second(clock: Clock) -> None:
    limiter = make_limiter(clock)

    assert [send(limiter, PERSON) for _ in range(2)] == [True, False]
    clock.now += 0.5
    assert not send(limiter, PERSON)
    clock.now += 0.5
    assert send(limiter, PERSON)


def test_try_acquire_overall_limit_spans_chats(clock: Clock) -> None:
    limiter = make_limiter(clock, overall=Rate(2, 1.0))

    assert [send(limiter, chat) for chat in (-1, -2, -3)] == [True, True, False]
    assert limiter.delay(-4) == pytest.approx(1.0)


def test_window_counts_from_when_the_request_finished(clock: Clock) -> None:
    limiter = make_limiter(clock, group=Rate(1, 10.0))
    slot = limiter.try_acquire(GROUP)
    assert slot is not None

    with slot:
        clock.now += 4.0  # a slow request: Telegram may have counted it only now

    assert limiter.delay(GROUP) == pytest.approx(10.0)


def test_unfinished_request_keeps_its_place(clock: Clock) -> None:
    limiter = make_limiter(clock, group=Rate(1, 1.0))
    slot = limiter.try_acquire(GROUP)
    assert slot is not None

    clock.now += 5.0

    assert limiter.try_acquire(GROUP) is None
    slot.finish()
    assert limiter.delay(GROUP) == pytest.approx(1.0)


def test_reserve_leaves_room_for_direct_answers(clock: Clock) -> None:
    limiter = make_limiter(clock)

    assert [send(limiter, GROUP, reserve=1) for _ in range(3)] == [True, True, False]
    assert send(limiter, GROUP)  # a direct answer still gets the reserved one
    # One message a second is all a private chat has: nothing can be reserved there.
    assert send(limiter, PERSON, reserve=1)


def test_ban_holds_chat_until_retry_after(clock: Clock) -> None:
    limiter = make_limiter(clock)

    limiter.ban(GROUP, 3)

    assert limiter.delay(GROUP) == pytest.approx(3.0)
    assert not send(limiter, GROUP)
    assert send(limiter, OTHER_GROUP)
    clock.now += 3.0
    assert send(limiter, GROUP)


async def test_acquire_beyond_max_wait_raises_chat_flooded(clock: Clock) -> None:
    limiter = make_limiter(clock, group=Rate(1, 60.0))
    assert send(limiter, GROUP)

    with pytest.raises(ChatFlooded) as raised:
        await limiter.acquire(GROUP, max_wait=10.0)

    assert raised.value.delay == pytest.approx(60.0)


async def test_acquire_waits_for_free_slot() -> None:
    limiter = RateLimiter(Limits(private=Rate(1, 0.05)))
    assert send(limiter, PERSON)

    slot = await limiter.acquire(PERSON, max_wait=1.0)

    slot.finish()
    assert limiter.delay(PERSON) > 0
