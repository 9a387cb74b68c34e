"""The incident store: every operation the bot and the HTTP API perform on incidents.

Each public method is one transaction, committed before it returns. What the bot must say
about a change (a new incident's card, an edit of its card) is written to the outbox in
that same transaction, so no change is ever stored without its message, nor the reverse.
The store imports nothing from aiogram or FastAPI; it speaks in `IncidentRow`s and the
errors below.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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
    EventKind,
    EventRow,
    Incident,
    IncidentCount,
    IncidentEvent,
    IncidentRow,
    utcnow,
)
from storage.outbox import Outbox, queue_card_edit, queue_card_reply
from storage.reminders import Reminder, ReminderPolicy, due_query
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

logger = logging.getLogger(__name__)

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
class Actor:
    """Who makes a change, as the timeline records it: a Telegram user (name and id),
    "api", or a monitoring system."""

    name: str | None
    user_id: int | None = None


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One event of an incident's timeline, as a module writing beside the store hands it
    over (`IncidentStore.record_events`)."""

    incident_id: int
    at: datetime
    kind: EventKind
    by: Actor
    status_from: Status | None = None
    status_to: Status | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class NewIncident:
    description: str
    source: str = DEFAULT_SOURCE
    status: Status = Status.OPEN
    created_by: str | None = None
    created_by_id: int | None = None
    """The reporter's Telegram user id, for the timeline."""
    origin: str | None = None
    """Where it came from, for the timeline's "created" event: "chat" for a message,
    "api" otherwise, unless given (a monitoring system's receiver names itself)."""
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


StatusObserver = Callable[[Sequence[StatusChange]], None]
"""Told the status changes of each commit (see `IncidentStore`'s `on_status_changed`)."""


@dataclass(frozen=True, slots=True)
class IncidentPage:
    items: list[IncidentRow]
    total: int


@dataclass(frozen=True, slots=True)
class Amended:
    incident: IncidentRow
    changed: bool
    """False when nothing needed to change (the owner already owned it, ...)."""


@dataclass(frozen=True, slots=True)
class EventPage:
    items: list[EventRow]
    total: int


class Unset:
    """No value given (where None means something: no owner)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


class OwnedByOtherError(Exception):
    """Someone else owns the incident: taking it over needs a confirmation."""

    def __init__(self, incident: IncidentRow) -> None:
        self.incident = incident
        super().__init__(f"Incident {incident.id} is owned by {incident.owner_name}")


class VersionMismatchError(Exception):
    """The incident changed since the version the caller saw (HTTP If-Match)."""

    def __init__(self, incident: IncidentRow) -> None:
        self.incident = incident
        super().__init__(
            f"Incident {incident.id} has changed since (it is at version {incident.version});"
            " read it again"
        )


# The reads are Core statements over plain rows, built once: building a select() and
# computing its cache key costs about as much as running it, and an ORM Session with
# mapped objects costs more again. Each read is one statement (`storage.statements`);
# values go in as bound parameters.
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


_UNRESOLVED = (Status.OPEN, Status.IN_PROGRESS)


def _owner_filters(by_owner: bool, unresolved: bool) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if by_owner:
        filters.append(_INCIDENTS.c.owner_id == bindparam("owner_id"))
    if unresolved:
        filters.append(_INCIDENTS.c.status.in_([literal(status.value) for status in _UNRESOLVED]))
    return filters


@cache
def _total_query(
    by_status: bool, by_source: bool, chats: int, by_owner: bool = False, unresolved: bool = False
) -> Select[Any]:
    """How many incidents match the filters: in the `chats` chats bound (see `_chat_ids`),
    or with none, in every chat and none. From the kept counts, unless by owner or
    unresolved (which the counts do not keep): then counted on the incidents."""
    if by_owner or unresolved:
        filters = _owner_filters(by_owner, unresolved)
        if chats:
            filters.append(_INCIDENTS.c.chat_id.in_(_chat_ids(chats)))
        if by_status:
            filters.append(_INCIDENTS.c.status == bindparam("status"))
        if by_source:
            filters.append(_INCIDENTS.c.source == bindparam("source"))
        return select(func.count()).select_from(_INCIDENTS).where(*filters)
    counted: list[ColumnElement[bool]] = []
    if chats:
        counted.append(_COUNTS.c.chat_id.in_(_chat_ids(chats)))
    if by_status:
        counted.append(_COUNTS.c.status == bindparam("status"))
    if by_source:
        counted.append(_COUNTS.c.source == bindparam("source"))
    return select(func.coalesce(func.sum(_COUNTS.c.total), 0)).where(*counted)


# Every chat's kept counts added up by status and source (what /metrics reports).
_TOTALS_BY_STATUS_AND_SOURCE = (
    select(_COUNTS.c.status, _COUNTS.c.source, func.sum(_COUNTS.c.total))
    .group_by(_COUNTS.c.status, _COUNTS.c.source)
    .order_by(_COUNTS.c.status, _COUNTS.c.source)
)


@cache
def _page_query(
    by_status: bool,
    by_source: bool,
    below: bool,
    above: bool,
    chats: int,
    by_owner: bool = False,
    unresolved: bool = False,
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
    filters += _owner_filters(by_owner, unresolved)
    total = _total_query(by_status, by_source, chats, by_owner, unresolved).scalar_subquery()
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
        on_status_changed: StatusObserver | None = None,
        fast_paths: bool = True,
    ) -> None:
        """`on_delivery_queued` is called after a commit that put something in the outbox
        (the bot's sender uses it to wake up at once instead of at its next poll).

        `on_status_changed` is called after each commit that changed statuses, with
        every change it made, in order (the metrics' times to take and to resolve): every
        door's status change passes here, and only once it is stored.

        `fast_paths` (the FAST_PATHS setting) lets concurrent writes share a transaction
        (`storage.batching`) and SQLite's statements take one trip to its driver
        (`storage.statements`). Off, every write is a transaction of its own and every
        statement takes SQLAlchemy's ordinary path: the same behaviour, which the store's
        contract tests check both ways.
        """
        self._sessions = sessions
        self._writers = Writers(sessions)
        self._on_delivery_queued = on_delivery_queued
        self._on_status_changed = on_status_changed
        self._fast_paths = fast_paths
        self._creations: GroupCommit[_Creation, Created] = GroupCommit(
            self._write_creations,
            name="incident-creations",
            fails_all=is_storage_unavailable,
            batching=fast_paths,
        )
        self._status_changes: GroupCommit[_StatusRequest, StatusChange] = GroupCommit(
            self._write_status_changes,
            name="incident-status-changes",
            fails_all=is_storage_unavailable,
            batching=fast_paths,
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
        """Raise unless the database answers a query (queued writes are not waited for)."""
        async with self._engine.connect() as connection:
            await connection.execute(_PING)

    async def check_writable(self) -> None:
        """Raise `storage.health.StorageUnavailableError` unless the database takes
        writes now (see `storage.health`: the latest write's outcome, or a probe)."""
        await self._write_check.check()

    @cached_property
    def _write_check(self) -> WriteCheck:
        return WriteCheck(self._engine, self._writers)

    async def settled(self) -> None:
        """Wait for the creations and status changes queued so far to be committed.

        Every read of `_statements` starts with it: a read sees the writes asked for
        before it, even those whose callers have not been told yet (the bot's pipeline
        starts on the next update while the one before waits for its commit).
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
        """How the store runs its statements; each read first waits for `settled`."""
        return Statements(self._engine, before_read=self.settled, single_trip=self._fast_paths)

    async def get(self, incident_id: int, *, chats: ChatScope | None = None) -> IncidentRow:
        """The incident; with `chats`, only if it is theirs (see `ChatScope`)."""
        _check_id(incident_id)
        row = await self._statements.first(_BY_ID, {"id": incident_id})
        incident = None if row is None else IncidentRow._make(row)
        if incident is None or not _in_scope(chats, incident):
            raise IncidentNotFoundError(incident_id)
        return incident

    async def find_by_message(self, chat_id: int, message_id: int) -> IncidentRow | None:
        """The incident made from a Telegram message, or whose card is that message."""
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
        owner_id: int | None = None,
        unresolved: bool = False,
    ) -> IncidentPage:
        """Incidents newest first, with the total count matching the filters; with
        `chats`, only theirs (see `ChatScope`).

        `before` and `after` page by key: the page of incidents just older than the id
        `before` (the next page starts below the last id of this one), or just newer than
        `after` (the previous page ends above the first id of this one). Either costs the
        same at any depth, where `offset` walks past every skipped incident. The total
        counts every page, not just the incidents beyond the key.

        `owner_id` keeps those the person owns; `unresolved`, those open or in progress.
        """
        params: dict[str, Any] = {
            "status": status,
            "source": None if source is None else source.strip().lower(),
            "before": before,
            "after": after,
            "limit": limit,
            "offset": offset,
            "reach": limit + offset,
            "owner_id": owner_id,
        }
        scoped = 0
        if chats is not None:
            if not chats.chat_ids:
                return IncidentPage(items=[], total=0)
            scoped = len(chats.chat_ids)
            params.update((f"chat_{n}", id_) for n, id_ in enumerate(sorted(chats.chat_ids)))
        by_status, by_source, by_owner = (
            status is not None,
            source is not None,
            owner_id is not None,
        )
        page = _page_query(
            by_status,
            by_source,
            before is not None,
            after is not None,
            scoped,
            by_owner,
            unresolved,
        )
        rows = await self._statements.all(page, params)
        if rows:
            total = rows[0][-1]
        else:
            # Past the last page (or nothing matches): no row carried the total.
            (total,) = await self._statements.first(
                _total_query(by_status, by_source, scoped, by_owner, unresolved), params
            ) or (0,)
        items = [IncidentRow._make(row[:-1]) for row in rows]
        if after is not None:
            items.reverse()
        return IncidentPage(items=items, total=int(total))

    async def totals(self) -> Sequence[tuple[Status, str, int]]:
        """How many incidents there are in each status from each source, every chat's
        and none's together: (status, source, total), from the kept counts.

        A status and source that once had incidents and has none now is there with 0.
        """
        rows = await self._statements.all(_TOTALS_BY_STATUS_AND_SOURCE, {})
        return [(Status(status), source, int(total)) for status, source, total in rows]

    async def change_status(
        self,
        incident_id: int,
        new: Status,
        *,
        expected: Status | None = None,
        changed_by: str | None = None,
        changed_by_id: int | None = None,
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
            _StatusRequest(
                incident_id, new, expected, normalize_name(changed_by), changed_by_id, chats
            ),
            on_queued=on_queued,
        )

    async def update_description(
        self, chat_id: int, message_id: int, description: str, *, by: Actor | None = None
    ) -> IncidentRow | None:
        """Follow an edit of the Telegram message an incident was made from (`by`, its
        author); None if no incident came from it."""
        cleaned = normalize_description(description)
        found = await self.find_by_message(chat_id, message_id)
        if found is None or found.message_id != message_id or found.chat_id != chat_id:
            return None

        def edit(incident: IncidentRow, now: datetime) -> _Amendment:
            if incident.description == cleaned:
                return _Amendment()
            return _Amendment(
                {"description": cleaned},
                [
                    _event(
                        incident.id,
                        now,
                        EventKind.DESCRIPTION_EDITED,
                        by or Actor(None),
                        text=cleaned,
                    )
                ],
            )

        return (await self._amend(found.id, edit)).incident

    async def amend(
        self,
        incident_id: int,
        *,
        by: Actor,
        status: Status | None = None,
        description_append: str | None = None,
        owner: Actor | Unset | None = UNSET,
        if_versions: frozenset[int] | None = None,
        chats: ChatScope | None = None,
    ) -> Amended:
        """Several changes to one incident in one transaction, one event each: a status
        (by the transition rules), text appended to the description, an owner set (or
        released with None). With `if_versions`, nothing changes unless the incident is
        still at one of those versions (`VersionMismatchError`)."""
        appended = (
            None if description_append is None else normalize_description(description_append)
        )

        def change(incident: IncidentRow, now: datetime) -> _Amendment:
            if if_versions is not None and incident.version not in if_versions:
                raise VersionMismatchError(incident)
            amendment = _Amendment()
            if status is not None and status != incident.status:
                if not can_transition(incident.status, status):
                    raise TransitionNotAllowedError(incident, status)
                amendment = amendment.with_status(incident, status, now, by)
            if appended is not None:
                description = _appended(incident.description, appended)
                amendment = amendment.merged(
                    _Amendment(
                        {"description": description},
                        [
                            _event(
                                incident.id, now, EventKind.DESCRIPTION_APPENDED, by, text=appended
                            )
                        ],
                    )
                )
            if not isinstance(owner, Unset):
                amendment = amendment.merged(_owner_change(incident, owner, now, by))
            return amendment

        return await self._amend(incident_id, change, chats=chats)

    async def take(
        self,
        incident_id: int,
        by: Actor,
        *,
        confirmed_version: int | None = None,
        chats: ChatScope | None = None,
    ) -> Amended:
        """`by` becomes the owner; an open incident moves to in_progress.

        Taking over from someone else must be confirmed: `confirmed_version` is the
        version the person saw when they confirmed (a second press). Unless the incident
        is still at it, `OwnedByOtherError`, and nothing changes. A closed incident
        cannot be taken (`TransitionNotAllowedError`).
        """

        def take_it(incident: IncidentRow, now: datetime) -> _Amendment:
            if incident.status == Status.CLOSED:
                raise TransitionNotAllowedError(incident, Status.IN_PROGRESS)
            owned_by_other = incident.owner_name is not None and not (
                by.user_id is not None and incident.owner_id == by.user_id
            )
            if owned_by_other and confirmed_version != incident.version:
                raise OwnedByOtherError(incident)
            amendment = _owner_change(incident, by, now, by)
            if incident.status == Status.OPEN:
                amendment = amendment.with_status(incident, Status.IN_PROGRESS, now, by)
            return amendment

        return await self._amend(incident_id, take_it, chats=chats)

    async def release(
        self, incident_id: int, by: Actor, *, chats: ChatScope | None = None
    ) -> Amended:
        """The incident has no owner any more (a no-op if it had none)."""
        return await self._amend(
            incident_id, lambda incident, now: _owner_change(incident, None, now, by), chats=chats
        )

    async def add_note(
        self, incident_id: int, text: str, by: Actor, *, chats: ChatScope | None = None
    ) -> Amended:
        """A note on the incident's timeline (what was tried, what was seen)."""
        cleaned = normalize_description(text)
        return await self._amend(
            incident_id,
            lambda incident, now: _Amendment(
                {}, [_event(incident.id, now, EventKind.NOTE, by, text=cleaned)]
            ),
            chats=chats,
        )

    async def _amend(
        self,
        incident_id: int,
        change: Callable[[IncidentRow, datetime], _Amendment],
        *,
        chats: ChatScope | None = None,
    ) -> Amended:
        """The plain write path: read the incident, let `change` judge it (or raise), write
        the result, its events, its card's edit and its counts in one transaction.

        The UPDATE re-checks the version it read (compare-and-set): if another process
        changed the incident meanwhile, `change` judges it again as it is now.
        """
        _check_id(incident_id)
        # After the writes queued before it, as a read would be.
        await self.settled()
        while True:
            async with self._writers.session() as session:
                row = (await session.execute(_BY_ID, {"id": incident_id})).first()
                incident = None if row is None else IncidentRow._make(row)
                if incident is None or not _in_scope(chats, incident):
                    raise IncidentNotFoundError(incident_id)
                now = utcnow()
                amendment = change(incident, now)
                if not amendment.events:
                    return Amended(incident, changed=False)
                values: dict[str, Any] = {**amendment.values, "version": incident.version + 1}
                # updated_at is when the card's content last changed (a note is not on
                # it); left as it is, or the column's onupdate would set it.
                values["updated_at"] = now if amendment.touches_card else _INCIDENTS.c.updated_at
                updated = (
                    await session.execute(
                        update(_INCIDENTS)
                        .where(
                            _INCIDENTS.c.id == incident_id,
                            _INCIDENTS.c.version == incident.version,
                        )
                        .values(**values)
                        .returning(*_ROW_COLUMNS)
                    )
                ).first()
                if updated is None:
                    continue  # changed meanwhile by another process: judged again
                after = IncidentRow._make(updated)
                await session.execute(_INSERT_EVENTS, amendment.events)
                connection = await session.connection()
                if after.status != incident.status:
                    counts: Counter[tuple[int, Status, str]] = Counter()
                    counts[_counted(incident)] -= 1
                    counts[_counted(after)] += 1
                    await self._add_to_counts(connection, counts)
                edit_queued = amendment.touches_card and self._queue_card_edit(session, after)
                await session.commit()
            if edit_queued:
                self._delivery_queued()
            if after.status != incident.status:
                self._status_changes_committed(
                    [StatusChange(after, previous=incident.status, changed=True)]
                )
            return Amended(after, changed=True)

    async def events(
        self,
        incident_id: int,
        *,
        limit: int = 50,
        offset: int = 0,
        newest: bool = False,
        chats: ChatScope | None = None,
    ) -> EventPage:
        """The incident's timeline, oldest first (newest first with `newest`), a page at a
        time, with how many events it has in all."""
        await self.get(incident_id, chats=chats)
        rows = await self._statements.all(
            _events_query(newest),
            {"incident_id": incident_id, "limit": limit, "offset": offset},
        )
        total = (
            rows[0][-1]
            if rows
            else (
                await self._statements.first(_EVENT_TOTAL, {"incident_id": incident_id}) or (0,)
            )[0]
        )
        return EventPage([EventRow._make(row[:-1]) for row in rows], int(total))

    async def snooze(
        self,
        incident_id: int,
        until: datetime,
        by: Actor,
        *,
        chats: ChatScope | None = None,
    ) -> Amended:
        """No reminders (nor alert-repeat edits of its card) until `until`."""

        def snooze_it(incident: IncidentRow, now: datetime) -> _Amendment:
            return _Amendment(
                {"snoozed_until": until},
                [_event(incident.id, now, EventKind.SNOOZED, by, text=until.isoformat())],
            )

        return await self._amend(incident_id, snooze_it, chats=chats)

    async def due_reminders(
        self, policy: ReminderPolicy, now: datetime, *, limit: int = 100
    ) -> Sequence[int]:
        """The incidents due a reminder now (see `storage.reminders`), oldest first."""
        if not policy.enabled:
            return []
        statement = due_query(
            untaken=policy.remind_after is not None, stale=policy.stale_after is not None
        )
        rows = await self._statements.all(statement, {**policy.bounds(now), "limit": limit})
        return [row[0] for row in rows]

    async def remind(self, incident_id: int, policy: ReminderPolicy, now: datetime) -> bool:
        """Record a reminder of the incident, if it is still due one: a `reminder_sent`
        event and, in the same transaction, the reply to its card in the outbox. False
        when it no longer is (taken, resolved, snoozed, or reminded meanwhile)."""
        statement = due_query(
            untaken=policy.remind_after is not None,
            stale=policy.stale_after is not None,
            one=True,
        )
        async with self._writers.session() as session:
            params = {**policy.bounds(now), "limit": 1, "id": incident_id}
            row = (await session.execute(statement, params)).first()
            if row is None:
                return False
            _, version, untaken = row
            updated = (
                await session.execute(
                    update(_INCIDENTS)
                    .where(_INCIDENTS.c.id == incident_id, _INCIDENTS.c.version == version)
                    .values(version=version + 1, updated_at=_INCIDENTS.c.updated_at)
                    .returning(*_ROW_COLUMNS)
                )
            ).first()
            if updated is None:
                return False  # changed meanwhile: judged again next round
            incident = IncidentRow._make(updated)
            reminder = Reminder.UNTAKEN if untaken else Reminder.STALE
            await session.execute(
                _INSERT_EVENTS,
                [_event(incident.id, now, EventKind.REMINDER_SENT, Actor(None), text=reminder)],
            )
            assert incident.card_chat_id is not None  # due_query takes only carded ones
            queue_card_reply(
                session,
                incident.id,
                incident.card_chat_id,
                incident.card_message_id,
                DeliveryKind.REMINDER,
            )
            await session.commit()
        self._delivery_queued()
        return True

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
            events = [
                _created_event(outcome.incident, creation.new)
                for creation, outcome in zip(batch, created, strict=True)
                if outcome is not None
            ]
            if events:
                await self._statements.execute_many(connection, _INSERT_EVENTS, events)
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
                            "b_read_version": read.version,
                            "b_read_status": read.status,
                            "b_status": now.status,
                            "b_at": now.updated_at,
                            "b_by": now.updated_by,
                            "b_version": now.version,
                        }
                        for id_, (read, now) in by_id.items()
                    ],
                )
                if written != len(by_id):
                    # Lost a race with another process between the read and the UPDATE.
                    await session.rollback()
                    connection = await session.connection()
                    continue
                await self._statements.execute_many(connection, _INSERT_EVENTS, judged.events)
                edits_queued = [self._queue_card_edit(session, now) for _, now in by_id.values()]
                counts: Counter[tuple[int, Status, str]] = Counter()
                for read, now in by_id.values():
                    counts[_counted(read)] -= 1
                    counts[_counted(now)] += 1
                await self._add_to_counts(connection, counts)
                await session.commit()
                if any(edits_queued):
                    self._delivery_queued()
                self._status_changes_committed(outcomes)
                return outcomes

    def _status_changes_committed(self, outcomes: Sequence[StatusChange | Exception]) -> None:
        if self._on_status_changed is None:
            return
        changes = [
            outcome
            for outcome in outcomes
            if isinstance(outcome, StatusChange) and outcome.changed
        ]
        try:
            self._on_status_changed(changes)
        except Exception:
            # The changes are committed: their callers must hear so, whatever an
            # observer does.
            logger.exception("The status change observer failed")

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

    async def record_events(self, session: AsyncSession, events: Iterable[TimelineEvent]) -> None:
        """Write timeline events in `session`'s transaction, as the store's own changes
        write theirs."""
        rows = [
            _event(
                event.incident_id,
                event.at,
                event.kind,
                event.by,
                status_from=event.status_from,
                status_to=event.status_to,
                text=event.text,
            )
            for event in events
        ]
        if rows:
            await session.execute(_INSERT_EVENTS, rows)

    def notify_delivery_queued(self) -> None:
        """Wake the bot's sender: a commit made beside the store queued a delivery."""
        self._delivery_queued()

    def notify_status_changed(self, changes: Sequence[StatusChange]) -> None:
        """Tell the status observer (`on_status_changed`) of changes committed beside the
        store."""
        self._status_changes_committed(changes)

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
    changed_by_id: int | None
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
        "version": 1,
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
# the ORM's bulk insert, which inspects every row.
_INSERT_DELIVERIES = insert(Delivery.metadata.tables[Delivery.__tablename__])

# Moves one incident (of many, executed with a list of them) from the version and status
# it was read in: compare-and-set, so a change another process made meanwhile is not
# overwritten.
_MOVE_STATUS = (
    update(_INCIDENTS)
    .where(
        _INCIDENTS.c.id == bindparam("b_id"),
        _INCIDENTS.c.version == bindparam("b_read_version"),
        _INCIDENTS.c.status == bindparam("b_read_status"),
    )
    .values(
        status=bindparam("b_status"),
        updated_at=bindparam("b_at"),
        updated_by=bindparam("b_by"),
        version=bindparam("b_version"),
    )
)

# Timeline rows, executed with a list of them (`_event`): every column named, so that the
# hot paths can run it in one trip (`Statements.execute_many`).
_EVENT_TABLE = IncidentEvent.metadata.tables[IncidentEvent.__tablename__]
_INSERT_EVENTS = insert(_EVENT_TABLE).values(
    {
        name: bindparam(name, type_=_EVENT_TABLE.c[name].type)
        for name in EventRow._fields
        if name != "id"
    }
)

# The columns a creation writes: what `_incident_values` gives, and the two times.
_INSERTED = (*_IDENTITY, "updated_by", "version", "created_at", "updated_at")

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
        self.events: list[dict[str, Any]] = []
        """One "status_changed" event per change, in the order they were judged."""

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
            status=request.new,
            updated_at=self.now,
            updated_by=request.changed_by,
            version=incident.version + 1,
        )
        self._latest[request.incident_id] = after
        self.changed[request.incident_id] = (read, after)
        self.events.append(
            _event(
                request.incident_id,
                self.now,
                EventKind.STATUS_CHANGED,
                Actor(request.changed_by, request.changed_by_id),
                status_from=current,
                status_to=request.new,
            )
        )
        return StatusChange(after, previous=current, changed=True)


def _event(
    incident_id: int,
    at: datetime,
    kind: EventKind,
    by: Actor,
    *,
    status_from: Status | None = None,
    status_to: Status | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """A timeline row, for `_INSERT_EVENTS`."""
    return {
        "incident_id": incident_id,
        "at": at,
        "kind": kind,
        "actor": normalize_name(by.name),
        "actor_id": by.user_id,
        "status_from": status_from,
        "status_to": status_to,
        "text": text,
    }


def _created_event(incident: IncidentRow, new: NewIncident) -> dict[str, Any]:
    origin = new.origin or ("chat" if new.chat_id is not None else "api")
    return _event(
        incident.id,
        incident.created_at,
        EventKind.CREATED,
        Actor(incident.created_by, new.created_by_id),
        status_to=incident.status,
        text=origin,
    )


@dataclass(frozen=True, slots=True)
class _Amendment:
    """What a change of the plain write path (`IncidentStore._amend`) writes: column values
    and the timeline's events (none: nothing changes)."""

    values: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def touches_card(self) -> bool:
        """Whether the card shows something this changes (a note is not on the card)."""
        return bool(self.values)

    def merged(self, other: _Amendment) -> _Amendment:
        return _Amendment({**self.values, **other.values}, [*self.events, *other.events])

    def with_status(
        self, incident: IncidentRow, status: Status, now: datetime, by: Actor
    ) -> _Amendment:
        return self.merged(
            _Amendment(
                {"status": status, "updated_by": normalize_name(by.name)},
                [
                    _event(
                        incident.id,
                        now,
                        EventKind.STATUS_CHANGED,
                        by,
                        status_from=incident.status,
                        status_to=status,
                    )
                ],
            )
        )


def _owner_change(
    incident: IncidentRow, owner: Actor | None, now: datetime, by: Actor
) -> _Amendment:
    """Set (or with None, release) the owner; nothing if it is already so."""
    if owner is None:
        if incident.owner_id is None and incident.owner_name is None:
            return _Amendment()
        return _Amendment(
            {"owner_id": None, "owner_name": None},
            [_event(incident.id, now, EventKind.OWNER_RELEASED, by, text=incident.owner_name)],
        )
    name = normalize_name(owner.name)
    same_user = owner.user_id is not None and owner.user_id == incident.owner_id
    if same_user or (incident.owner_id, incident.owner_name) == (owner.user_id, name):
        return _Amendment()
    return _Amendment(
        {"owner_id": owner.user_id, "owner_name": name},
        [_event(incident.id, now, EventKind.OWNER_SET, by, text=name)],
    )


def _appended(description: str, addition: str) -> str:
    """The description with `addition` on a line of its own, within the length limit."""
    return normalize_description(f"{description}\n{addition}")


_EVENTS = IncidentEvent.metadata.tables[IncidentEvent.__tablename__]
_EVENT_TOTAL = select(func.count()).where(_EVENTS.c.incident_id == bindparam("incident_id"))


@cache
def _events_query(newest: bool) -> Select[Any]:
    """A page of one incident's events, with their count as the last column."""
    order = _EVENTS.c.id.desc() if newest else _EVENTS.c.id.asc()
    return (
        select(*_EVENTS.c, _EVENT_TOTAL.scalar_subquery().label("total"))
        .where(_EVENTS.c.incident_id == bindparam("incident_id"))
        .order_by(order)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
