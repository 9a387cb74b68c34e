"""The incident store: every operation the bot and the HTTP API perform on incidents.

Each public method is one transaction, committed before it returns. What the bot must say
about a change (a new incident's card, an edit of its card) is written to the outbox in
that same transaction, so no change is ever stored without its message, nor the reverse.
The store imports nothing from aiogram or FastAPI; it speaks in `IncidentRow`s and the
errors below.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, cached_property
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    Select,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from storage.batching import GroupCommit
from storage.database import Writers
from storage.errors import is_storage_unavailable
from storage.health import WriteCheck
from storage.leadership import LeaseStore
from storage.models import (
    NO_CHAT,
    Delivery,
    DeliveryKind,
    Incident,
    IncidentCount,
    IncidentRow,
    utcnow,
)
from storage.outbox import Outbox, queue_card_edit
from storage.rules import (
    DEFAULT_SOURCE,
    INCIDENT_ID_MAX,
    Status,
    allowed_next,
    can_transition,
    normalize_description,
    normalize_name,
    normalize_source,
)
from storage.statements import Statements

# Adds to the count of a chat's incidents with a status and source (creating it at the
# first one). Upsert syntax that SQLite (3.24+) and PostgreSQL share.
_ADD_TO_COUNT = text(
    "INSERT INTO incident_counts (chat_id, status, source, total)"
    " VALUES (:chat_id, :status, :source, :delta)"
    " ON CONFLICT (chat_id, status, source)"
    " DO UPDATE SET total = incident_counts.total + excluded.total"
)


class IncidentNotFoundError(LookupError):
    def __init__(self, incident_id: int) -> None:
        super().__init__(f"Incident {incident_id} not found")
        self.incident_id = incident_id


class TransitionNotAllowedError(Exception):
    """The incident's current status does not allow the requested one."""

    def __init__(self, incident: IncidentRow, requested: Status) -> None:
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

    def __init__(self, incident: IncidentRow, expected: Status) -> None:
        self.incident = incident
        self.expected = expected
        super().__init__(f"Incident {incident.id} is {incident.status} now, no longer {expected}")


@dataclass(frozen=True, slots=True)
class ChatScope:
    """The incidents a chat's commands, replies and buttons may see and change: those of
    the chat itself and of the groups Telegram upgraded into it.

    Reads and changes given a scope treat every other incident as not found. The HTTP API
    gives none and sees every incident.
    """

    chat_ids: frozenset[int]

    def sees(self, incident: IncidentRow) -> bool:
        return incident.chat_id in self.chat_ids


def _in_scope(chats: ChatScope | None, incident: IncidentRow) -> bool:
    return chats is None or chats.sees(incident)


@dataclass(frozen=True, slots=True)
class NewIncident:
    description: str
    source: str = DEFAULT_SOURCE
    status: Status = Status.OPEN
    created_by: str | None = None
    chat_id: int | None = None
    """The chat it was reported in. Without one, an incident whose card is announced in a
    chat belongs to that chat (the HTTP API's, NOTIFY_CHAT_ID)."""
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
    incident: IncidentRow
    created: bool
    """False when the message or Idempotency-Key had already produced this incident."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    incident: IncidentRow
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
# one statement (`storage.statements`); values go in as bound parameters.
_INCIDENTS = Incident.metadata.tables[Incident.__tablename__]
_COUNTS = IncidentCount.__table__
_ROW_COLUMNS = [_INCIDENTS.c[name] for name in IncidentRow._fields]

_PING = select(literal(1))
_BY_ID = select(*_ROW_COLUMNS).where(_INCIDENTS.c.id == bindparam("id"))


@cache
def _incidents_with_ids(count: int) -> Select[Any]:
    """The incidents whose ids are bound as id_0 ... id_<count - 1>."""
    ids: list[BindParameter[int]] = [bindparam(f"id_{n}") for n in range(count)]
    return select(*_ROW_COLUMNS).where(_INCIDENTS.c.id.in_(ids))


def _by_ids(ids: set[int]) -> tuple[Select[Any], dict[str, int]]:
    """The statement and values that read the incidents with these ids (a batch's).

    The id list is padded to a power of two by repeating an id, so a handful of
    statements serve every batch, each compiled once.
    """
    listed = sorted(ids)
    count = 1 << (len(listed) - 1).bit_length()
    listed += listed[-1:] * (count - len(listed))
    return _incidents_with_ids(count), {f"id_{n}": id_ for n, id_ in enumerate(listed)}


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


def _chat_ids(count: int) -> list[BindParameter[int]]:
    """A scope's chats, bound as chat_0 ... chat_<count - 1>."""
    return [bindparam(f"chat_{n}") for n in range(count)]


@cache
def _total_query(by_status: bool, by_source: bool, chats: int) -> Select[Any]:
    """How many incidents match the status and source filters, from the kept counts:
    in the `chats` chats bound (see `_chat_ids`), or with none, in every chat and none."""
    counted: list[ColumnElement[bool]] = []
    if chats:
        counted.append(_COUNTS.c.chat_id.in_(_chat_ids(chats)))
    if by_status:
        counted.append(_COUNTS.c.status == bindparam("status"))
    if by_source:
        counted.append(_COUNTS.c.source == bindparam("source"))
    return select(func.coalesce(func.sum(_COUNTS.c.total), 0)).where(*counted)


@cache
def _page_query(
    by_status: bool, by_source: bool, below: bool, above: bool, chats: int
) -> Select[Any]:
    """A page of incidents with the filters' total as its last column (one per shape),
    of the `chats` chats bound (see `_chat_ids`), or with none, of every chat and none.

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
    total = _total_query(by_status, by_source, chats).scalar_subquery()
    # The page just newer than `after` is read upwards from it, then turned around.
    order = _INCIDENTS.c.id.asc() if above else _INCIDENTS.c.id.desc()
    if chats <= 1:
        if chats:
            filters.append(_INCIDENTS.c.chat_id == bindparam("chat_0"))
        return (
            select(*_ROW_COLUMNS, total.label("total"))
            .where(*filters)
            .order_by(order)
            .limit(bindparam("limit"))
            .offset(bindparam("offset"))
        )
    # A chat and the groups it was upgraded from: `chat_id IN (...)` cannot walk an index
    # in id order, and would sort every incident of those chats. Each chat's part of the
    # page is read on its own index instead, as far as the page reaches, then merged.
    parts = [
        select(
            select(*_ROW_COLUMNS)
            .where(*filters, _INCIDENTS.c.chat_id == chat_id)
            .order_by(order)
            .limit(bindparam("reach"))
            .subquery()
        )
        for chat_id in _chat_ids(chats)
    ]
    merged = union_all(*parts).subquery()
    return (
        select(*merged.c, total.label("total"))
        .order_by(merged.c.id.asc() if above else merged.c.id.desc())
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
        self._creations: GroupCommit[_Creation, Created] = GroupCommit(
            self._write_creations, name="incident-creations", fails_all=is_storage_unavailable
        )
        self._status_changes: GroupCommit[_StatusRequest, StatusChange] = GroupCommit(
            self._write_status_changes,
            name="incident-status-changes",
            fails_all=is_storage_unavailable,
        )

    @property
    def outbox(self) -> Outbox:
        """The other end of what this store queues: the bot's sender reads it."""
        return Outbox(self._sessions, writers=self._writers)

    def lease(self, name: str, holder: str, duration: timedelta) -> LeaseStore:
        """The lease `name` among the instances sharing this database
        (`storage.leadership`)."""
        return LeaseStore(self._engine, name, holder, duration=duration)

    async def ping(self) -> None:
        """Raise unless the database answers a query."""
        await self._statements.all(_PING, {})

    async def check_writable(self) -> None:
        """Raise `storage.health.StorageUnavailableError` unless the database takes
        writes now (see `storage.health`: the latest write's outcome, or a probe)."""
        await self._write_check.check()

    @cached_property
    def _write_check(self) -> WriteCheck:
        return WriteCheck(self._engine, self._writers)

    async def settled(self) -> None:
        """Wait for the creations and status changes queued so far to be committed.

        Every read starts with it: a read sees the writes asked for before it, even those
        whose callers have not been told yet (the bot's pipeline starts on the next update
        while the one before waits for its commit).
        """
        await self._creations.settled()
        await self._status_changes.settled()

    async def create(
        self,
        new: NewIncident,
        *,
        card: CardRequest | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> Created:
        """Store a new incident, or return the one this message or key already made.

        With `card`, the incident's card is queued for the bot in the same transaction;
        a duplicate queues nothing (its first delivery already queued the card).
        Concurrent creations share a transaction (`storage.batching`); each is committed
        before this returns. `on_queued` is called once the creation waits for its
        commit (see `GroupCommit.submit`).
        """
        creation = _Creation(_incident_values(new, card), new, card)
        return await self._creations.submit(creation, on_queued=on_queued)

    @cached_property
    def _engine(self) -> AsyncEngine:
        engine = self._sessions.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("IncidentStore needs sessions bound to an AsyncEngine")
        return engine

    @cached_property
    def _statements(self) -> Statements:
        return Statements(self._engine)

    async def get(self, incident_id: int, *, chats: ChatScope | None = None) -> IncidentRow:
        """The incident; with `chats`, only if it is theirs (see `ChatScope`)."""
        _check_id(incident_id)
        await self.settled()
        row = await self._statements.first(_BY_ID, {"id": incident_id})
        incident = None if row is None else IncidentRow._make(row)
        if incident is None or not _in_scope(chats, incident):
            raise IncidentNotFoundError(incident_id)
        return incident

    async def find_by_message(self, chat_id: int, message_id: int) -> IncidentRow | None:
        """The incident made from a Telegram message, or whose card is that message."""
        await self.settled()
        row = await self._statements.first(
            _BY_MESSAGE, {"chat_id": chat_id, "message_id": message_id}
        )
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
        chats: ChatScope | None = None,
    ) -> IncidentPage:
        """Incidents newest first, with the total count matching the filters; with
        `chats`, only theirs (see `ChatScope`).

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
            "reach": limit + offset,
        }
        scoped = 0
        if chats is not None:
            if not chats.chat_ids:
                return IncidentPage(items=[], total=0)
            scoped = len(chats.chat_ids)
            params.update((f"chat_{n}", id_) for n, id_ in enumerate(sorted(chats.chat_ids)))
        by_status, by_source = status is not None, source is not None
        page = _page_query(by_status, by_source, before is not None, after is not None, scoped)
        await self.settled()
        rows = await self._statements.all(page, params)
        if rows:
            total = rows[0][-1]
        else:
            # Past the last page (or nothing matches): no row carried the total.
            (total,) = await self._statements.first(
                _total_query(by_status, by_source, scoped), params
            ) or (0,)
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
        chats: ChatScope | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> StatusChange:
        """Move an incident to `new` if its current status allows it; with `chats`, only
        an incident of theirs (any other is not found, see `ChatScope`). `on_queued` as
        for `create`.

        `expected` is the status the caller acted on (a button pressed on a card): if the
        incident has moved on since, the change is refused rather than applied blindly.
        Concurrent changes share a transaction and are judged in the order they came, each
        against the result of the ones before it.
        """
        _check_id(incident_id)
        # Judged against the incident as every write queued before it leaves it: a
        # creation still in the queue is stored first.
        await self._creations.settled()
        return await self._status_changes.submit(
            _StatusRequest(incident_id, new, expected, normalize_name(changed_by), chats),
            on_queued=on_queued,
        )

    async def update_description(
        self, chat_id: int, message_id: int, description: str
    ) -> IncidentRow | None:
        """Follow an edit of the Telegram message an incident was made from."""
        cleaned = normalize_description(description)
        await self.settled()
        async with self._writers.session() as session:
            row = (
                await session.execute(
                    update(_INCIDENTS)
                    .where(_INCIDENTS.c.chat_id == chat_id, _INCIDENTS.c.message_id == message_id)
                    .values(description=cleaned, updated_at=utcnow())
                    .returning(*_ROW_COLUMNS)
                )
            ).first()
            incident = None if row is None else IncidentRow._make(row)
            edit_queued = incident is not None and self._queue_card_edit(session, incident)
            await session.commit()
        if edit_queued:
            self._delivery_queued()
        return incident

    async def _write_creations(self, batch: Sequence[_Creation]) -> Sequence[Created | Exception]:
        """INSERTs for the batch's incidents (a few, of fixed sizes), one for their cards,
        one for the counts.

        A message or Idempotency-Key seen before inserts nothing (ON CONFLICT DO NOTHING)
        and its creation gets the incident stored the first time.
        """
        now = utcnow()
        rows = [{**creation.values, "created_at": now, "updated_at": now} for creation in batch]
        async with self._writers.session() as session:
            connection = await session.connection()
            inserted: list[tuple[Any, ...]] = []
            for piece in _in_insert_sizes(rows):
                insert_piece = _insert_new_incidents(connection.dialect.name, len(piece))
                inserted += await self._statements.all_in(
                    connection, insert_piece, _numbered(piece)
                )
            # RETURNING comes in no promised order: each row goes to a creation with the
            # same values (identical creations are interchangeable).
            unclaimed: dict[tuple[Any, ...], deque[int]] = defaultdict(deque)
            for index, creation in enumerate(batch):
                unclaimed[_identity(creation.values)].append(index)
            created: list[Created | None] = [None] * len(batch)
            for row in inserted:
                incident = IncidentRow._make(row)
                created[unclaimed[_identity(incident)].popleft()] = Created(incident, True)
            deliveries = [
                _card_delivery(outcome.incident.id, creation.card)
                for creation, outcome in zip(batch, created, strict=True)
                if outcome is not None and creation.card is not None
            ]
            if deliveries:
                await session.execute(_INSERT_DELIVERIES, deliveries)
            await self._add_to_counts(
                connection,
                Counter(_counted(outcome.incident) for outcome in created if outcome is not None),
            )
            outcomes: list[Created | Exception] = []
            for creation, stored in zip(batch, created, strict=True):
                if stored is not None:
                    outcomes.append(stored)
                    continue
                # A redelivered Telegram message or a retried HTTP request: the original,
                # never a second row.
                existing = await self._find_duplicate(session, creation.new)
                outcomes.append(
                    Created(existing, created=False)
                    if existing is not None
                    else RuntimeError(f"{creation.new} was neither stored nor found")
                )
            await session.commit()
        if deliveries:
            self._delivery_queued()
        return outcomes

    async def _write_status_changes(
        self, batch: Sequence[_StatusRequest]
    ) -> Sequence[StatusChange | Exception]:
        """Read the batch's incidents, judge each request in order, write the result.

        The UPDATE re-checks, in its WHERE clause, each status it read (compare-and-set):
        if another process changed one of them meanwhile, the batch is judged again
        against what that process wrote.
        """
        async with self._writers.session() as session:
            connection = await session.connection()
            while True:
                statement, values = _by_ids({request.incident_id for request in batch})
                found = await self._statements.all_in(connection, statement, values)
                incidents = map(IncidentRow._make, found)
                judged = _Judgement({incident.id: incident for incident in incidents}, utcnow())
                outcomes = [judged.apply(request) for request in batch]
                if not judged.changed:
                    return outcomes
                # In id order: two transactions locking the same rows in the same order
                # cannot deadlock (PostgreSQL locks each row as it updates it).
                by_id = dict(sorted(judged.changed.items()))
                written = await self._statements.execute_many(
                    connection,
                    _MOVE_STATUS,
                    [
                        {
                            "b_id": id_,
                            "b_read": read.status,
                            "b_status": now.status,
                            "b_at": now.updated_at,
                            "b_by": now.updated_by,
                        }
                        for id_, (read, now) in by_id.items()
                    ],
                )
                if written != len(by_id):
                    # Lost a race with another process between the read and the UPDATE.
                    await session.rollback()
                    connection = await session.connection()
                    continue
                edits_queued = [self._queue_card_edit(session, now) for _, now in by_id.values()]
                counts: Counter[tuple[int, Status, str]] = Counter()
                for read, now in by_id.values():
                    counts[_counted(read)] -= 1
                    counts[_counted(now)] += 1
                await self._add_to_counts(connection, counts)
                await session.commit()
                if any(edits_queued):
                    self._delivery_queued()
                return outcomes

    @staticmethod
    def _queue_card_edit(session: AsyncSession, incident: IncidentRow) -> bool:
        """Queue an edit of the incident's card, if it has one, to show it as it is now.

        An incident whose card is still waiting in the outbox needs no edit: the card is
        drawn from the incident as it is when it is sent.
        """
        if incident.card_chat_id is None or incident.card_message_id is None:
            return False
        queue_card_edit(session, incident.id, incident.card_chat_id)
        return True

    async def _add_to_counts(
        self, connection: AsyncConnection, deltas: Counter[tuple[int, Status, str]]
    ) -> None:
        """Keep `incident_counts` in step, in the transaction of the change itself."""
        # In key order, as the status changes are written, so that two transactions
        # never take the same rows' locks in opposite orders.
        changes = [
            {"chat_id": chat_id, "status": status.value, "source": source, "delta": delta}
            for (chat_id, status, source), delta in sorted(deltas.items())
            if delta
        ]
        if changes:
            await self._statements.execute_many(connection, _ADD_TO_COUNT, changes)

    def _delivery_queued(self) -> None:
        if self._on_delivery_queued is not None:
            self._on_delivery_queued()

    # -- for the modules that write incidents beside the store (storage.alerts) ---------

    @property
    def writers(self) -> Writers:
        """The store's write transactions: a module writing incidents beside the store
        takes turns with the store's own writes through them (see `Writers`)."""
        return self._writers

    async def count_changes(
        self,
        connection: AsyncConnection,
        changes: Iterable[tuple[IncidentRow | None, IncidentRow]],
    ) -> None:
        """Keep `incident_counts` in step with incidents written beside the store, in that
        write's transaction: (None, incident) for one created, (before, after) for one
        whose status (or source) changed."""
        deltas: Counter[tuple[int, Status, str]] = Counter()
        for before, after in changes:
            if before is not None:
                deltas[_counted(before)] -= 1
            deltas[_counted(after)] += 1
        await self._add_to_counts(connection, deltas)

    def notify_delivery_queued(self) -> None:
        """Wake the bot's sender: a commit made beside the store queued a delivery."""
        self._delivery_queued()

    @staticmethod
    async def _find_duplicate(session: AsyncSession, new: NewIncident) -> IncidentRow | None:
        """The incident stored before under this Idempotency-Key, else from this message."""
        keys = []
        if new.idempotency_key is not None:
            keys.append(_INCIDENTS.c.idempotency_key == new.idempotency_key)
        if new.chat_id is not None and new.message_id is not None:
            keys.append(
                and_(
                    _INCIDENTS.c.chat_id == new.chat_id,
                    _INCIDENTS.c.message_id == new.message_id,
                )
            )
        for key in keys:
            found = (await session.execute(select(*_ROW_COLUMNS).where(key))).first()
            if found is not None:
                return IncidentRow._make(found)
        return None


def _check_id(incident_id: int) -> None:
    """An id no incident can have is not found, here rather than as the database's
    overflow error (which, in a batch of status changes, would fail every change in it)."""
    if not 1 <= incident_id <= INCIDENT_ID_MAX:
        raise IncidentNotFoundError(incident_id)


# What `create` is handed to write: the incident's checked column values, and the request.
@dataclass(frozen=True, slots=True)
class _Creation:
    values: dict[str, Any]
    new: NewIncident
    card: CardRequest | None


@dataclass(frozen=True, slots=True)
class _StatusRequest:
    incident_id: int
    new: Status
    expected: Status | None
    changed_by: str | None
    chats: ChatScope | None


def _counted(incident: IncidentRow) -> tuple[int, Status, str]:
    """The `incident_counts` row that counts this incident."""
    chat_id = NO_CHAT if incident.chat_id is None else incident.chat_id
    return chat_id, incident.status, incident.source


def _incident_values(new: NewIncident, card: CardRequest | None = None) -> dict[str, Any]:
    """The new incident's columns; raises InvalidIncidentError before anything is queued."""
    # Announced without a chat of its own (over HTTP): the announcement's chat owns it.
    chat_id = new.chat_id if new.chat_id is not None or card is None else card.chat_id
    created_by = normalize_name(new.created_by)
    return {
        "description": normalize_description(new.description),
        "source": normalize_source(new.source),
        "status": new.status,
        "created_by": created_by,
        "updated_by": created_by,
        "chat_id": chat_id,
        "message_id": new.message_id,
        "idempotency_key": new.idempotency_key,
    }


_IDENTITY = (
    "description",
    "source",
    "status",
    "created_by",
    "chat_id",
    "message_id",
    "idempotency_key",
)


def _identity(incident: IncidentRow | dict[str, Any]) -> tuple[Any, ...]:
    """What tells the rows of one INSERT apart: the values a creation gives them."""
    if isinstance(incident, dict):
        return tuple(incident[name] for name in _IDENTITY)
    return tuple(getattr(incident, name) for name in _IDENTITY)


# The outbox rows for new incidents' cards, executed with a list of them; Core rather than
# the ORM's bulk insert, which inspects every row (a tenth of what storing a report costs).
_INSERT_DELIVERIES = insert(Delivery.metadata.tables[Delivery.__tablename__])

# Moves one incident (of many, executed with a list of them) from the status it was read
# in: compare-and-set, so a change another process made meanwhile is not overwritten.
_MOVE_STATUS = (
    update(_INCIDENTS)
    .where(_INCIDENTS.c.id == bindparam("b_id"), _INCIDENTS.c.status == bindparam("b_read"))
    .values(
        status=bindparam("b_status"), updated_at=bindparam("b_at"), updated_by=bindparam("b_by")
    )
)

# The columns a creation writes: what `_incident_values` gives, and the two times.
_INSERTED = (*_IDENTITY, "updated_by", "created_at", "updated_at")

# A batch's new incidents go out as INSERTs of these sizes, largest first (13 = 8 + 4 + 1):
# each INSERT is one trip to the driver, and these few are the only ones ever compiled.
_INSERT_SIZES = (64, 32, 16, 8, 4, 2, 1)


@cache
def _insert_new_incidents(dialect: str, rows: int) -> Insert:
    """Adds `rows` incidents, skipping any whose message or Idempotency-Key was stored
    before: INSERT ... ON CONFLICT DO NOTHING, which SQLite and PostgreSQL share and
    SQLAlchemy spells per dialect. Row n's values are bound as "<column>_<n>"."""
    values = [
        {name: bindparam(f"{name}_{n}", type_=_INCIDENTS.c[name].type) for name in _INSERTED}
        for n in range(rows)
    ]
    statement: Insert
    if dialect == "postgresql":
        statement = postgresql.insert(_INCIDENTS).values(values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(_INCIDENTS).values(values).on_conflict_do_nothing()
    return statement.returning(*_ROW_COLUMNS)


def _in_insert_sizes(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    start = 0
    for size in _INSERT_SIZES:
        while len(rows) - start >= size:
            yield rows[start : start + size]
            start += size


def _numbered(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {f"{name}_{n}": row[name] for n, row in enumerate(rows) for name in _INSERTED}


def _card_delivery(incident_id: int, card: CardRequest) -> dict[str, Any]:
    return {
        "kind": DeliveryKind.CARD,
        "incident_id": incident_id,
        "chat_id": card.chat_id,
        "reply_to_message_id": card.reply_to_message_id,
        "message_thread_id": card.message_thread_id,
        "locale": card.locale,
    }


class _Judgement:
    """The status requests of one batch, judged in order, each against the incident as
    the requests before it left it."""

    def __init__(self, found: dict[int, IncidentRow], now: datetime) -> None:
        self.now = now
        self._found = found
        self._latest: dict[int, IncidentRow] = {}
        self.changed: dict[int, tuple[IncidentRow, IncidentRow]] = {}
        """Incident id -> (the incident as read, as the batch leaves it)."""

    def apply(self, request: _StatusRequest) -> StatusChange | Exception:
        read = self._found.get(request.incident_id)
        if read is None or not _in_scope(request.chats, read):
            return IncidentNotFoundError(request.incident_id)
        incident = self._latest.get(request.incident_id, read)
        current = incident.status
        if current == request.new:
            return StatusChange(incident, previous=current, changed=False)
        if request.expected is not None and current != request.expected:
            return StatusChangedMeanwhileError(incident, request.expected)
        if not can_transition(current, request.new):
            return TransitionNotAllowedError(incident, request.new)
        after = incident._replace(
            status=request.new, updated_at=self.now, updated_by=request.changed_by
        )
        self._latest[request.incident_id] = after
        self.changed[request.incident_id] = (read, after)
        return StatusChange(after, previous=current, changed=True)
