"""`uv run python -m bench.failover [--database-url URL]`: a failover in the middle of a
burst of reports, measured.

Two `main.py` processes run with the same settings on one database (an empty one: a
PostgreSQL database, or by default a new SQLite file) and long-poll the Telegram
stand-in, which runs in this process and keeps Telegram's limits (20 messages a minute
per group, 30 a second overall; a call past them is answered 429). The first instance
is the active one, the second the standby. A burst of report messages arrives in one
group through getUpdates; once the active instance has confirmed half of it, it is
killed with SIGKILL while the rest of the burst is still arriving. Then the figures:
how long the standby took to take over, to poll and to send; whether every report was
stored exactly once; whether every incident was announced (its card, or a storm summary
counting it) exactly once; the most messages one chat got in any minute, and how many
calls Telegram refused.

The kill falls between two sends: once a storm summary has gone out (the sender then
holds the chat for a while) and while no outbox row is claimed for sending. A kill
between Telegram accepting a message and the record of it sends that message again
(delivery is at least once, `storage.outbox`); `--kill-anytime` kills as soon as half
the burst is confirmed, whatever the sender is doing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.load import request_once
from bench.processes import HOST, REPO_ROOT, Server, clean_environment, free_port
from storage.database import create_engine
from storage.models import Delivery, DeliveryKind, DeliveryState, Incident, utcnow
from tests.telegram_stub import RateLimits, TelegramStub

REPORTS = 300
CHUNK = 30
"""Reports arriving together (one getUpdates batch, most likely)..."""
CHUNK_EVERY = 0.1
"""... every this many seconds: a burst of 300 lasts about a second."""
REPORT = "[monitoring] Point {number} is not responding"
SUMMARY_HOLDS_CHAT = 5.0
"""A storm summary younger than this holds its chat still (the sender's hold is 10 s)."""
SETTLE_TIMEOUT = 60.0
"""How long, after the kill, everything may take to be stored and announced."""
KILL_TIMEOUT = 30.0
ELECTION_TIMEOUT = 30.0
CARD_TITLE = re.compile(r"^🔴 Incident #\d+ ")
SUMMARY_COUNT = re.compile(r"^Registered (\d+) incidents")


@dataclass(frozen=True)
class Figures:
    reports: int
    failover_seconds: float
    to_takeover: float
    """SIGKILL → the standby's /health says it is active."""
    to_first_poll: float | None
    """SIGKILL → the standby's first getUpdates."""
    to_first_message: float | None
    """SIGKILL → the first card or summary the standby sent."""
    polled_again: int
    """Updates the killed instance had received but not confirmed, polled again."""
    stored: int
    """Distinct reports stored."""
    stored_twice: int
    """Reports stored as more than one incident."""
    announced: int
    """Incidents announced in the chat: cards, and the incidents each summary counts."""
    unannounced: int
    """Incidents whose card was neither sent nor summed up."""
    messages_before_kill: int
    messages_after_kill: int
    max_per_chat_minute: int
    refused: int
    """Calls Telegram (the stand-in) refused with 429."""

    @property
    def lost(self) -> int:
        return self.reports - self.stored

    @property
    def announced_twice(self) -> int:
        """Announcements beyond one per stored incident (a card or summary sent again)."""
        return max(self.announced - (self.stored - self.unannounced), 0)

    def lines(self) -> list[str]:
        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.2f} s"

        return [
            f"reports in the burst              {self.reports}",
            f"FAILOVER_SECONDS                  {self.failover_seconds:g}",
            f"SIGKILL → standby active          {seconds(self.to_takeover)}",
            f"SIGKILL → its first getUpdates    {seconds(self.to_first_poll)}",
            f"SIGKILL → its first card/summary  {seconds(self.to_first_message)}",
            f"updates polled again              {self.polled_again}",
            f"reports lost                      {self.lost}",
            f"reports stored twice              {self.stored_twice}",
            f"incidents announced               {self.announced}",
            f"incidents announced twice         {self.announced_twice}",
            f"incidents never announced         {self.unannounced}",
            f"messages before / after the kill  "
            f"{self.messages_before_kill} / {self.messages_after_kill}",
            f"max messages per chat per minute  {self.max_per_chat_minute}",
            f"429s from Telegram                {self.refused}",
        ]


def _start_instance(name: str, workdir: Path, settings: dict[str, str]) -> Server:
    """`main.py` with these settings on top of an environment without any of its own."""
    port = free_port()
    env = clean_environment() | settings | {"HTTP_HOST": HOST, "HTTP_PORT": str(port)}
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "main.py")],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(name, process, port, log_path)


async def _role(instance: Server) -> str | None:
    try:
        status, health = await request_once(HOST, instance.port, "GET", "/health")
    except OSError:
        return None
    return str(health["bot"]) if status == 200 else None


async def _wait_until_active(instance: Server, *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while await _role(instance) != "active":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{instance.name} never took over:\n{instance.log_tail()}")
        await asyncio.sleep(0.02)


async def _roles(instances: list[Server]) -> tuple[Server, Server]:
    """(the active instance, the standby), once the election is over."""
    deadline = time.monotonic() + ELECTION_TIMEOUT
    while True:
        roles = [await _role(instance) for instance in instances]
        if sorted(map(str, roles)) == ["active", "standby"]:
            active = instances[roles.index("active")]
            return active, instances[roles.index("standby")]
        if time.monotonic() > deadline:
            raise RuntimeError(f"no election after {ELECTION_TIMEOUT:g} s: roles {roles}")
        await asyncio.sleep(0.02)


class _Run:
    """One failover: the stand-in, the two instances and a look into their database."""

    def __init__(self, stub: TelegramStub, database_url: str, workdir: Path) -> None:
        self.stub = stub
        self.engine = create_engine(database_url)
        self.database_url = database_url
        self.workdir = workdir
        self.chat = stub.supergroup("On-call")
        self.alice = stub.user("Alice")
        self.pushed: list[int] = []
        """Update ids of the reports pushed so far."""

    def settings(self, failover_seconds: float) -> dict[str, str]:
        return {
            "BOT_TOKEN": self.stub.token,
            "TELEGRAM_API_URL": self.stub.base_url,
            "DATABASE_URL": self.database_url,
            "ALLOWED_CHAT_IDS": str(self.chat.id),
            "FAILOVER_SECONDS": f"{failover_seconds:g}",
        }

    async def push_burst(self, reports: int) -> None:
        for start in range(1, reports + 1, CHUNK):
            for number in range(start, min(start + CHUNK, reports + 1)):
                await self.stub.send_user_message(
                    self.chat, self.alice, REPORT.format(number=number)
                )
                self.pushed.append(self.stub.pending_updates[-1]["update_id"])
            await asyncio.sleep(CHUNK_EVERY)

    async def half_confirmed(self, reports: int) -> None:
        while len(self.pushed) < reports // 2:  # noqa: ASYNC110 - the pusher is a plain task
            await asyncio.sleep(0.01)
        await self.stub.wait_confirmed(self.pushed[reports // 2 - 1], timeout=KILL_TIMEOUT)

    async def between_sends(self) -> bool:
        """Whether the active sender holds the chat after a summary and claims nothing."""
        now = utcnow()
        async with self.engine.connect() as connection:
            claimed = await connection.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.state == DeliveryState.PENDING, Delivery.claimed_until > now)
            )
            summed_up = await connection.scalar(
                select(func.max(Delivery.finished_at)).where(
                    Delivery.state == DeliveryState.FOLDED
                )
            )
        recent = summed_up is not None and now - summed_up < timedelta(seconds=SUMMARY_HOLDS_CHAT)
        return claimed == 0 and recent

    async def settled(self, reports: int) -> None:
        """Wait until every report is stored and nothing is left to announce."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            async with self.engine.connect() as connection:
                stored = await connection.scalar(
                    select(func.count(func.distinct(Incident.description)))
                )
                pending = await connection.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.state == DeliveryState.PENDING)
                )
            if stored == reports and pending == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"after {SETTLE_TIMEOUT:g} s: {stored} of {reports} reports stored,"
                    f" {pending} deliveries pending"
                )
            await asyncio.sleep(0.1)

    async def stored(self) -> tuple[int, int, int]:
        """(distinct reports stored, reports stored more than once, cards not done)."""
        async with self.engine.connect() as connection:
            copies = (
                await connection.execute(
                    select(func.count()).select_from(Incident).group_by(Incident.description)
                )
            ).scalars()
            counts = list(copies)
            undone = await connection.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(
                    Delivery.kind == DeliveryKind.CARD,
                    Delivery.state.not_in((DeliveryState.SENT, DeliveryState.FOLDED)),
                )
            )
        return len(counts), sum(count > 1 for count in counts), undone or 0

    def announced(self) -> int:
        """Incidents the chat was told about: one per card, a summary's count per summary."""
        total = 0
        for message in self.stub.sent_messages(self.chat):
            text = message.text or ""
            if CARD_TITLE.match(text):
                total += 1
            elif summary := SUMMARY_COUNT.match(text):
                total += int(summary.group(1))
        return total


async def run(
    database_url: str,
    workdir: Path,
    *,
    reports: int = REPORTS,
    failover_seconds: float = 15.0,
    kill_anytime: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> Figures:
    """One failover in the middle of a burst of `reports`, over an empty database."""
    async with TelegramStub() as stub:
        stub.enable_rate_limits(RateLimits())
        run = _Run(stub, database_url, workdir)
        instances: list[Server] = []
        try:
            settings = run.settings(failover_seconds)
            # Started together, as after a reboot: one of them wins the election.
            instances += [_start_instance(f"instance-{n}", workdir, settings) for n in (1, 2)]
            await asyncio.gather(*(instance.wait_ready("/health") for instance in instances))
            active, standby = await _roles(instances)
            if (await run.stored())[0]:
                raise RuntimeError("the database holds incidents already: give an empty one")
            progress(f"{active.name} is active, {standby.name} stands by; the burst begins")

            pushing = asyncio.create_task(run.push_burst(reports))
            await run.half_confirmed(reports)
            async with asyncio.timeout(KILL_TIMEOUT):
                while not kill_anytime and not await run.between_sends():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)  # the database has no event to wait on
            os.kill(active.process.pid, signal.SIGKILL)
            killed_at = stub.now()
            progress(f"killed {active.name}, {len(run.pushed)} reports pushed")
            await asyncio.to_thread(active.process.wait)
            await _wait_until_active(standby, seconds=failover_seconds * 3)
            to_takeover = stub.now() - killed_at
            await pushing
            await run.settled(reports)
            progress("everything stored and announced")

            polls = [call.at for call in stub.calls("getUpdates") if call.at > killed_at]
            received: dict[bool, set[int]] = {False: set(), True: set()}  # after the kill?
            for call in stub.calls("getUpdates"):
                if call.ok:
                    received[call.at > killed_at].update(u["update_id"] for u in call.result)
            sent = [message.sent_at for message in stub.sent_messages(run.chat)]
            after = [at for at in sent if at > killed_at]
            stored, stored_twice, unannounced = await run.stored()
            return Figures(
                reports=reports,
                failover_seconds=failover_seconds,
                to_takeover=to_takeover,
                to_first_poll=polls[0] - killed_at if polls else None,
                to_first_message=after[0] - killed_at if after else None,
                polled_again=len(received[False] & received[True]),
                stored=stored,
                stored_twice=stored_twice,
                announced=run.announced(),
                unannounced=unannounced,
                messages_before_kill=len(sent) - len(after),
                messages_after_kill=len(after),
                max_per_chat_minute=stub.max_in_window(60.0, chat_id=run.chat.id),
                refused=sum(not event.accepted for event in stub.rate_log),
            )
        finally:
            for instance in instances:
                instance.stop()
            await run.engine.dispose()


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.failover", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--database-url",
        help="an empty database for the two instances (default: a new SQLite file)",
    )
    parser.add_argument("--reports", type=int, default=REPORTS)
    parser.add_argument("--failover-seconds", type=float, default=15.0)
    parser.add_argument(
        "--kill-anytime",
        action="store_true",
        help="kill once half the burst is confirmed, even while a message is on its way",
    )
    return parser.parse_args(argv)


async def main(argv: list[str]) -> int:
    options = parse_arguments(argv)
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as directory:
        workdir = Path(directory)
        database_url = options.database_url or f"sqlite+aiosqlite:///{workdir / 'incidents.db'}"
        figures = await run(
            database_url,
            workdir,
            reports=options.reports,
            failover_seconds=options.failover_seconds,
            kill_anytime=options.kill_anytime,
            progress=lambda message: print(f"  … {message}", file=sys.stderr, flush=True),
        )
    print("\n".join(figures.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
