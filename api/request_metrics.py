"""Counting the HTTP API's requests for /metrics: by method, route and status, and timed."""

from __future__ import annotations

import time

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metrics import Metrics

UNMATCHED = "unmatched"
"""The route of a request no route matched: a raw path would make a series per path."""


class RequestMetrics:
    """A pure ASGI middleware (no BaseHTTPMiddleware: it would hold every answer's body
    in a task of its own) that times each HTTP request to the end of its answer."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless an answer starts: an error that escaped is the server's 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self._metrics.http_request(
                scope["method"], route_template(scope), status, time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (`/incidents/{incident_id}`): the
    router notes the route it picked in the request's scope."""
    route = scope.get("route")
    if not isinstance(route, BaseRoute):
        return UNMATCHED
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else UNMATCHED
