"""In a storm, the sender lets deliveries gather before it looks at the outbox again."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.pipeline import UpdatePipeline
from bot.rate_limits import Limits, Rate
from tests.bot.conftest import TEST_DELIVERY, BotLauncher, all_handled
from tests.telegram_stub import TelegramStub


async def test_storm_of_reports_costs_the_sender_one_look(
    stub: TelegramStub, engine: AsyncEngine, launch_bot: BotLauncher, pipeline: UpdatePipeline
) -> None:
    chat, monitoring = stub.supergroup(), stub.user("Monitoring")
    looks: list[str] = []

    def count_looks(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM outbox" in statement:
            looks.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count_looks)
    # Long enough that the whole storm is stored before the sender looks again, and no
    # look at all unless woken.
    patient = replace(TEST_DELIVERY, gather=60.0, idle_wait=60.0)
    # One message a minute for the sender: the group is busy after the first one.
    async with launch_bot(delivery=patient, limits=Limits(group=Rate(2, 60.0))):
        # At start-up it looks for pending deliveries, and when it will next have some.
        await stub.wait_for(lambda: len(looks) == 2, what="the sender's first looks")
        looked_when_idle = len(looks)
        for n in range(1, 51):
            await stub.send_user_message(chat, monitoring, f"[monitoring] Scooter #{n} is down")
        await all_handled(stub, pipeline)
        looked_during_storm = len(looks) - looked_when_idle
    event.remove(engine.sync_engine, "before_cursor_execute", count_looks)

    # It looks to send the first message and finds the group busy after it; woken by the
    # reports that follow, it lets them gather instead of looking twice for each of 50.
    assert looked_during_storm <= 4
