"""Group commit: writes submitted while another batch is being written share a transaction.

Through async SQLAlchemy and aiosqlite a statement costs about the same for one row as for
a hundred (it is several round trips to the driver's thread), and so does a commit.
Writing each request's change on its own makes that cost per request; writing what has
gathered meanwhile as one batch, with one statement per table, makes it per batch.
Nothing waits on a timer: a batch is written once the event loop has gone a few turns
without a new submission (microseconds for a lone write), and it holds whatever arrived
meanwhile and while the batch before it was written, so batches grow with the load and
only with it.

Every submitter still gets its own result or its own error, after the batch's commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

Operation = TypeVar("Operation")
Outcome = TypeVar("Outcome")

MAX_BATCH = 500
"""At most this many operations per transaction (SQLite's limit on bound variables)."""

GATHER_TURNS = 3
"""Turns of the event loop without a new submission after which a batch is written."""


class GroupCommit(Generic[Operation, Outcome]):
    """Runs submitted operations in batches, one batch at a time, in submission order.

    `write` gets a batch and returns one outcome per operation: a result, or the exception
    that operation's submitter should get. If `write` itself raises, the batch is retried
    one operation at a time, so one bad operation fails alone; unless `fails_all(error)`
    says the error is the database's (locked, full, gone), not an operation's: then every
    submitter gets that error at once, rather than each waiting for it again in turn.

    With `batching=False` every operation is written on its own, in the same order and
    through the same `write`: the plain path, which the store's contract tests run too.
    """

    def __init__(
        self,
        write: Callable[[Sequence[Operation]], Awaitable[Sequence[Outcome | Exception]]],
        *,
        name: str,
        fails_all: Callable[[Exception], bool] | None = None,
        batching: bool = True,
    ) -> None:
        self._write = write
        self._max_batch = MAX_BATCH if batching else 1
        self._batching = batching
        self._name = name
        self._fails_all = fails_all
        self._queue: list[tuple[Operation, asyncio.Future[Outcome]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._last: asyncio.Future[Outcome] | None = None

    async def submit(
        self, operation: Operation, *, on_queued: Callable[[], None] | None = None
    ) -> Outcome:
        """Queue `operation`; return its outcome once its batch is committed.

        `on_queued` is called once it is queued, as its caller starts waiting for the
        commit: the bot's update pipeline starts on the next update then, so that a
        polled burst of reports is written as one batch.
        """
        outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        # Its error is the submitter's to see; one that gave up must not leave it unseen.
        outcome.add_done_callback(_consume_error)
        self._queue.append((operation, outcome))
        self._last = outcome
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_queue(), name=self._name)
        if on_queued is not None:
            on_queued()
        # Shielded: a caller that gives up (a client that hung up) does not take its
        # operation out of a batch that may already be committing.
        return await asyncio.shield(outcome)

    async def settled(self) -> None:
        """Wait until every operation submitted so far is written (or has failed)."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait((last,))

    async def _write_queue(self) -> None:
        batch: list[tuple[Operation, asyncio.Future[Outcome]]] = []
        try:
            while self._queue:
                if self._batching:
                    await self._gather()
                batch = self._queue[: self._max_batch]
                self._queue = self._queue[self._max_batch :]
                await self._write_batch(batch)
        finally:
            self._writing = None
            # Only cancellation (the event loop shutting down) gets here with work left.
            for _, future in (*batch, *self._queue):
                future.cancel()
            self._queue = []

    async def _gather(self) -> None:
        """Let the tasks that are ready to run submit theirs too, before writing.

        Writing starts once the queue has stopped growing for a few turns of the event
        loop: a lone write waits microseconds, and a burst (a polled batch of reports,
        requests read from several connections at once) goes out as one batch.
        """
        quiet_turns = 0
        while quiet_turns < GATHER_TURNS and len(self._queue) < MAX_BATCH:
            queued = len(self._queue)
            await asyncio.sleep(0)
            quiet_turns = quiet_turns + 1 if len(self._queue) == queued else 0

    async def _write_batch(self, batch: list[tuple[Operation, asyncio.Future[Outcome]]]) -> None:
        operations = [operation for operation, _ in batch]
        try:
            outcomes = await self._write(operations)
        except Exception as error:
            if len(batch) == 1 or (self._fails_all is not None and self._fails_all(error)):
                outcomes = [error] * len(batch)
            else:
                logger.warning(
                    "%s: a batch of %d failed (%s: %s); writing them one at a time",
                    self._name,
                    len(batch),
                    type(error).__name__,
                    error,
                )
                for single in batch:
                    await self._write_batch([single])
                return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _consume_error(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
