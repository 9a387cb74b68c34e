"""The outbox's other end: what the bot's sender reads, claims and records.

Rows are written by `IncidentStore` in the transaction of the change that caused them;
this module hands them out in order and records how each delivery ended.

Claims. Only the active instance runs a sender, but being active is a lease checked
before each message, and a check and the send after it are not one act: an instance
paused or cut off past its lease's end may still be sending when the one that took over
starts. So a sender claims the rows of each message right before sending it (`claim`:
one short UPDATE that stamps `claimed_by` and `claimed_until`, skipping rows another
sender holds), and a row another sender holds is neither handed out (`due`) nor
claimable until that claim expires. While a claim holds, no second sender sends its row.

What the claims leave: a claim ends when its row is recorded (sent, folded, failed; a
postponed row is handed back) or when it expires. A sender killed, or cut off from the
database, between Telegram accepting a message and recording it leaves its rows claimed
and pending: once the claim expires, the next sender sends them again. That case is at
least once, as after the crash of a single instance. So is a sender paused between its
claim and its send for longer than the claim lasts: a claim outlasts any send by far
(`bot.delivery.DeliveryPolicy.claim_for`), not any pause.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.database import Writers
from storage.models import (
    ChatMigration,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Incident,
    IncidentRow,
    utcnow,
)

ERROR_MAX_LENGTH = 1000


def queue_card_edit(
    session: AsyncSession, incident_id: int, chat_id: int, *, not_before: datetime | None = None
) -> None:
    """Queue, in `session`'s transaction, an edit of the incident's card in `chat_id`;
    with `not_before`, to be made no earlier than then.

    The edit keeps the language the card was first written in. Nothing is sent from the
    row itself: the sender draws the card from the incident as it is when it edits.
    """
    session.add(
        Delivery(
            kind=DeliveryKind.CARD_EDIT,
            incident_id=incident_id,
            chat_id=chat_id,
            locale=_card_locale(incident_id),
            not_before=not_before or utcnow(),
        )
    )


def queue_card_reply(
    session: AsyncSession,
    incident_id: int,
    chat_id: int,
    card_message_id: int | None,
    kind: DeliveryKind,
) -> None:
    """Queue, in `session`'s transaction, a message of `kind` replying to the incident's
    card, in the card's language; drawn from the incident when it is sent."""
    session.add(
        Delivery(
            kind=kind,
            incident_id=incident_id,
            chat_id=chat_id,
            reply_to_message_id=card_message_id,
            locale=_card_locale(incident_id),
        )
    )


def _card_locale(incident_id: int) -> Any:
    """The language the incident's card was written in, as a scalar subquery."""
    return (
        select(Delivery.locale)
        .where(Delivery.incident_id == incident_id, Delivery.kind == DeliveryKind.CARD)
        .order_by(Delivery.id.desc())
        .limit(1)
        .scalar_subquery()
    )


_INCIDENT_ROW = [getattr(Incident, name) for name in IncidentRow._fields]


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    delivery: Delivery
    incident: IncidentRow
    """The incident as it is now: a card is always drawn from the current state."""


class Outbox:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        writers: Writers | None = None,
        claimant: str | None = None,
    ) -> None:
        """`writers`: the store's, so that the sender's writes take turns with its own.
        `claimant`: the sender this outbox claims rows for (see the module's doc); a new
        name unless given."""
        self._sessions = sessions
        self._writers = writers or Writers(sessions)
        self.claimant = claimant or f"outbox-{uuid.uuid4().hex[:12]}"

    def claiming_as(self, claimant: str) -> Outbox:
        """This outbox, claiming rows as `claimant` (the instance's name)."""
        return Outbox(self._sessions, writers=self._writers, claimant=claimant)

    async def due(
        self, *, limit: int = 200, exclude_chat_ids: Collection[int] = ()
    ) -> list[PendingDelivery]:
        """Pending deliveries whose time has come and that no other sender holds, oldest
        first. Handing them out claims nothing: `claim` does, message by message.

        `exclude_chat_ids`: chats the caller cannot send to right now (their rate limit is
        used up), so that one busy chat's backlog never hides the other chats' deliveries.
        """
        now = utcnow()
        async with self._sessions() as session:
            rows = await session.execute(
                select(Delivery, *_INCIDENT_ROW)
                .join(Incident, Incident.id == Delivery.incident_id)
                .where(
                    Delivery.state == DeliveryState.PENDING,
                    Delivery.not_before <= now,
                    self._claimable(now),
                    *_not_in_chats(exclude_chat_ids),
                )
                .order_by(Delivery.id)
                .limit(limit)
            )
            return [PendingDelivery(row[0], IncidentRow._make(row[1:])) for row in rows]

    async def next_due_at(self, *, exclude_chat_ids: Collection[int] = ()) -> datetime | None:
        """When the earliest pending delivery may be tried (its `not_before`, or when
        another sender's claim on it expires), or None if nothing is pending."""
        now = utcnow()
        free_at = case(
            (self._claimable(now), Delivery.not_before),
            (Delivery.not_before > Delivery.claimed_until, Delivery.not_before),
            else_=Delivery.claimed_until,
        )
        async with self._sessions() as session:
            earliest: datetime | None = await session.scalar(
                select(func.min(free_at)).where(
                    Delivery.state == DeliveryState.PENDING, *_not_in_chats(exclude_chat_ids)
                )
            )
        return earliest

    async def claim(self, delivery_ids: Collection[int], *, hold: timedelta) -> set[int]:
        """Claim these pending deliveries for `hold`, to send them now; the ids claimed.

        Rows another sender holds are left out (a row this outbox's claimant holds
        already is claimed again, for `hold` from now). One UPDATE in a short
        transaction: on PostgreSQL its rows are picked `FOR UPDATE SKIP LOCKED`, so two
        senders claiming at once never wait for each other and never both get a row; on
        SQLite the statement runs under the database's one write lock.
        """
        now = utcnow()
        claimable = (
            select(Delivery.id)
            .where(
                Delivery.id.in_(delivery_ids),
                Delivery.state == DeliveryState.PENDING,
                self._claimable(now),
            )
            .with_for_update(skip_locked=True)
        )
        async with self._writers.session() as session:
            claimed = await session.scalars(
                update(Delivery)
                .where(Delivery.id.in_(claimable))
                .values(claimed_by=self.claimant, claimed_until=now + hold)
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
            ids = set(claimed)
            await session.commit()
        return ids

    async def pending_count(self) -> int:
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.state == DeliveryState.PENDING)
            )
        return count or 0

    async def mark_sent(
        self,
        delivery_ids: Sequence[int],
        *,
        card: tuple[int, int, int] | None = None,
        drawn_at: datetime | None = None,
    ) -> None:
        """Record deliveries as done; `card` (incident id, chat id, message id) is the card
        message just sent, remembered on the incident in the same transaction.

        `drawn_at` is the incident's `updated_at` the card was drawn from. A change made
        while the card was on its way queued no edit (the incident had no card yet); if
        the incident changed since, an edit of the new card is queued here instead, so the
        chat never keeps showing an old state.
        """
        async with self._writers.session() as session:
            await self._finish(session, delivery_ids, DeliveryState.SENT)
            if card is not None:
                incident_id, chat_id, message_id = card
                updated_at = await session.scalar(
                    select(Incident.updated_at).where(Incident.id == incident_id)
                )
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident_id)
                    # Posting the card is not a change of the incident: updated_at stays.
                    .values(
                        card_chat_id=chat_id,
                        card_message_id=message_id,
                        updated_at=Incident.updated_at,
                    )
                )
                if drawn_at is not None and updated_at is not None and updated_at != drawn_at:
                    queue_card_edit(session, incident_id, chat_id)
            await session.commit()

    async def mark_folded(self, delivery_ids: Sequence[int]) -> None:
        """Record deliveries covered by one summary message instead of their own."""
        async with self._writers.session() as session:
            await self._finish(session, delivery_ids, DeliveryState.FOLDED)
            await session.commit()

    async def mark_failed(self, delivery_ids: Sequence[int], error: str) -> None:
        """Record deliveries Telegram refused for good; they are not tried again."""
        async with self._writers.session() as session:
            await self._finish(session, delivery_ids, DeliveryState.FAILED, error)
            await session.commit()

    async def postpone(self, delivery_ids: Sequence[int], until: datetime, error: str) -> None:
        """Try these deliveries again at `until` (after a 429, a 5xx, a network error),
        by whichever sender is active then: their claims are handed back. Rows another
        sender holds are left to it."""
        async with self._writers.session() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(delivery_ids), self._claimable(utcnow()))
                .values(
                    not_before=until,
                    attempts=Delivery.attempts + 1,
                    last_error=error[:ERROR_MAX_LENGTH],
                    claimed_by=None,
                    claimed_until=None,
                )
            )
            await session.commit()

    async def move_chat(self, old_chat_id: int, new_chat_id: int) -> None:
        """Follow a group Telegram upgraded to a supergroup: remember the new id and send
        what is still pending there. Replies lose their target: old message ids do not
        carry over."""
        async with self._writers.session() as session:
            await session.merge(
                ChatMigration(
                    old_chat_id=old_chat_id, new_chat_id=new_chat_id, migrated_at=utcnow()
                )
            )
            await session.execute(
                update(Delivery)
                .where(Delivery.chat_id == old_chat_id, Delivery.state == DeliveryState.PENDING)
                .values(chat_id=new_chat_id, reply_to_message_id=None, message_thread_id=None)
            )
            await session.commit()

    async def sent_since(
        self, since: datetime, *, look_at: int = 5000
    ) -> list[tuple[int, datetime]]:
        """The messages sent (cards, edits, summaries) since `since`, by any instance:
        (chat id, when), one per message. Only the `look_at` newest deliveries are looked
        at: Telegram's limits never allow more than a few thousand messages a minute."""
        recent = (
            select(Delivery.chat_id, Delivery.finished_at)
            .where(Delivery.state.in_((DeliveryState.SENT, DeliveryState.FOLDED)))
            .order_by(Delivery.id.desc())
            .limit(look_at)
            .subquery()
        )
        async with self._sessions() as session:
            rows = await session.execute(
                select(recent.c.chat_id, recent.c.finished_at)
                .where(recent.c.finished_at >= since)
                .distinct()
            )
            return [(chat_id, finished_at) for chat_id, finished_at in rows]

    async def chat_migrations(self) -> dict[int, int]:
        """Old group id → its supergroup's id, for every migration seen."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(ChatMigration.old_chat_id, ChatMigration.new_chat_id)
            )
            return {old: new for old, new in rows}

    def _claimable(self, now: datetime) -> ColumnElement[bool]:
        """Rows no other sender holds: never claimed, claim expired, or claimed by us."""
        return or_(
            Delivery.claimed_until.is_(None),
            Delivery.claimed_until <= now,
            Delivery.claimed_by == self.claimant,
        )

    @staticmethod
    async def _finish(
        session: AsyncSession,
        delivery_ids: Sequence[int],
        state: DeliveryState,
        error: str | None = None,
    ) -> None:
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids))
            .values(
                state=state,
                finished_at=utcnow(),
                last_error=None if error is None else error[:ERROR_MAX_LENGTH],
            )
        )

    async def count_by_state(self) -> dict[DeliveryState, int]:
        """How many deliveries are in each state (every state, 0 for none)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(Delivery.state, func.count()).group_by(Delivery.state)
            )
            counted = {DeliveryState(state): count for state, count in rows}
        return {state: counted.get(state, 0) for state in DeliveryState}

    async def oldest_pending_since(self) -> datetime | None:
        """When the oldest delivery still pending was queued; None if none is."""
        async with self._sessions() as session:
            # The lowest id is the oldest: the (state, id) index finds it at once.
            return await session.scalar(
                select(Delivery.created_at)
                .where(Delivery.state == DeliveryState.PENDING)
                .order_by(Delivery.id)
                .limit(1)
            )


def _not_in_chats(chat_ids: Collection[int]) -> list[ColumnElement[bool]]:
    return [Delivery.chat_id.not_in(chat_ids)] if chat_ids else []
