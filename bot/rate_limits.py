"""Telegram's flood limits, kept on our side so that Telegram rarely has to say 429.

Telegram allows a bot about 20 messages a minute in one group, about one a second in
one private chat and about 30 a second overall; past them it answers 429 with
`retry_after`. One `RateLimiter` counts every message the bot sends or edits, whoever
sends it: the background sender asks `try_acquire()` and skips a chat that is full (it
sends through a bot of its own, without the middleware), and the `RateLimitMiddleware`
on the handlers' bot makes every other call (a reply to a command, an edited /list page)
wait for its turn. A 429 that comes anyway bans the chat
for `retry_after` seconds, for both.

Each sent message is stamped with the time its request *finished*: Telegram counted it
at some moment before that, so a window measured from our stamps is never shorter than
Telegram's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import (
    CopyMessage,
    EditMessageCaption,
    EditMessageReplyMarkup,
    EditMessageText,
    ForwardMessage,
    SendDocument,
    SendMessage,
    SendPhoto,
    TelegramMethod,
)
from aiogram.methods.base import TelegramType

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import Response

ChatKey = int | str
"""A chat id, or a public chat's `@username`."""

LIMITED_METHODS = (
    SendMessage,
    EditMessageText,
    EditMessageReplyMarkup,
    EditMessageCaption,
    SendPhoto,
    SendDocument,
    CopyMessage,
    ForwardMessage,
)
"""Calls that put or change a message in a chat: what Telegram's flood limits count."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` messages in any `per` seconds."""

    count: int
    per: float


@dataclass(frozen=True, slots=True)
class Limits:
    """Telegram's published limits; tests pass small windows to stay fast."""

    group: Rate = Rate(20, 60.0)
    """Per group, supergroup or channel (a negative chat id or an @username)."""
    private: Rate = Rate(1, 1.0)
    """Per private chat."""
    overall: Rate = Rate(30, 1.0)
    """All chats together."""
    reserve_for_replies: int = 1
    """Messages of each chat's allowance the background sender leaves to direct answers,
    so a person's /list is answered at once even while a storm is being announced."""
    reply_max_wait: float = 10.0
    """How long a direct answer may wait for its turn; past that it is given up (with a
    TelegramRetryAfter), as Telegram would refuse it anyway."""


class _Stamp:
    """One message's place in a window: when it went out, and whether it is done."""

    __slots__ = ("at", "done")

    def __init__(self, at: float) -> None:
        self.at = at
        self.done = False


class Slot:
    """The right to send one message to a chat now.

    Use as `with slot: await bot.send_message(...)`: on exit the message is stamped with
    the time it finished.
    """

    def __init__(self, limiter: RateLimiter, stamps: list[_Stamp]) -> None:
        self._limiter = limiter
        self._stamps = stamps

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish()

    def finish(self) -> None:
        now = self._limiter.now()
        for stamp in self._stamps:
            if not stamp.done:
                stamp.at = max(stamp.at, now)
                stamp.done = True


class ChatFlooded(Exception):
    """A chat's allowance will not free up within the time one may wait for it."""

    def __init__(self, chat_id: ChatKey, delay: float) -> None:
        super().__init__(f"chat {chat_id} is at its flood limit for {delay:.1f} s more")
        self.chat_id = chat_id
        self.delay = delay


class RateLimiter:
    """Sliding windows per chat and overall, plus bans from Telegram's 429s."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._windows: dict[tuple[str, ChatKey], list[_Stamp]] = {}
        self._banned_until: dict[ChatKey, float] = {}

    def now(self) -> float:
        return self._clock()

    def delay(self, chat_id: ChatKey, *, reserve: int = 0) -> float:
        """Seconds until a message to `chat_id` may go out (0: now).

        `reserve`: leave that many of the chat's messages unused (the sender's courtesy
        to direct answers).
        """
        now = self.now()
        wait = self._banned_until.get(chat_id, now) - now
        if wait <= 0:
            self._banned_until.pop(chat_id, None)
        for key, rate, is_chat in self._scopes(chat_id):
            capacity = rate.count - (min(reserve, rate.count - 1) if is_chat else 0)
            stamps = self._live(key, rate, now)
            if len(stamps) >= capacity:
                # An unfinished message will be stamped no earlier than now.
                times = sorted(stamp.at if stamp.done else now for stamp in stamps)
                wait = max(wait, times[len(times) - capacity] + rate.per - now)
        return max(wait, 0.0)

    def try_acquire(self, chat_id: ChatKey, *, reserve: int = 0) -> Slot | None:
        """A slot if a message to `chat_id` may go out now, else None (never waits)."""
        if self.delay(chat_id, reserve=reserve) > 0:
            return None
        now = self.now()
        stamps = []
        for key, _rate, _is_chat in self._scopes(chat_id):
            stamp = _Stamp(now)
            self._windows.setdefault(key, []).append(stamp)
            stamps.append(stamp)
        return Slot(self, stamps)

    async def acquire(self, chat_id: ChatKey, *, max_wait: float) -> Slot:
        """Wait for a slot; ChatFlooded if it would take longer than `max_wait`."""
        deadline = self.now() + max_wait
        while True:
            delay = self.delay(chat_id)
            if delay <= 0:
                slot = self.try_acquire(chat_id)
                if slot is not None:
                    return slot
                continue
            if self.now() + delay > deadline:
                raise ChatFlooded(chat_id, delay)
            await asyncio.sleep(delay)

    def remember(self, chat_id: ChatKey, seconds_ago: float) -> None:
        """A message that went to `chat_id` `seconds_ago` (sent by another instance, say):
        it counts against the windows like one sent from here."""
        stamp = _Stamp(self.now() - seconds_ago)
        stamp.done = True
        for key, _rate, _is_chat in self._scopes(chat_id):
            self._windows.setdefault(key, []).append(stamp)

    @property
    def longest_window(self) -> float:
        """Seconds back that any limit looks."""
        return max(self.limits.group.per, self.limits.private.per, self.limits.overall.per)

    def ban(self, chat_id: ChatKey, seconds: float) -> None:
        """Telegram said 429 with `retry_after`: nothing goes to the chat until then."""
        until = self.now() + seconds
        self._banned_until[chat_id] = max(self._banned_until.get(chat_id, until), until)

    def _scopes(self, chat_id: ChatKey) -> list[tuple[tuple[str, ChatKey], Rate, bool]]:
        is_group = isinstance(chat_id, str) or chat_id < 0
        chat_rate = self.limits.group if is_group else self.limits.private
        return [(("chat", chat_id), chat_rate, True), (("overall", 0), self.limits.overall, False)]

    def _live(self, key: tuple[str, ChatKey], rate: Rate, now: float) -> list[_Stamp]:
        stamps = self._windows.get(key)
        if not stamps:
            return []
        live = [stamp for stamp in stamps if not stamp.done or stamp.at > now - rate.per]
        if live:
            self._windows[key] = live
        else:
            del self._windows[key]  # a chat gone quiet costs nothing
        return live


def limited_chat(method: TelegramMethod[Any]) -> ChatKey | None:
    """The chat a call puts a message in, if it is one the flood limits count."""
    if not isinstance(method, LIMITED_METHODS):
        return None
    chat_id = getattr(method, "chat_id", None)
    return chat_id if isinstance(chat_id, int | str) else None


class RateLimitMiddleware(BaseRequestMiddleware):
    """Makes every message call of the bot's session take its turn in the limiter.

    The sender, which takes its slots itself, sends through a bot without it. A 429 bans
    the chat and the call is tried once more after `retry_after`, if that is within
    `reply_max_wait`; otherwise it fails with TelegramRetryAfter.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        chat_id = limited_chat(method)
        if chat_id is None:
            return await make_request(bot, method)
        max_wait = self._limiter.limits.reply_max_wait
        try:
            return await self._send(make_request, bot, method, chat_id, max_wait)
        except TelegramRetryAfter as error:
            if error.retry_after > max_wait:
                raise
            # Banned for retry_after by _send: this waits that long, then tries once more.
            return await self._send(make_request, bot, method, chat_id, max_wait)

    async def _send(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
        chat_id: ChatKey,
        max_wait: float,
    ) -> Response[TelegramType]:
        try:
            slot = await self._limiter.acquire(chat_id, max_wait=max_wait)
        except ChatFlooded as error:
            raise TelegramRetryAfter(
                method=method, message=f"Not sent: {error}", retry_after=math.ceil(error.delay)
            ) from error
        with slot:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                self._limiter.ban(chat_id, error.retry_after)
                raise
