"""The route classes the routers here use: an endpoint's docstring is its summary, and
/incidents checks the API key first."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api.dependencies import require_api_key


class DocstringSummaryRoute(APIRoute):
    """Takes the OpenAPI summary from the endpoint's one-line docstring.

    By default FastAPI derives the summary from the function's name ("Create Incident")
    and uses the docstring only as the description.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        docstring = (endpoint.__doc__ or "").strip()
        if docstring and kwargs.get("summary") is None:
            kwargs["summary"] = docstring.splitlines()[0]
        super().__init__(path, endpoint, **kwargs)


class KeyFirstRoute(DocstringSummaryRoute):
    """A route that checks the API key before it reads anything else of the request.

    FastAPI reads and parses the body before it runs any dependency, so a key check
    made as a dependency comes after the body's errors: a stranger would get a 422 that
    judges their body, not a 401. The check runs here instead, ahead of FastAPI's own
    handler. A body FastAPI cannot decode (not UTF-8, nested too deeply, a number too
    long) gets the 422 that any other malformed JSON gets, rather than FastAPI's bare,
    undocumented 400.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_with_key_first(request: Request) -> Response:
            await require_api_key(request)
            try:
                return await handle(request)
            except HTTPException as error:
                # FastAPI's only 400: raised from the error that stopped it decoding the body.
                if error.status_code != 400 or error.__cause__ is None:
                    raise
                raise RequestValidationError([_unreadable_body(error.__cause__)]) from error

        return handle_with_key_first


def _unreadable_body(cause: BaseException) -> dict[str, Any]:
    if isinstance(cause, UnicodeError):
        reason = "Body is not valid UTF-8"
    elif isinstance(cause, RecursionError):
        reason = "Body is nested too deeply"
    else:
        reason = "Body cannot be decoded"
    # The shape of FastAPI's own error for malformed JSON, so clients see one kind of 422.
    return {
        "type": "json_invalid",
        "loc": ("body",),
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": reason},
    }
