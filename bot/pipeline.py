"""Updates handled in order, their writes committed together, confirmed once all are done.

Handling a polled batch of updates one after another, each waiting for its own commit,
makes every report a transaction of its own. Here an update starts as soon as the one
before it has finished or is waiting for its write to be committed (the store's group
commit, `storage.batching`), so a burst of reports reaches the store as one batch, in
the order Telegram sent it. Reads wait for the writes queued before them, so a reply to
a report in the same burst still finds its incident.

Telegram considers an update handled once a getUpdates call asks for a later offset.
That call is held back until every update handed out so far has done its part in the
store: an update is never confirmed before its write is committed, and a crash loses
nothing.

What an update then says to Telegram (a reply, an answered button, an edited list) holds
up nothing: the handlers store first and answer after, so once an update calls Telegram,
the next update starts and the update counts as handled for confirmation. A reply that
waits for a chat's flood allowance, or for a slow Telegram, waits on its own.

An update whose store work fails because the database cannot serve for now (locked by
another process, a full disk, a lost connection) is handled again after a pause, for as
long as that lasts, keeping its turn: the updates behind it wait, none is confirmed, and
no report is lost to an outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import TelegramObject, Update

from storage.errors import describe, is_storage_unavailable

logger = logging.getLogger(__name__)

STORAGE_RETRY_FIRST = 0.5
"""Seconds before an update the database could not store is handled again; doubles."""
STORAGE_RETRY_MAX = 10.0

OnQueued = Callable[[], None] | None
"""What the pipeline hands every handler as `on_queued`: called (by the store, through the
action the handler takes) once the update's write is queued and waits for its commit,
it lets the next update start."""

_release_update: ContextVar[Callable[[], None] | None] = ContextVar(
    "incident_bot_release_update", default=None
)
"""Set by the pipeline while an update is handled; `PipelinedCalls` calls it."""


class UpdatePipeline(BaseMiddleware):
    """An outer update middleware: each update takes its turn after the one before it."""

    def __init__(self) -> None:
        self._turn: asyncio.Future[None] | None = None
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._holding = 0
        """Updates whose part in the store is not done yet: they hold confirmation."""
        self._settled = asyncio.Event()
        self._settled.set()
        self._last_entered = -1
        self._entered = asyncio.Event()
        self._release_waiters: dict[int, asyncio.Future[None]] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        previous = self._turn
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turn = turn
        self._busy += 1
        self._idle.clear()
        self._holding += 1
        self._settled.clear()
        holding = True
        released = None
        if isinstance(event, Update):
            self._last_entered = max(self._last_entered, event.update_id)
            self._entered.set()
            released = self._release_waiters.pop(event.update_id, None)

        def pass_turn() -> None:
            if not turn.done():
                turn.set_result(None)

        def release() -> None:
            nonlocal holding
            pass_turn()
            if holding:
                holding = False
                self._holding -= 1
                if not self._holding:
                    self._settled.set()
                if released is not None and not released.done():
                    released.set_result(None)

        try:
            if previous is not None:
                # Cancelled here, this update passes its turn on in `finally` below.
                await previous
            data["on_queued"] = pass_turn
            releasing = _release_update.set(release)
            try:
                return await self._until_stored(handler, event, data, lambda: holding)
            finally:
                _release_update.reset(releasing)
        finally:
            release()
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def until_released(self, update_id: int, handling: asyncio.Task[Any]) -> None:
        """Wait until the update `update_id`, fed by the task `handling` (created just
        now, not started yet), has done its part in the store, or `handling` ended.

        Webhook mode answers Telegram then: its replies need not hold up the next update.
        """
        released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._release_waiters[update_id] = released
        try:
            await asyncio.wait((handling, released), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._release_waiters.get(update_id) is released:
                del self._release_waiters[update_id]

    @staticmethod
    async def _until_stored(
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
        holding: Callable[[], bool],
    ) -> Any:
        """The handler's result, handling the update again while the database cannot
        store it (only while the update still holds confirmation: once it has talked to
        Telegram, its store work is done, and a retry would answer twice)."""
        delay = STORAGE_RETRY_FIRST
        failing = False
        while True:
            try:
                result = await handler(event, data)
            except Exception as error:
                if not (is_storage_unavailable(error) and holding()):
                    raise
                if not failing:
                    update_id = event.update_id if isinstance(event, Update) else "?"
                    logger.warning(
                        "Update %s not stored, the database is unavailable (%s);"
                        " handling it again until it can be",
                        update_id,
                        describe(error),
                    )
                    failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORAGE_RETRY_MAX)
                continue
            if failing:
                logger.info("The database is available again: update stored")
            return result

    async def drained(self) -> None:
        """Wait until every update handed to the pipeline so far has finished, replies
        included."""
        await self._idle.wait()

    async def handled_below(self, update_id: int) -> None:
        """Wait until every update before `update_id` has entered and done its part in the
        store (finished, or gone on to talk to Telegram).

        The updates of a polled batch are tasks that may not have started yet when the
        next getUpdates is made; they start in order, so the last one entering means
        every one has.
        """
        while self._last_entered < update_id - 1:
            self._entered.clear()
            await self._entered.wait()
        await self._settled.wait()


class PipelinedCalls(BaseRequestMiddleware):
    """Where the bot's Telegram calls meet the pipeline.

    A getUpdates call that would confirm updates still being handled waits for them. Any
    other call made while handling an update releases that update: the next one starts,
    and it no longer holds confirmation back, however long the call waits for its chat's
    flood allowance or for Telegram to answer.
    """

    def __init__(self, pipeline: UpdatePipeline) -> None:
        self._pipeline = pipeline

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if isinstance(method, GetUpdates):
            if method.offset is not None:
                await self._pipeline.handled_below(method.offset)
        else:
            release = _release_update.get()
            if release is not None:
                release()
        return await make_request(bot, method)
