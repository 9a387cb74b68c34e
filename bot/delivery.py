"""The sender: delivers the outbox to Telegram in the background.

What the bot must say about a change (a new incident's card, an edit of a card) is
written to the outbox by the store in the change's own transaction; handlers never wait
for Telegram. This task reads the outbox oldest first and, per chat:

- keeps to Telegram's flood limits through the shared `RateLimiter`, skipping a chat
  whose allowance is used up (its backlog never holds up other chats);
- folds a storm: more than `fold_threshold` new cards pending for one chat (or forum
  topic) go out as one summary (`Registered 37 incidents: #101-#137 ...`); while the
  storm goes on, the chat gets at most one summary per `fold_interval`;
- sends several pending edits of one card as one edit, drawn from the incident as it is;
- replies to a card when a monitoring system resolved its incident, and folds more than
  `fold_threshold` such notices pending for one chat into one message;
- replies to a card with a reminder (nobody took it; its owner let it go quiet), drops
  one that no longer holds when its turn comes, and folds many into one message;
- honours 429 (`retry_after` bans the chat, nothing goes there earlier), retries 5xx and
  network errors with exponential backoff (pausing all sending meanwhile: Telegram is
  down for everyone), follows a group upgraded to a supergroup, treats "message is not
  modified" as done, and records permanent refusals (chat gone, bot removed, message to
  edit gone) as failed instead of retrying them forever.

Delivery is at least once: a row is marked sent after Telegram accepted the message, so
a crash between the two, or a connection lost after Telegram accepted it, sends it again.
Recording what Telegram answered is retried until it is stored (the database locked or
full, say), sending nothing meanwhile: only a stop gives up on it.
Right before each message the sender claims its rows in the outbox (`Outbox.claim`):
rows another sender holds (an instance that was replaced and does not know it yet) are
skipped, so two senders never both send one row while its claim holds.
The sender is woken by the store's `on_delivery_queued` callback (an asyncio.Event) and
otherwise looks again at least every `idle_wait` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiogram import Bot
from aiogram.exceptions import (
    AiogramError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import Message, ReplyParameters
from aiogram.utils.i18n import I18n

from bot.cards import (
    Rendered,
    render_card,
    render_reminder,
    render_reminder_summary,
    render_resolved_notice,
    render_resolved_summary,
    render_summary,
)
from bot.filters import ServedChats
from bot.i18n import DEFAULT_LOCALE
from bot.rate_limits import RateLimiter, Slot
from bot.tasks import log_failure
from storage.errors import describe, is_storage_unavailable
from storage.models import DeliveryKind, utcnow
from storage.outbox import Outbox, PendingDelivery

logger = logging.getLogger(__name__)

MIN_WAIT = 0.005
"""The shortest nap between rounds that found nothing to do (no busy loop, ever)."""
NOT_MODIFIED = "message is not modified"
CHAT_GONE = ("chat not found", "group chat was deactivated", "have no rights to send")
"""Bad requests that refuse the chat itself, not one message: its whole backlog fails."""


def is_not_modified(error: TelegramBadRequest) -> bool:
    """Telegram refusing an edit that would change nothing: the message already shows it."""
    return NOT_MODIFIED in error.message.lower()


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How the sender batches, folds and retries; tests pass small numbers."""

    fold_threshold: int = 5
    """More pending new cards than this for one chat are sent as one summary."""
    fold_interval: float = 10.0
    """After a summary, new cards for that chat are held this long and then summed up
    together (two or more) while the storm goes on: one summary per interval, not a
    burst of cards whenever the chat's allowance frees up."""
    batch: int = 500
    """Pending deliveries read per round."""
    retry_first: float = 1.0
    """Seconds before the first retry after a 5xx or network error, or after failing to
    record what Telegram answered; doubles each time."""
    retry_max: float = 60.0
    idle_wait: float = 1.0
    """The longest the sender sleeps without being woken."""
    gather: float = 0.05
    """Woken while chats it cannot send to yet still have deliveries pending (a storm),
    how long the sender lets more gather before it looks again: a burst of reports costs
    a look at the outbox per `gather`, not one per report."""
    stop_grace: float = 2.0
    """On stop, how long a send in flight may take to finish before it is cancelled."""
    claim_for: float = 180.0
    """How long the rows of a message being sent are this sender's alone. Comfortably
    longer than a send and its record: aiogram gives up on a request after 60 s. A
    sender that dies mid-send holds its rows this long before another sends them."""


class _Outcome(enum.Enum):
    DONE = "done"
    """The job is recorded (sent, folded or failed): go on with the chat."""
    STOP_CHAT = "stop_chat"
    """Nothing more for this chat in this round (429, migration, chat gone)."""
    STOP_ALL = "stop_all"
    """Telegram is unwell: pause all sending."""


@dataclass(slots=True)
class _Job:
    """One message to send: a card, a summary of many cards, an edit of one card, a
    resolve notice, or a summary of many resolve notices."""

    kind: Literal["card", "summary", "edit", "notice", "notices", "reminder", "reminders"]
    rows: list[PendingDelivery] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [row.delivery.id for row in self.rows]


class Sender:
    def __init__(
        self,
        bot: Bot,
        outbox: Outbox,
        limiter: RateLimiter,
        served: ServedChats,
        i18n: I18n,
        *,
        wake: asyncio.Event,
        policy: DeliveryPolicy | None = None,
        may_send: Callable[[], bool] = lambda: True,
    ) -> None:
        """`may_send` is asked before each message: False holds everything back (this
        instance is no longer sure it is the active one)."""
        self._bot = bot
        self._may_send = may_send
        self._outbox = outbox
        self._limiter = limiter
        self._served = served
        self._i18n = i18n
        self._wake = wake
        self.policy = policy or DeliveryPolicy()
        self._reserve = limiter.limits.reserve_for_replies
        self._busy: set[int] = set()
        """Chats skipped until their allowance frees up or their storm hold ends."""
        self._storms: dict[int, float] = {}
        """Chat → when its storm hold ends (set by each summary)."""
        self._cards_posted: dict[tuple[int, int], int] = {}
        """(chat, incident) → the card posted this round: the round's rows were read
        before it was, and a notice read with them replies to it."""
        self._failures = 0
        self._paused_until = 0.0
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telegram-delivery")
        self._task.add_done_callback(log_failure)

    async def stop(self) -> None:
        """Stop after the send in flight (if any, within `stop_grace`); drains nothing."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        _done, pending = await asyncio.wait((task,), timeout=self.policy.stop_grace)
        if pending:
            task.cancel()
            await asyncio.wait((task,))

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                progressed = await self._round()
            except Exception as error:
                # The database, most likely: look again after a pause, not in a loop.
                # Nothing was sent that is not recorded (`_record`), so nothing is repeated.
                _log_failure("Delivery round failed", error)
                self._paused_until = self._limiter.now() + self.policy.idle_wait
                progressed = False
            if not progressed and not self._stopping:
                await self._sleep()

    async def _sleep(self) -> None:
        timeout = self.policy.idle_wait
        now = self._limiter.now()
        if now < self._paused_until:
            timeout = min(timeout, self._paused_until - now)
        else:
            for chat_id in self._busy:
                timeout = min(timeout, self._busy_for(chat_id))
            try:
                next_due = await self._outbox.next_due_at(exclude_chat_ids=self._busy)
            except Exception as error:
                _log_failure("Cannot read the outbox", error)
                next_due = None
            if next_due is not None:
                timeout = min(timeout, (next_due - utcnow()).total_seconds())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(timeout, MIN_WAIT))
            if self._busy and not self._stopping:
                await asyncio.sleep(self.policy.gather)

    # -- one round -------------------------------------------------------------------------

    async def _round(self) -> bool:
        """Send what is due and allowed now; False if nothing could be done."""
        if self._limiter.now() < self._paused_until:
            return False
        self._busy = {chat_id for chat_id in self._busy if self._busy_for(chat_id) > 0}
        self._cards_posted.clear()
        rows = await self._outbox.due(limit=self.policy.batch, exclude_chat_ids=self._busy)
        by_chat: dict[int, list[PendingDelivery]] = {}
        for row in rows:
            by_chat.setdefault(row.delivery.chat_id, []).append(row)
        progressed = False
        for chat_id, chat_rows in by_chat.items():
            if self._stopping or self._limiter.now() < self._paused_until:
                break
            moved_to = self._served.moved_to(chat_id)
            if moved_to is not None:
                # Queued for a group after it became a supergroup: send it there.
                await self._outbox.move_chat(chat_id, moved_to)
                progressed = True
                continue
            progressed |= await self._serve_chat(chat_id, chat_rows)
        return progressed

    def _busy_for(self, chat_id: int) -> float:
        """Seconds until the sender may send to the chat again."""
        held = self._storms.get(chat_id, 0.0) - self._limiter.now()
        return max(held, self._limiter.delay(chat_id, reserve=self._reserve))

    async def _serve_chat(self, chat_id: int, rows: list[PendingDelivery]) -> bool:
        storm_ends = self._storms.get(chat_id)
        if storm_ends is not None and self._limiter.now() < storm_ends:
            self._busy.add(chat_id)
            return False
        # Right after a storm's hold, even two new cards are summed up.
        threshold = 1 if storm_ends is not None else self.policy.fold_threshold
        self._storms.pop(chat_id, None)
        progressed = False
        jobs = self._plan(rows, fold_threshold=threshold)
        for index, job in enumerate(jobs):
            if self._stopping or not self._may_send():
                break
            # Checked before the claim too, so that a full chat's next rows are not claimed
            # for nothing (the claim would keep them from another sender meanwhile).
            if self._limiter.delay(chat_id, reserve=self._reserve) > 0:
                self._busy.add(chat_id)
                break
            if not await self._claim(job):
                continue  # another sender holds its rows: that one sends them
            slot = self._limiter.try_acquire(chat_id, reserve=self._reserve)
            if slot is None:
                # A direct answer took the chat's last slot meanwhile. The claim is ours:
                # the next round claims the rows again.
                self._busy.add(chat_id)
                break
            progressed = True
            outcome = await self._run_job(chat_id, job, slot, later=jobs[index + 1 :])
            if job.kind == "summary" and outcome is _Outcome.DONE:
                self._storms[chat_id] = self._limiter.now() + self.policy.fold_interval
            if outcome is not _Outcome.DONE:
                break
        if chat_id in self._storms:
            self._busy.add(chat_id)
        return progressed

    def _plan(self, rows: list[PendingDelivery], *, fold_threshold: int) -> list[_Job]:
        """The chat's rows as messages, in the order of their oldest row."""
        new_cards = Counter(
            row.delivery.message_thread_id
            for row in rows
            if row.delivery.kind == DeliveryKind.CARD
        )
        notices = sum(row.delivery.kind == DeliveryKind.RESOLVED_NOTICE for row in rows)
        reminders = sum(row.delivery.kind == DeliveryKind.REMINDER for row in rows)
        jobs: list[_Job] = []
        summaries: dict[int | None, _Job] = {}
        edits: dict[int, _Job] = {}
        notice_summary: _Job | None = None
        reminder_summary: _Job | None = None
        for row in rows:
            delivery = row.delivery
            if delivery.kind == DeliveryKind.CARD_EDIT:
                job = edits.get(delivery.incident_id)
                if job is None:
                    job = edits[delivery.incident_id] = _Job("edit")
                    jobs.append(job)
            elif delivery.kind == DeliveryKind.REMINDER:
                if reminders <= self.policy.fold_threshold:
                    job = _Job("reminder")
                    jobs.append(job)
                elif reminder_summary is None:
                    job = reminder_summary = _Job("reminders")
                    jobs.append(job)
                else:
                    job = reminder_summary
            elif delivery.kind == DeliveryKind.RESOLVED_NOTICE:
                if notices <= self.policy.fold_threshold:
                    job = _Job("notice")
                    jobs.append(job)
                elif notice_summary is None:
                    job = notice_summary = _Job("notices")
                    jobs.append(job)
                else:
                    job = notice_summary
            elif new_cards[delivery.message_thread_id] > fold_threshold:
                job = summaries.get(delivery.message_thread_id)
                if job is None:
                    job = summaries[delivery.message_thread_id] = _Job("summary")
                    jobs.append(job)
            else:
                job = _Job("card")
                jobs.append(job)
            job.rows.append(row)
        return jobs

    # -- one message -----------------------------------------------------------------------

    async def _claim(self, job: _Job) -> bool:
        """Claim the job's rows for sending now, leaving out those another sender holds;
        False if it holds them all."""
        claimed = await self._outbox.claim(job.ids, hold=timedelta(seconds=self.policy.claim_for))
        job.rows = [row for row in job.rows if row.delivery.id in claimed]
        return bool(job.rows)

    async def _run_job(
        self, chat_id: int, job: _Job, slot: Slot, *, later: Sequence[_Job]
    ) -> _Outcome:
        try:
            with slot:
                sent = await self._send(chat_id, job)
        except TelegramRetryAfter as error:
            self._limiter.ban(chat_id, error.retry_after)
            self._busy.add(chat_id)
            # The whole chat waits (the ban covers it here; the rows, after a restart).
            until = utcnow() + timedelta(seconds=error.retry_after)
            reason = error.message
            logger.warning("Chat %s: flood limit, waiting %s s", chat_id, error.retry_after)
            await self._record(
                f"the flood wait of chat {chat_id}",
                lambda: self._outbox.postpone(_ids([job, *later]), until, reason),
            )
            return _Outcome.STOP_CHAT
        except TelegramMigrateToChat as error:
            new_chat_id = error.migrate_to_chat_id
            if not await self._record(
                f"the move of chat {chat_id} to {new_chat_id}",
                lambda: self._outbox.move_chat(chat_id, new_chat_id),
            ):
                return _Outcome.STOP_ALL
            self._served.follow(chat_id, new_chat_id)
            logger.info("Chat %s became supergroup %s: following it", chat_id, new_chat_id)
            return _Outcome.STOP_CHAT
        except TelegramBadRequest as error:
            if is_not_modified(error):
                await self._record(f"{job.kind} {job.ids} as sent", self._marking_sent(job))
                return _Outcome.DONE
            if any(reason in error.message.lower() for reason in CHAT_GONE):
                await self._fail_chat(chat_id, [job, *later], error)
                return _Outcome.STOP_CHAT
            await self._fail(job, error)
            return _Outcome.DONE
        except (TelegramForbiddenError, TelegramNotFound) as error:
            await self._fail_chat(chat_id, [job, *later], error)
            return _Outcome.STOP_CHAT
        except (TelegramAPIError, AiogramError) as error:
            # 5xx, network errors, an answer that is not JSON (a proxy's error page), a
            # revoked token: all worth trying again later, none a reason to drop anything.
            await self._retry_later(job, error)
            return _Outcome.STOP_ALL
        except Exception as error:
            # A bug drawing the message: nothing was sent, and retrying would not help.
            logger.exception("Cannot deliver %s %s", job.kind, job.ids)
            reason = f"{type(error).__name__}: {error}"
            await self._record(
                f"{job.kind} {job.ids} as failed",
                lambda: self._outbox.mark_failed(job.ids, reason),
            )
            return _Outcome.DONE
        self._failures = 0
        if job.kind == "card" and sent is not None:
            self._cards_posted[chat_id, job.rows[0].incident.id] = sent.message_id
        # Recorded outside the error handling above: Telegram has the message now.
        if not await self._record(f"{job.kind} {job.ids} as sent", self._marking_sent(job, sent)):
            return _Outcome.STOP_ALL
        return _Outcome.DONE

    def _marking_sent(
        self, job: _Job, sent: Message | None = None
    ) -> Callable[[], Awaitable[None]]:
        """What records the job as delivered (a new card's message on its incident)."""
        if job.kind in ("summary", "notices", "reminders"):
            return lambda: self._outbox.mark_folded(job.ids)
        if sent is None:
            return lambda: self._outbox.mark_sent(job.ids)
        incident = job.rows[0].incident
        return lambda: self._outbox.mark_sent(
            job.ids,
            card=(incident.id, sent.chat.id, sent.message_id),
            drawn_at=incident.updated_at,
        )

    async def _record(self, what: str, write: Callable[[], Awaitable[None]]) -> bool:
        """Store what Telegram answered, trying until it is stored; False if stopped first.

        Telegram has acted on the job by now (a card is in the chat, a refusal given).
        Left unrecorded, the row would still be pending and the next round would send it
        again; so the sender sends nothing else until it is stored, waiting longer each
        time (the database locked or full). Only a stop gives up, and the restart sends
        the row again: the one repeat delivery at least once allows.
        """
        delay = self.policy.retry_first
        while True:
            try:
                await write()
            except Exception as error:
                if self._stopping:
                    logger.error(
                        "Stopping before %s could be recorded (%s); it will be sent again",
                        what,
                        describe(error),
                    )
                    return False
                logger.warning(
                    "Cannot record %s (%s); trying again in %.1f s, sending nothing meanwhile",
                    what,
                    describe(error),
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), delay)
                delay = min(self.policy.retry_max, delay * 2)
            else:
                return True

    async def _send(self, chat_id: int, job: _Job) -> Message | None:
        """Send the job's message; the new card (to remember), or None for an edit."""
        first = job.rows[0]
        incident = first.incident
        card_chat_id, card_message_id = incident.card_chat_id, incident.card_message_id
        # A notice replies to its incident's card, wherever the card is in this chat.
        card_here = self._cards_posted.get((chat_id, incident.id))
        if card_here is None and card_chat_id == chat_id:
            card_here = card_message_id
        now = datetime.now(UTC)
        with self._i18n.context(), self._i18n.use_locale(_main_locale(job.rows)):
            reminder: Rendered | None = None
            if job.kind == "reminder":
                reminder = render_reminder(incident, now, replying=card_here is not None)
            elif job.kind == "reminders":
                # Those taken, resolved or snoozed since they were queued are left out.
                still_due = [
                    row.incident.id
                    for row in job.rows
                    if render_reminder(row.incident, now, replying=False) is not None
                ]
                reminder = render_reminder_summary(still_due) if still_due else None
            if job.kind == "summary":
                rendered = render_summary([row.incident.id for row in job.rows])
            elif job.kind == "notices":
                rendered = render_resolved_summary([row.incident.id for row in job.rows])
            elif job.kind == "notice":
                actor = first.delivery.actor or incident.updated_by or ""
                rendered = render_resolved_notice(
                    incident.id, actor, replying=card_here is not None
                )
            else:
                rendered = render_card(incident)
        if job.kind in ("summary", "notices"):
            await self._post(chat_id, rendered, thread_id=first.delivery.message_thread_id)
            return None
        if job.kind == "notice":
            await self._post(chat_id, rendered, thread_id=None, reply_to=card_here)
            return None
        if job.kind in ("reminder", "reminders"):
            # A reminder no longer due is recorded as done without a word.
            if reminder is not None:
                reply_to = card_here if job.kind == "reminder" else None
                await self._post(chat_id, reminder, thread_id=None, reply_to=reply_to)
            return None
        if job.kind == "edit" and card_chat_id == chat_id and card_message_id is not None:
            await self._bot.edit_message_text(
                text=rendered.text,
                chat_id=card_chat_id,
                message_id=card_message_id,
                reply_markup=rendered.reply_markup,
            )
            return None
        # A new card; or an edit of a card left behind in a group that became a
        # supergroup (its messages do not carry over): a new card there.
        is_card = job.kind == "card"
        return await self._post(
            chat_id,
            rendered,
            thread_id=first.delivery.message_thread_id if is_card else None,
            reply_to=first.delivery.reply_to_message_id if is_card else None,
        )

    async def _post(
        self,
        chat_id: int,
        rendered: Rendered,
        *,
        thread_id: int | None,
        reply_to: int | None = None,
    ) -> Message:
        return await self._bot.send_message(
            chat_id=chat_id,
            text=rendered.text,
            reply_markup=rendered.reply_markup,
            message_thread_id=thread_id,
            reply_parameters=(
                None
                if reply_to is None
                else ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
            ),
        )

    # -- failures --------------------------------------------------------------------------

    async def _fail(self, job: _Job, error: TelegramAPIError) -> None:
        reason = error.message
        logger.warning("Dropping %s %s: Telegram refused it: %s", job.kind, job.ids, reason)
        await self._record(
            f"{job.kind} {job.ids} as failed", lambda: self._outbox.mark_failed(job.ids, reason)
        )

    async def _fail_chat(
        self, chat_id: int, jobs: Sequence[_Job], error: TelegramAPIError
    ) -> None:
        ids = _ids(jobs)
        logger.warning(
            "Dropping %s deliveries to chat %s: Telegram refused the chat: %s",
            len(ids),
            chat_id,
            error.message,
        )
        reason = error.message
        await self._record(
            f"the deliveries to chat {chat_id} as failed",
            lambda: self._outbox.mark_failed(ids, reason),
        )

    async def _retry_later(self, job: _Job, error: Exception) -> None:
        self._failures += 1
        delay = min(self.policy.retry_max, self.policy.retry_first * 2 ** (self._failures - 1))
        if isinstance(error, TelegramUnauthorizedError):
            delay = self.policy.retry_max
        self._paused_until = self._limiter.now() + delay
        logger.warning(
            "Telegram unavailable (%s: %s); retrying in %.1f s", type(error).__name__, error, delay
        )
        until = utcnow() + timedelta(seconds=delay)
        reason = f"{type(error).__name__}: {error}"
        await self._record(
            f"the retry of {job.kind} {job.ids}",
            lambda: self._outbox.postpone(job.ids, until, reason),
        )


def _log_failure(what: str, error: Exception) -> None:
    """One line for a database that cannot serve for now; a traceback for anything else."""
    if is_storage_unavailable(error):
        logger.warning("%s: %s; trying again shortly", what, describe(error))
    else:
        logger.exception("%s; trying again shortly", what)


def _ids(jobs: Sequence[_Job]) -> list[int]:
    return [delivery_id for job in jobs for delivery_id in job.ids]


def _main_locale(rows: Sequence[PendingDelivery]) -> str:
    """The language most of the rows ask for (a summary speaks to many reporters)."""
    locales = Counter(row.delivery.locale or DEFAULT_LOCALE for row in rows)
    return locales.most_common(1)[0][0]
