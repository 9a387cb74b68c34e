"""Counting the bot's Telegram calls and handled updates for /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import TelegramObject, Update
from aiogram.types.update import UpdateTypeLookupError

from metrics import Metrics

# The outcome of a failed call, by aiogram's error; the first that matches (a too large
# request is a network error to aiogram, so it comes before them).
_OUTCOMES: tuple[tuple[type[Exception], str], ...] = (
    (TelegramRetryAfter, "429"),
    (TelegramMigrateToChat, "migrated"),
    (TelegramBadRequest, "bad_request"),
    (TelegramUnauthorizedError, "unauthorized"),
    (TelegramForbiddenError, "forbidden"),
    (TelegramNotFound, "not_found"),
    (TelegramConflictError, "conflict"),
    (TelegramServerError, "server_error"),
    (TelegramEntityTooLarge, "too_large"),
    (TelegramNetworkError, "network_error"),
    (ClientDecodeError, "not_bot_api"),
)


def call_outcome(error: Exception) -> str:
    """How a failed call is counted: `429`, the kind of refusal, or `other`."""
    for kind, outcome in _OUTCOMES:
        if isinstance(error, kind):
            return outcome
    return "other"


class CountedCalls(BaseRequestMiddleware):
    """Counts each Bot API call by method and outcome.

    The innermost of the session's middlewares: it counts the requests that reach
    Telegram (a retry after a 429 is a second call), not the calls given up before.
    A call cancelled on its way (a long poll when the bot stops) is not counted.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        try:
            response = await make_request(bot, method)
        except Exception as error:
            self._metrics.telegram_call(method.__api_method__, call_outcome(error))
            raise
        self._metrics.telegram_call(method.__api_method__, "ok")
        return response


class CountedUpdates(BaseMiddleware):
    """An outer update middleware counting each update handled, by its type (`message`,
    `callback_query`, ...), whether a handler took it or not.

    Outside the update pipeline, which handles an update again while the database cannot
    store it: an update is counted once, when it is done.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            return await handler(event, data)
        finally:
            self._metrics.update_handled(update_type(event))


def update_type(event: TelegramObject) -> str:
    if not isinstance(event, Update):
        return "unknown"
    try:
        return event.event_type
    except UpdateTypeLookupError:  # a type newer than this aiogram
        return "unknown"
