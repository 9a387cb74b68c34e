"""The database schema, as SQLAlchemy 2 declarative models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.rules import (
    DESCRIPTION_MAX_LENGTH,
    NAME_MAX_LENGTH,
    SEVERITY_MAX_LENGTH,
    SOURCE_MAX_LENGTH,
    Status,
)

# Stable constraint names, so Alembic migrations can refer to (and drop) them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database.

    SQLite has no time zones and hands back naive values; this type stores UTC and
    always returns an aware datetime, so no naive time ever leaves the store.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the store keeps UTC-aware times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        # On SQLite the two steps (the dialect parses the text, then process_result_value
        # makes it aware) are one call here: two values per incident add up on a page,
        # and datetime.replace() costs more than the parse itself.
        if dialect.name == "sqlite":
            return _utc_from_sqlite
        return super().result_processor(dialect, coltype)


def _utc_from_sqlite(value: Any) -> datetime | None:
    """SQLite's text for a UTCDateTime, as the aware datetime process_result_value gives."""
    if value is None:
        return None
    try:
        # As the store writes it: UTC without an offset, "2024-05-01 12:00:00.000000".
        return datetime.fromisoformat(value + "+00:00")
    except ValueError:
        parsed = datetime.fromisoformat(value)  # one that carries its own offset
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _string_enum(enum: type[StrEnum], *, length: int = 16) -> SAEnum:
    # Stored as its plain value (no database ENUM type, which SQLite lacks); a named
    # check constraint (`_values_in`) keeps every database as strict as the code.
    return SAEnum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
    )


def _values_in(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN (" + ", ".join(f"'{member.value}'" for member in enum) + ")"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Incident(Base):
    __tablename__ = "incidents"

    # 64-bit everywhere; SQLite wants exactly INTEGER for its auto-incrementing rowid key.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[Status] = mapped_column(_string_enum(Status), default=Status.OPEN)
    source: Mapped[str] = mapped_column(String(SOURCE_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Who reported it and who last changed its status: a Telegram name, "api", ...
    created_by: Mapped[str | None] = mapped_column(String(128))
    updated_by: Mapped[str | None] = mapped_column(String(128))
    # The chat it belongs to, and the Telegram message it came from (unique together, so
    # one message is one incident). An incident created over HTTP belongs to the chat it
    # is announced in (NOTIFY_CHAT_ID) and has no message; with the bot off, to no chat.
    # A chat's commands, replies and buttons see only its own incidents (`ChatScope`).
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    # The bot's card for this incident, so a status change made elsewhere can edit it.
    card_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    card_message_id: Mapped[int | None] = mapped_column(BigInteger)
    # An HTTP client's Idempotency-Key: a retried POST returns this incident again.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Who is handling it: a Telegram user (id and name), or someone named over HTTP.
    owner_id: Mapped[int | None] = mapped_column(BigInteger)
    owner_name: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH))
    # Goes up by one with every change (each event on its timeline): the HTTP API's ETag.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # For an incident a monitoring system raised (`storage.alerts`): the alert's severity
    # label, how many times the alert came again while the incident was unresolved and
    # when it last did, and the incident this alert raised before (resolved or closed).
    severity: Mapped[str | None] = mapped_column(String(SEVERITY_MAX_LENGTH))
    # Filled by the database (server default): the store's INSERTs name only their own columns.
    repeat_count: Mapped[int] = mapped_column(Integer, server_default="0")
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    previous_id: Mapped[int | None] = mapped_column(BigInteger)
    # No reminders (nor alert-repeat edits of the card) until then.
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("chat_id", "message_id"),
        CheckConstraint(_values_in("status", Status), name="status_known"),
        CheckConstraint(f"length(source) BETWEEN 1 AND {SOURCE_MAX_LENGTH}", name="source_length"),
        CheckConstraint(
            f"length(description) BETWEEN 1 AND {DESCRIPTION_MAX_LENGTH}",
            name="description_length",
        ),
        # Listing is newest first (id descending), filtered by status and/or source:
        # these indexes let every such query walk an index instead of the table.
        Index(None, "status", "id"),
        Index(None, "source", "id"),
        Index(None, "card_chat_id", "card_message_id"),
        # A chat's /list: its incidents newest first, all of them or those in one status.
        Index(None, "chat_id", "id"),
        Index(None, "chat_id", "status", "id"),
        # /mine: a person's incidents.
        Index(None, "owner_id", "id"),
    )

    def __repr__(self) -> str:
        return f"Incident(id={self.id}, status={self.status!s}, source={self.source!r})"


class IncidentRow(NamedTuple):
    """An incident as it travels: what the store's reads and writes return and what the
    outbox hands the sender. A plain row, detached from any session.

    Reads skip the ORM: turning a page of rows into mapped objects (instance state,
    identity map) costs more than the query itself. It has every column of `Incident`,
    in table order, under the same names, so both read the same way.
    """

    id: int
    description: str
    status: Status
    source: str
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    updated_by: str | None
    chat_id: int | None
    message_id: int | None
    card_chat_id: int | None
    card_message_id: int | None
    idempotency_key: str | None
    owner_id: int | None
    owner_name: str | None
    version: int
    severity: str | None = None
    repeat_count: int = 0
    last_seen_at: datetime | None = None
    previous_id: int | None = None
    snoozed_until: datetime | None = None


NO_CHAT = 0
"""`IncidentCount.chat_id` for the incidents of no chat (Telegram never uses 0 for a chat):
a primary key cannot hold NULL."""


class IncidentCount(Base):
    """How many incidents each chat has in each status and from each source.

    The store keeps it in the transaction of every create and status change, so the total
    behind a page (X-Total-Count, /list's "1-20 of N") is a sum over a few rows rather
    than a count of every matching incident.
    """

    __tablename__ = "incident_counts"

    # First in the key: a chat's total is read from its own rows.
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    status: Mapped[Status] = mapped_column(_string_enum(Status), primary_key=True)
    source: Mapped[str] = mapped_column(String(SOURCE_MAX_LENGTH), primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint(_values_in("status", Status), name="status_known"),)


class EventKind(StrEnum):
    """What happened to an incident: one row of its timeline."""

    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    DESCRIPTION_EDITED = "description_edited"
    DESCRIPTION_APPENDED = "description_appended"
    OWNER_SET = "owner_set"
    OWNER_RELEASED = "owner_released"
    NOTE = "note"
    REMINDER_SENT = "reminder_sent"
    SNOOZED = "snoozed"
    ALERT_REPEATED = "alert_repeated"
    """A monitoring system sent the alert again (its text: how many repeats in all)."""


class IncidentEvent(Base):
    """An incident's timeline: every change, who made it and when, written in the
    transaction of the change itself."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[EventKind] = mapped_column(_string_enum(EventKind, length=24))
    # Who: a Telegram user's name (and id), "api", or a monitoring system.
    actor: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    # For a status change, the statuses; for a note or a description, its text; for
    # created, where from ("chat", "api"); for an owner, the owner's name.
    status_from: Mapped[Status | None] = mapped_column(_string_enum(Status))
    status_to: Mapped[Status | None] = mapped_column(_string_enum(Status))
    text: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_values_in("kind", EventKind), name="kind_known"),
        # A timeline is read in order, a page at a time.
        Index(None, "incident_id", "id"),
    )


class EventRow(NamedTuple):
    """An event as the store's reads return it (every column of `IncidentEvent`)."""

    id: int
    incident_id: int
    at: datetime
    kind: EventKind
    actor: str | None
    actor_id: int | None
    status_from: Status | None
    status_to: Status | None
    text: str | None


class DeliveryKind(StrEnum):
    CARD = "card"
    """Send the incident's card: a reply to its report, or an announcement."""
    CARD_EDIT = "card_edit"
    """Edit the incident's existing card to show it as it is now."""
    RESOLVED_NOTICE = "resolved_notice"
    """A short reply to the incident's card: a monitoring system resolved it (`actor`)."""
    REMINDER = "reminder"
    """A reply to the card: nobody has taken the incident, or nothing happened for long."""


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FOLDED = "folded"
    """Not sent on its own: a storm summary message covered it."""
    FAILED = "failed"
    """Telegram refused it for good (chat gone, bot removed...); recorded, not retried."""


class Delivery(Base):
    """The outbox: what the bot must say, written in the transaction that caused it.

    A background sender delivers the rows; a crash between the change and the send loses
    neither, and storing an incident never waits on Telegram.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[DeliveryKind] = mapped_column(_string_enum(DeliveryKind))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    reply_to_message_id: Mapped[int | None] = mapped_column(BigInteger)
    message_thread_id: Mapped[int | None] = mapped_column(BigInteger)
    # The language the card is written in (the reporter's), None for the default.
    locale: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[DeliveryState] = mapped_column(
        _string_enum(DeliveryState), default=DeliveryState.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The sender about to send it (an instance's name), and until when no other sender
    # may take it (`Outbox.claim`). Kept once the row is done: who sent it.
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who a notice names ("Alertmanager" resolved it): fixed when it is queued, since the
    # incident may have been changed by someone else by the time it is sent.
    actor: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH))

    __table_args__ = (
        CheckConstraint(_values_in("kind", DeliveryKind), name="kind_known"),
        CheckConstraint(_values_in("state", DeliveryState), name="state_known"),
        # The sender's one query: pending rows in order.
        Index(None, "state", "id"),
        Index(None, "incident_id"),
    )


class AlertKey(Base):
    """Which incident an alert's key (an Alertmanager or Grafana group, a `dedup_key`)
    raised last: a repeat while it is unresolved counts on it, a trigger after it was
    resolved or closed raises a new one and moves the key there (`storage.alerts`).

    One row per key, so that instances receiving the same alert at once raise one
    incident: each moves the key only from the incident it read (compare-and-set), and
    the one that finds it moved meanwhile starts over.
    """

    __tablename__ = "alert_keys"

    # sha256 of the key, hex: keys are as long as the monitoring system makes them (a
    # group's labels), and an index holds only so much of a value.
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(Text)
    """The key as the monitoring system sent it, prefixed with its kind, for people."""
    alert_text: Mapped[str] = mapped_column(Text)
    """The description the alert gave last. A repeat replaces that part of the incident's
    description and keeps what people added after it."""
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )


class ChatMigration(Base):
    """A group that Telegram upgraded to a supergroup, under its new id."""

    __tablename__ = "chat_migrations"

    old_chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    new_chat_id: Mapped[int] = mapped_column(BigInteger)
    migrated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WriteProbe(Base):
    """Always empty: /health writes a row here and deletes it, to prove writes commit."""

    __tablename__ = "write_probes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class Lease(Base):
    """Who holds a role among the instances sharing this database, and until when.

    The holder renews its lease well before `expires_at`; another instance may take the
    role only once the lease has expired (`storage.leadership`).
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
