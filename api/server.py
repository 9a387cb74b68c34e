"""The HTTP server, with bounds on what one client can make it hold and for how long.

uvicorn picks httptools' parser (uvicorn[standard] installs it), which keeps whatever
header bytes arrive: 32 MB of header fields are held in full, and a request head that
stops halfway is waited for forever. The bounds here are checked where the bytes arrive,
before anything is parsed into Python objects, so a flood costs a connection and a few
kilobytes, never the memory of the process. Request bodies are bounded in time here
and in size by the app (`api.app.MAX_BODY_BYTES`), where each route knows what it takes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import uvicorn
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

# The request line and header fields of one request together, as nginx's and Node's
# defaults bound them (8-16 KiB): the API's own requests use a few hundred bytes.
MAX_HEADER_BYTES = 16 * 1024
# As Apache's LimitRequestFields.
MAX_HEADER_FIELDS = 100
# From a connection's first byte (or from the end of its previous request) to the end of
# the request head; a total, not an idle time, so a byte every few seconds does not help.
HEADER_TIMEOUT_SECONDS = 10.0
# From the end of a request head to the end of its body: a body of a megabyte at most
# (see api.app) arrives at 35 KB/s. A body that stops coming ties up a connection and
# the request's task for good otherwise; so does one streamed on after a 413.
BODY_TIMEOUT_SECONDS = 30.0
# How long an idle connection is kept open between requests (uvicorn's default).
KEEP_ALIVE_SECONDS = 5
# Open connections at once. Each can hold a request head and one read of its body
# (uvicorn stops reading a body at 64 KiB until the app asks for more): well under a
# megabyte apiece, and well under the usual limit of 1024 open files.
MAX_CONNECTIONS = 256
# After a refusal the connection is read and dropped for this long before it is closed:
# closing a socket with unread input resets it, and the client would lose the answer.
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class ServerLimits:
    max_header_bytes: int = MAX_HEADER_BYTES
    max_header_fields: int = MAX_HEADER_FIELDS
    header_timeout: float = HEADER_TIMEOUT_SECONDS
    body_timeout: float = BODY_TIMEOUT_SECONDS
    max_connections: int = MAX_CONNECTIONS


def create_server(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    timeout_graceful_shutdown: int | None = None,
    max_header_bytes: int = MAX_HEADER_BYTES,
    max_header_fields: int = MAX_HEADER_FIELDS,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
    keep_alive_timeout: int = KEEP_ALIVE_SECONDS,
) -> uvicorn.Server:
    """A uvicorn server for `app` on `host`:`port` that keeps the limits above."""
    chosen = ServerLimits(
        max_header_bytes, max_header_fields, header_timeout, body_timeout, max_connections
    )
    # uvicorn builds one protocol per connection from the class it is given; the limits
    # and the state the connections share travel on a class made for this server.
    protocol = type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": chosen, "refusing_connections": False},
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        # The app has no WebSocket routes: an upgrade request is served as plain HTTP,
        # never handed to a second protocol with limits of its own.
        ws="none",
        timeout_keep_alive=keep_alive_timeout,
        # The service configures logging itself.
        log_config=None,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        # Start-up and shutdown are run by the caller, around serve(); an ASGI lifespan
        # would only add a task that a second Ctrl+C leaves behind, cancelled.
        lifespan="off",
    )
    return uvicorn.Server(config)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounding each request head in size, fields and time.

    httptools has no limits of its own and hands a header field over only once it is
    complete, so the size is counted on the raw bytes in `data_received`, before the
    parser sees them. The field count and the timer use the parser callbacks uvicorn
    already implements (`on_headers_complete`, `on_message_complete`); everything else,
    including the answer to a request with too many fields, goes through uvicorn's own
    request cycle. The reach into uvicorn is these overrides and the attributes they read
    (`connections`, `cycle`, `headers`, `app`, `flow`, `loop`, `transport`).
    """

    limits: ClassVar[ServerLimits] = ServerLimits()
    # Whether the last connection was turned away: the warning is logged once per spell.
    refusing_connections: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A connection starts out waiting for a request head; again after each request.
        self._reading_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        # Set once a refusal is answered: whatever arrives afterwards is dropped.
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cls = type(self)
        if len(self.connections) > self.limits.max_connections:
            if not cls.refusing_connections:
                logger.warning(
                    "Closing new connections: %d are open, the limit",
                    self.limits.max_connections,
                )
            cls.refusing_connections = True
            self._refused = True
            self.transport.close()
            return
        cls.refusing_connections = False
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._reading_head:
            self._feed(data)
            return
        if self._head_timer is None:
            self._arm_head_timer()
        room = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # The head has to end within `room` bytes. The parser keeps its place between
        # calls, so it is given those first, and the rest only if the head ended there.
        # Whatever follows in that rest (a pipelined request) is not counted: the bound
        # holds to within one read, which the event loop caps at 256 KiB.
        if room > 0:
            self._feed(data[:room])
            if self.transport.is_closing():
                return
        if self._reading_head:
            self._refuse(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"The request line and header fields exceed {self.limits.max_header_bytes} bytes",
            )
            return
        self._feed(data[room:])

    def _feed(self, data: bytes) -> None:
        super().data_received(data)
        # A head without the rest of its request: the body is on its way. (Checked here
        # rather than per request, so that a request that came whole costs no timer.)
        if not self._reading_head and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_late)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_head_timer()
        if len(self.headers) <= self.limits.max_header_fields:
            super().on_headers_complete()
            return
        # uvicorn starts (or queues behind a pipelined request) `self.app` for the
        # request it just parsed, as it does with its own 503 for limit_concurrency; for
        # this one request that app is the refusal.
        app, self.app = self.app, self._too_many_fields
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    async def _too_many_fields(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limits.max_header_fields
        logger.info("Refused a request from %s: more than %d header fields", self.client, limit)
        response = JSONResponse(
            {"detail": f"The request has more than {limit} header fields"},
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._head_bytes == 0:
            # Nothing of a request arrived: there is no one to answer.
            self._refused = True
            self.transport.close()
            return
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            f"The request head did not arrive within {self.limits.header_timeout:g} seconds",
        )

    def _body_late(self) -> None:
        self._body_timer = None
        logger.info(
            "Closed the connection from %s: a request body did not arrive within %g seconds",
            self.client,
            self.limits.body_timeout,
        )
        # The app may be reading the body: it sees the client gone, as when one leaves.
        self._refused = True
        self.transport.close()

    def _refuse(self, status: HTTPStatus, detail: str) -> None:
        """Answer `status` in place of the request whose head is being read, and close."""
        logger.info("Refused a request from %s: %s (%d)", self.client, detail, status)
        self._refused = True
        self._cancel_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request's response is still to be written on this connection;
            # an answer cannot go before it, so the connection ends after it instead.
            self.cycle.keep_alive = False
            return
        body = json.dumps({"detail": detail}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, status.phrase.encode(), len(body), body)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        # Keep reading (and dropping) until the client closes or the time is up.
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
