"""The route class every router here uses: an endpoint's docstring is its summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute


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
