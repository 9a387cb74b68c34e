"""The incident store: every operation the bot and the HTTP API perform on incidents.

Each public method is one transaction, committed before it returns. What the bot must say
about a change (a new incident's card, an edit of its card) is written to the outbox in
that same transaction, so no change is ever stored without its message, nor the reverse.
The store imports nothing from aiogram or FastAPI; it speaks in `Incident` rows and the
errors below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

from sqlalchemy import BindParameter, Select, and_, bindparam, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.database import Writers
from storage.models import Delivery, DeliveryKind, Incident, IncidentCount, IncidentRow, utcnow
from storage.outbox import Outbox, queue_card_edit
from storage.rules import (
    DEFAULT_SOURCE,
    Status,
    allowed_next,
    can_transition,
    normalize_description,
    normalize_source,
    statuses_leading_to,
)

# Adds to the count of incidents with a status and source (creating it at the first one).
# Upsert syntax that SQLite (3.24+) and PostgreSQL share.
_ADD_TO_COUNT = text(
    "INSERT INTO incident_counts (status, source, total) VALUES (:status, :source, :delta)"
    " ON CONFLICT (status, source) DO UPDATE SET total = incident_counts.total + excluded.total"
)


class IncidentNotFoundError(LookupError):
    def __init__(self, incident_id: int) -> None:
        super().__init__(f"Incident {incident_id} not found")
        self.incident_id = incident_id


class TransitionNotAllowedError(Exception):
    """The incident's current status does not allow the requested one."""

    def __init__(self, incident: Incident, requested: Status) -> None:
        self.incident = incident
        self.current = incident.status
        self.requested = requested
        self.allowed = allowed_next(incident.status)
        allowed = ", ".join(self.allowed) or "none, it is final"
        super().__init__(
            f"Incident {incident.id} cannot go from {self.current} to {requested};"
            f" allowed from {self.current}: {allowed}"
        )


class StatusChangedMeanwhileError(Exception):
    """The incident is no longer in the status the caller saw (a lost race)."""

    def __init__(self, incident: Incident, expected: Status) -> None:
        self.incident = incident
        self.expected = expected
        super().__init__(f"Incident {incident.id} is {incident.status} now, no longer {expected}")


@dataclass(frozen=True, slots=True)
class NewIncident:
    description: str
    source: str = DEFAULT_SOURCE
    status: Status = Status.OPEN
    created_by: str | None = None
    chat_id: int | None = None
    message_id: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class CardRequest:
    """Where the bot should post a new incident's card."""

    chat_id: int
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class Created:
    incident: Incident
    created: bool
    """False when the message or Idempotency-Key had already produced this incident."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    incident: Incident
    previous: Status
    changed: bool
    """False when the incident already had the requested status (a successful no-op)."""


@dataclass(frozen=True, slots=True)
class IncidentPage:
    items: list[IncidentRow]
    total: int


# The reads are Core statements over plain rows, built once. Building a select() and
# computing its cache key costs about as much as running it, and an ORM Session with
# mapped objects costs more again: together most of a list request's time. Each read is
# one statement on a pooled connection; values go in as bound parameters.
_INCIDENTS = Incident.__table__
_COUNTS = IncidentCount.__table__
_ROW_COLUMNS = [_INCIDENTS.c[name] for name in IncidentRow._fields]

_BY_ID = select(*_ROW_COLUMNS).where(_INCIDENTS.c.id == bindparam("id"))

_MESSAGE_CHAT: BindParameter[int] = bindparam("chat_id")
_MESSAGE_ID: BindParameter[int] = bindparam("message_id")
_BY_MESSAGE = (
    select(*_ROW_COLUMNS)
    .where(
        or_(
            and_(_INCIDENTS.c.chat_id == _MESSAGE_CHAT, _INCIDENTS.c.message_id == _MESSAGE_ID),
            and_(
                _INCIDENTS.c.card_chat_id == _MESSAGE_CHAT,
                _INCIDENTS.c.card_message_id == _MESSAGE_ID,
            ),
        )
    )
    .limit(1)
)


@cache
def _total_query(by_status: bool, by_source: bool) -> Select[Any]:
    """How many incidents match the status and source filters, from the kept counts."""
    counted = []
    if by_status:
        counted.append(_COUNTS.c.status == bindparam("status"))
    if by_source:
        counted.append(_COUNTS.c.source == bindparam("source"))
    return select(func.coalesce(func.sum(_COUNTS.c.total), 0)).where(*counted)


@cache
def _page_query(by_status: bool, by_source: bool, below: bool, above: bool) -> Select[Any]:
    """A page of incidents with the filters' total as its last column (one per shape).

    The total rides along as a scalar subquery, so a page and its count are one round
    trip, read from one snapshot. Every row repeats it; an empty page carries none.
    """
    filters = []
    if by_status:
        filters.append(_INCIDENTS.c.status == bindparam("status"))
    if by_source:
        filters.append(_INCIDENTS.c.source == bindparam("source"))
    if below:
        filters.append(_INCIDENTS.c.id < bindparam("before"))
    if above:
        filters.append(_INCIDENTS.c.id > bindparam("after"))
    total = _total_query(by_status, by_source).scalar_subquery()
    # The page just newer than `after` is read upwards from it, then turned around.
    return (
        select(*_ROW_COLUMNS, total.label("total"))
        .where(*filters)
        .order_by(_INCIDENTS.c.id.asc() if above else _INCIDENTS.c.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


class IncidentStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        on_delivery_queued: Callable[[], None] | None = None,
    ) -> None:
        """`on_delivery_queued` is called after a commit that put something in the outbox
        (the bot's sender uses it to wake up at once instead of at its next poll)."""
        self._sessions = sessions
        self._writers = Writers(sessions)
        self._on_delivery_queued = on_delivery_queued

    @property
    def outbox(self) -> Outbox:
        """The other end of what this store queues: the bot's sender reads it."""
        return Outbox(self._sessions, writers=self._writers)

    async def ping(self) -> None:
        """Raise unless the database answers a query."""
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    async def create(self, new: NewIncident, *, card: CardRequest | None = None) -> Created:
        """Store a new incident, or return the one this message or key already made.

        With `card`, the incident's card is queued for the bot in the same transaction;
        a duplicate queues nothing (its first delivery already queued the card).
        """
        incident = Incident(
            description=normalize_description(new.description),
            source=normalize_source(new.source),
            status=new.status,
            created_by=new.created_by,
            updated_by=new.created_by,
            chat_id=new.chat_id,
            message_id=new.message_id,
            idempotency_key=new.idempotency_key,
        )
        async with self._writers.session() as session:
            session.add(incident)
            try:
                if card is not None:
                    await session.flush()  # the incident's id, for the outbox row
                    session.add(
                        Delivery(
                            kind=DeliveryKind.CARD,
                            incident_id=incident.id,
                            chat_id=card.chat_id,
                            reply_to_message_id=card.reply_to_message_id,
                            message_thread_id=card.message_thread_id,
                            locale=card.locale,
                        )
                    )
                await self._add_to_counts(session, incident.source, (incident.status, 1))
                await session.commit()
            except IntegrityError:
                # A unique key says it was stored before: a redelivered Telegram message
                # or a retried HTTP request. Return the original, never a second row.
                await session.rollback()
                existing = await self._find_duplicate(session, new)
                if existing is None:
                    raise
                return Created(existing, created=False)
        if card is not None:
            self._delivery_queued()
        return Created(incident, created=True)

    @cached_property
    def _engine(self) -> AsyncEngine:
        """What the reads run on: a pooled connection each, no Session needed."""
        engine = self._sessions.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("IncidentStore needs sessions bound to an AsyncEngine")
        return engine

    async def get(self, incident_id: int) -> IncidentRow:
        async with self._engine.connect() as connection:
            row = (await connection.execute(_BY_ID, {"id": incident_id})).first()
        if row is None:
            raise IncidentNotFoundError(incident_id)
        return IncidentRow._make(row)

    async def find_by_message(self, chat_id: int, message_id: int) -> IncidentRow | None:
        """The incident made from a Telegram message, or whose card is that message."""
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    _BY_MESSAGE, {"chat_id": chat_id, "message_id": message_id}
                )
            ).first()
        return None if row is None else IncidentRow._make(row)

    async def list(
        self,
        *,
        status: Status | None = None,
        source: str | None = None,
        limit: int = 50,
        offset: int = 0,
        before: int | None = None,
        after: int | None = None,
    ) -> IncidentPage:
        """Incidents newest first, with the total count matching the filters.

        `before` and `after` page by key: the page of incidents just older than the id
        `before` (the next page starts below the last id of this one), or just newer than
        `after` (the previous page ends above the first id of this one). Either costs the
        same at any depth, where `offset` walks past every skipped incident. The total
        counts every page, not just the incidents beyond the key.
        """
        params: dict[str, Any] = {
            "status": status,
            "source": None if source is None else source.strip().lower(),
            "before": before,
            "after": after,
            "limit": limit,
            "offset": offset,
        }
        by_status, by_source = status is not None, source is not None
        page = _page_query(by_status, by_source, before is not None, after is not None)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(page, params)).all()
            if rows:
                total = rows[0][-1]
            else:
                # Past the last page (or nothing matches): no row carried the total.
                total = await connection.scalar(_total_query(by_status, by_source), params)
        items = [IncidentRow._make(row[:-1]) for row in rows]
        if after is not None:
            items.reverse()
        return IncidentPage(items=items, total=int(total))

    async def change_status(
        self,
        incident_id: int,
        new: Status,
        *,
        expected: Status | None = None,
        changed_by: str | None = None,
    ) -> StatusChange:
        """Move an incident to `new` if its current status allows it.

        `expected` is the status the caller acted on (a button pressed on a card): if the
        incident has moved on since, the change is refused rather than applied blindly.
        The UPDATE re-checks the status it read in its WHERE clause (compare-and-set), so
        of two concurrent changes only one can pass; the loser re-reads and is judged
        against the winner's result.
        """
        async with self._writers.session() as session:
            while True:
                incident = await session.get(Incident, incident_id, populate_existing=True)
                if incident is None:
                    raise IncidentNotFoundError(incident_id)
                current = incident.status
                if current == new:
                    return StatusChange(incident, previous=current, changed=False)
                if expected is not None and current != expected:
                    raise StatusChangedMeanwhileError(incident, expected)
                if not can_transition(current, new):
                    raise TransitionNotAllowedError(incident, new)
                changed = await session.scalar(
                    update(Incident)
                    .where(
                        Incident.id == incident_id,
                        Incident.status == current,
                        Incident.status.in_(statuses_leading_to(new)),
                    )
                    .values(status=new, updated_at=utcnow(), updated_by=changed_by)
                    .returning(Incident)
                    .execution_options(synchronize_session=False, populate_existing=True),
                )
                if changed is None:
                    # Lost a race between the read and the UPDATE: judge again.
                    await session.rollback()
                    continue
                edit_queued = self._queue_card_edit(session, changed)
                await self._add_to_counts(session, changed.source, (current, -1), (new, 1))
                await session.commit()
                if edit_queued:
                    self._delivery_queued()
                return StatusChange(changed, previous=current, changed=True)

    async def update_description(
        self, chat_id: int, message_id: int, description: str
    ) -> Incident | None:
        """Follow an edit of the Telegram message an incident was made from."""
        cleaned = normalize_description(description)
        async with self._writers.session() as session:
            incident = await session.scalar(
                update(Incident)
                .where(Incident.chat_id == chat_id, Incident.message_id == message_id)
                .values(description=cleaned, updated_at=utcnow())
                .returning(Incident)
                .execution_options(synchronize_session=False),
            )
            edit_queued = incident is not None and self._queue_card_edit(session, incident)
            await session.commit()
        if edit_queued:
            self._delivery_queued()
        return incident

    @staticmethod
    def _queue_card_edit(session: AsyncSession, incident: Incident) -> bool:
        """Queue an edit of the incident's card, if it has one, to show it as it is now.

        An incident whose card is still waiting in the outbox needs no edit: the card is
        drawn from the incident as it is when it is sent.
        """
        if incident.card_chat_id is None or incident.card_message_id is None:
            return False
        queue_card_edit(session, incident.id, incident.card_chat_id)
        return True

    @staticmethod
    async def _add_to_counts(
        session: AsyncSession, source: str, *changes: tuple[Status, int]
    ) -> None:
        """Keep `incident_counts` in step, in the transaction of the change itself."""
        await session.execute(
            _ADD_TO_COUNT,
            [
                {"status": status.value, "source": source, "delta": delta}
                for status, delta in changes
            ],
        )

    def _delivery_queued(self) -> None:
        if self._on_delivery_queued is not None:
            self._on_delivery_queued()

    @staticmethod
    async def _find_duplicate(session: AsyncSession, new: NewIncident) -> Incident | None:
        if new.idempotency_key is not None:
            found = await session.scalar(
                select(Incident).where(Incident.idempotency_key == new.idempotency_key)
            )
            if found is not None:
                return found
        if new.chat_id is not None and new.message_id is not None:
            return await session.scalar(
                select(Incident).where(
                    Incident.chat_id == new.chat_id, Incident.message_id == new.message_id
                )
            )
        return None
