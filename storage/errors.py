"""Telling a database that cannot serve now from a request the database refuses.

A locked SQLite file, a full disk, an I/O error, a lost connection: the same request
may succeed in a moment, so the HTTP API answers 503 with Retry-After and the bot's
sender retries. A constraint the request breaks or a bug in a statement would fail
again however long one waited; those stay errors of their own.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# SQLite's primary result codes for a database that cannot serve now
# (https://sqlite.org/rescode.html): BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT,
# FULL, CANTOPEN, PROTOCOL, NOTADB. sqlite3 raises OperationalError for plain SQL
# errors too ("no such table"), so for SQLite the code decides, not the class.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 15, 26})

# PostgreSQL's SQLSTATE classes for a server that cannot serve now
# (https://www.postgresql.org/docs/current/errcodes-appendix.html): 08 connection
# exception, 53 insufficient resources (disk full, out of memory, too many connections),
# 57P0x the server shutting down or starting up, 58 system error (I/O). asyncpg raises
# most of them as its plain Error, so for PostgreSQL the code decides, not the class.
_POSTGRESQL_UNAVAILABLE_CLASSES = ("08", "53", "58")
_POSTGRESQL_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03"})
# 08P01 is a protocol violation: what the server says to a value it cannot take (a NUL
# in text), not a connection that was lost.
_POSTGRESQL_REFUSED = frozenset({"08P01"})


def is_storage_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot serve now, rather than refusing this."""
    if isinstance(error, PoolTimeoutError):
        return True  # every pooled connection is busy
    if isinstance(error, OSError):
        # A database server that cannot be reached: asyncpg's connect raises the socket's
        # own error (refused, timed out, no such host), which SQLAlchemy passes on as is.
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    code = getattr(error.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_UNAVAILABLE
    sqlstate = getattr(error.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate not in _POSTGRESQL_REFUSED and (
            sqlstate in _POSTGRESQL_UNAVAILABLE
            or sqlstate.startswith(_POSTGRESQL_UNAVAILABLE_CLASSES)
        )
    return isinstance(error, OperationalError | InterfaceError)


def describe(error: BaseException) -> str:
    """The driver's own words for a storage error, in one line without the statement.

    SQLAlchemy's message repeats the SQL and its parameters (a reporter's text among
    them) and a link; the log needs only what went wrong.
    """
    reason = error.orig if isinstance(error, DBAPIError) else error
    text = " ".join(str(reason).split()) or type(reason).__name__
    return f"{type(reason).__name__}: {text}"
