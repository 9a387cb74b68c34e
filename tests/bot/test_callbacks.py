"""Callback data: compact, round-tripping, and refusing what the bot never sent."""

from __future__ import annotations

import pytest

from bot.callbacks import ALL_STATUSES, STATUS_CODES, ListPage, StatusButton
from storage.rules import Status

BIGGEST_ID = 2**63 - 1


def test_status_codes_are_unique_and_distinct_from_all() -> None:
    codes = list(STATUS_CODES.values())

    assert set(STATUS_CODES) == set(Status)
    assert len(set(codes)) == len(codes)
    assert ALL_STATUSES not in codes


@pytest.mark.parametrize("seen", list(Status))
@pytest.mark.parametrize("target", list(Status))
def test_status_button_round_trips_far_under_limit(seen: Status, target: Status) -> None:
    packed = StatusButton.for_change(BIGGEST_ID, seen, target).pack()
    unpacked = StatusButton.unpack(packed)

    assert len(packed.encode()) <= 32
    assert (unpacked.incident, unpacked.seen_status, unpacked.target) == (
        BIGGEST_ID,
        seen,
        target,
    )


@pytest.mark.parametrize("status", [None, *Status])
def test_list_page_round_trips_far_under_limit(status: Status | None) -> None:
    packed = ListPage.for_page(status, 10**9).pack()
    unpacked = ListPage.unpack(packed)

    assert len(packed.encode()) <= 32
    assert (unpacked.status_filter, unpacked.page) == (status, 10**9)


def test_list_page_with_keys_round_trips_within_limit() -> None:
    for keys in ({"before": BIGGEST_ID}, {"after": BIGGEST_ID}, {}):
        packed = ListPage.for_page(Status.IN_PROGRESS, 10**9, **keys).pack()
        unpacked = ListPage.unpack(packed)

        assert len(packed.encode()) <= 64
        assert (unpacked.page, unpacked.before, unpacked.after) == (
            10**9,
            keys.get("before"),
            keys.get("after"),
        )


@pytest.mark.parametrize("data", ["s:17:x:i", "s:17:o", "s:abc:o:i", "l:z:1", "x:1:o:i"])
def test_unpack_rejects_data_the_bot_never_sent(data: str) -> None:
    factory = ListPage if data.startswith("l") else StatusButton
    with pytest.raises((TypeError, ValueError)):
        factory.unpack(data)
