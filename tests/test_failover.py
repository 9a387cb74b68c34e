"""Two main.py processes on one PostgreSQL database: the active one is killed (SIGKILL) in
the middle of a burst of 300 reports, and the standby carries on as if nothing happened.

The run itself is `bench.failover`'s, which prints these figures for a person to read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import failover

pytestmark = pytest.mark.postgresql_only

FAILOVER_SECONDS = 3.0
ELECTION_SLACK = 1.0
"""Beyond FAILOVER_SECONDS, for a loaded machine: scheduling, and /health polled in steps."""


async def test_sigkill_of_the_active_instance_mid_burst_loses_and_repeats_nothing(
    database_url: str, tmp_path: Path
) -> None:
    figures = await failover.run(database_url, tmp_path, failover_seconds=FAILOVER_SECONDS)
    report = "\n".join(figures.lines())

    assert (figures.lost, figures.stored_twice) == (0, 0), report
    assert figures.announced == figures.reports, report
    assert (figures.announced_twice, figures.unannounced) == (0, 0), report
    assert figures.messages_before_kill > 0 and figures.messages_after_kill > 0, report
    assert figures.refused == 0, report
    assert figures.max_per_chat_minute <= 20, report
    assert figures.to_takeover <= FAILOVER_SECONDS + ELECTION_SLACK, report
