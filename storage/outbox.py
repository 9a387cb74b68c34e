"""The outbox's other end: what the bot's sender reads and records.

Rows are written by `IncidentStore` in the transaction of the change that caused them;
this module hands them out in order and records how each delivery ended.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.database import Writers
from storage.models import (
    ChatMigration,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Incident,
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
    card_locale = (
        select(Delivery.locale)
        .where(Delivery.incident_id == incident_id, Delivery.kind == DeliveryKind.CARD)
        .order_by(Delivery.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    session.add(
        Delivery(
            kind=DeliveryKind.CARD_EDIT,
            incident_id=incident_id,
            chat_id=chat_id,
            locale=card_locale,
            not_before=not_before or utcnow(),
        )
    )


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    delivery: Delivery
    incident: Incident
    """The incident as it is now: a card is always drawn from the current state."""


class Outbox:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, writers: Writers | None = None
    ) -> None:
        """`writers`: the store's, so that the sender's writes take turns with its own."""
        self._sessions = sessions
        self._writers = writers or Writers(sessions)

    async def due(
        self, *, limit: int = 200, exclude_chat_ids: Collection[int] = ()
    ) -> list[PendingDelivery]:
        """Pending deliveries whose time has come, oldest first.

        `exclude_chat_ids`: chats the caller cannot send to right now (their rate limit is
        used up), so that one busy chat's backlog never hides the other chats' deliveries.
        """
        async with self._sessions() as session:
            rows = await session.execute(
                select(Delivery, Incident)
                .join(Incident, Incident.id == Delivery.incident_id)
                .where(
                    Delivery.state == DeliveryState.PENDING,
                    Delivery.not_before <= utcnow(),
                    *_not_in_chats(exclude_chat_ids),
                )
                .order_by(Delivery.id)
                .limit(limit)
            )
            return [PendingDelivery(delivery, incident) for delivery, incident in rows]

    async def next_due_at(self, *, exclude_chat_ids: Collection[int] = ()) -> datetime | None:
        """When the earliest pending delivery may be tried, or None if nothing is pending."""
        async with self._sessions() as session:
            return await session.scalar(
                select(func.min(Delivery.not_before)).where(
                    Delivery.state == DeliveryState.PENDING, *_not_in_chats(exclude_chat_ids)
                )
            )

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
        """Try these deliveries again at `until` (after a 429, a 5xx, a network error)."""
        async with self._writers.session() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(delivery_ids))
                .values(
                    not_before=until,
                    attempts=Delivery.attempts + 1,
                    last_error=error[:ERROR_MAX_LENGTH],
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


def _not_in_chats(chat_ids: Collection[int]) -> list[ColumnElement[bool]]:
    return [Delivery.chat_id.not_in(chat_ids)] if chat_ids else []
