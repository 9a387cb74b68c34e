"""Which of the instances sharing one database is the active one.

Telegram takes one getUpdates consumer per token, and its flood limits count what every
instance sends: so exactly one instance at a time long-polls and runs the sender. It is
the one holding the lease (a row in `leases`): taken when free or expired, renewed well
before it expires, given back on a clean stop. Every instance may try; the database's
upsert lets exactly one win, on SQLite and PostgreSQL alike.

A lease's times are the instances' own clocks (UTC): instances on machines whose clocks
disagree by more than a fraction of the lease would overlap or wait longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from functools import cache
from typing import Literal

from sqlalchemy import Insert, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import Lease, utcnow

logger = logging.getLogger(__name__)

Role = Literal["starting", "active", "standby"]

_LEASES = Lease.metadata.tables[Lease.__tablename__]


def instance_name() -> str:
    """This process among the instances: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@cache
def _take_or_renew(dialect: str) -> Insert:
    """Insert the lease, or take it over if it is ours or has expired; RETURNING tells
    whether it is ours now (no row: someone else holds it)."""
    values = {
        "name": bindparam("name"),
        "holder": bindparam("holder"),
        "expires_at": bindparam("expires_at", type_=_LEASES.c.expires_at.type),
    }
    now = bindparam("now", type_=_LEASES.c.expires_at.type)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_LEASES).values(values)
    return statement.on_conflict_do_update(
        index_elements=[_LEASES.c.name],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=(_LEASES.c.holder == statement.excluded.holder) | (_LEASES.c.expires_at < now),
    ).returning(_LEASES.c.holder)


class LeaseStore:
    """The lease `name` as `holder` sees it, lasting `duration` from each renewal."""

    def __init__(
        self, engine: AsyncEngine, name: str, holder: str, *, duration: timedelta
    ) -> None:
        self._engine = engine
        self.name = name
        self.holder = holder
        self.duration = duration

    async def acquire(self) -> datetime | None:
        """Take or renew the lease; until when it is ours, or None if another holds it."""
        now = utcnow()
        expires_at = now + self.duration
        async with self._engine.begin() as connection:
            statement = _take_or_renew(connection.dialect.name)
            won = await connection.execute(
                statement,
                {"name": self.name, "holder": self.holder, "expires_at": expires_at, "now": now},
            )
            return expires_at if won.first() is not None else None

    async def release(self) -> None:
        """Give the lease back (a clean stop): a standby need not wait for it to expire."""
        async with self._engine.begin() as connection:
            await connection.execute(
                delete(_LEASES).where(_LEASES.c.name == self.name, _LEASES.c.holder == self.holder)
            )

    async def current_holder(self) -> str | None:
        async with self._engine.connect() as connection:
            holder: str | None = await connection.scalar(
                select(_LEASES.c.holder).where(
                    _LEASES.c.name == self.name, _LEASES.c.expires_at >= utcnow()
                )
            )
            return holder


class Leadership:
    """Runs what only the active instance may run (`lead`), while this instance holds the
    lease, and waits as a standby while another does.

    A standby tries to take the lease every `check_every`; the active instance renews it
    every `renew_every` and stops leading when it cannot renew before it expires (the
    database unreachable, or another instance took an expired lease). So an instance that
    dies is replaced at most the lease's duration plus `check_every` after its last renewal.
    """

    def __init__(self, lease: LeaseStore, *, check_every: float, renew_every: float) -> None:
        self.lease = lease
        self.role: Role = "starting"
        self._held_until: datetime | None = None
        self._check_every = check_every
        self._renew_every = renew_every
        self._stop = asyncio.Event()

    @classmethod
    def for_failover(
        cls, lease_of: Callable[[timedelta], LeaseStore], seconds: float
    ) -> Leadership:
        """A standby takes over within `seconds` of the active instance's last renewal."""
        duration = seconds * 0.8
        return cls(
            lease_of(timedelta(seconds=duration)),
            check_every=seconds - duration,
            renew_every=duration / 3,
        )

    def stop(self) -> None:
        self._stop.set()

    def holds_lease(self) -> bool:
        """Whether the lease is this instance's at this moment. The active instance's
        sender asks before each message: an instance that was paused past its lease's
        end (and replaced meanwhile) sends nothing more before it notices."""
        return self._held_until is not None and utcnow() < self._held_until

    async def run(self, lead: Callable[[], AbstractAsyncContextManager[None]]) -> None:
        """Until `stop()`: lead while holding the lease, wait as a standby otherwise; on
        the way out, give the lease back."""
        told_standby = False
        try:
            while not self._stop.is_set():
                held_until = await self._try_to_take()
                if held_until is None:
                    self.role = "standby"
                    if not told_standby:
                        holder = await self._holder()
                        logger.info(
                            "Standby: instance %s is active; taking over if it stops",
                            holder or "(unknown)",
                        )
                        told_standby = True
                    await self._pause(self._check_every)
                    continue
                told_standby = False
                self._held_until = held_until
                self.role = "active"
                logger.info(
                    "Active: this instance polls Telegram and sends (%s)", self.lease.holder
                )
                async with lead():
                    await self._keep()
                self._held_until = None
                if not self._stop.is_set():
                    self.role = "standby"
                    logger.warning("No longer active: the lease could not be renewed in time")
        finally:
            if self.role == "active":
                self._held_until = None
                with contextlib.suppress(Exception):
                    await self.lease.release()
            self.role = "standby"

    async def _keep(self) -> None:
        """Renew the lease until stopped, or until it cannot be renewed in time."""
        while not await self._pause(self._renew_every):
            try:
                renewed = await self.lease.acquire()
            except Exception as error:
                logger.warning("Cannot renew the lease: %s", error)
                held_until = self._held_until
                if held_until and utcnow() + timedelta(seconds=self._renew_every) < held_until:
                    continue
                return
            if renewed is None:
                return
            self._held_until = renewed

    async def _try_to_take(self) -> datetime | None:
        try:
            return await self.lease.acquire()
        except Exception as error:
            logger.warning("Cannot read the lease: %s", error)
            return None

    async def _holder(self) -> str | None:
        try:
            return await self.lease.current_holder()
        except Exception:
            return None

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds` or until stopped; True if stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()
