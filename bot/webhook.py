"""Webhook mode: Telegram POSTs updates to the embedded HTTP server.

The route answers 200 only after the update's writes are committed, so Telegram
redelivers anything a crash interrupted (and the store's idempotency makes that safe).
Updates are handled in the order they arrive, as in long polling, and as there, what an
update then says in the chat goes on after the 200: an answer waiting for its chat's
flood allowance holds up neither Telegram's next delivery nor the next update.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Annotated, Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import SecretStr, ValidationError
from starlette.requests import ClientDisconnect

from bot.pipeline import UpdatePipeline

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def create_webhook_router(
    dispatcher: Dispatcher,
    bot: Bot,
    *,
    path: str,
    secret: SecretStr,
    pipeline: UpdatePipeline | None = None,
    **handler_data: Any,
) -> APIRouter:
    """A router with the one route Telegram delivers updates to.

    With `pipeline` (the dispatcher's), an update is answered once it is released by it;
    without, once it is handled.
    """
    router = APIRouter()
    expected = secret.get_secret_value().encode()
    one_at_a_time = asyncio.Lock()
    answering: set[asyncio.Task[Any]] = set()
    """Updates answered 200 whose replies are still on their way."""

    @router.post(path, include_in_schema=False)
    async def receive_update(
        request: Request,
        token: Annotated[str | None, Header(alias=SECRET_HEADER)] = None,
    ) -> Response:
        # Refuse before reading the body: without the secret it is not Telegram talking.
        if token is None or not secrets.compare_digest(token.encode("latin-1"), expected):
            return JSONResponse({"detail": f"Missing or invalid {SECRET_HEADER}"}, 401)
        try:
            body = await request.body()
        except ClientDisconnect:
            # Gone (or cut off by the server for sending too slowly) before the update
            # arrived; the answer reaches no one, and Telegram retries.
            logger.info("A webhook request ended before its update arrived")
            return Response(status_code=400)
        try:
            update = Update.model_validate_json(body, context={"bot": bot})
        except ValidationError as error:
            logger.warning("Refusing a webhook request that is not an update: %s", error)
            return JSONResponse({"detail": "The body is not a Telegram update"}, 400)
        async with one_at_a_time:
            handling = asyncio.create_task(
                dispatcher.feed_update(bot, update, **handler_data),
                name=f"telegram-update-{update.update_id}",
            )
            if pipeline is None:
                await asyncio.wait((handling,))
            else:
                await pipeline.until_released(update.update_id, handling)
        if not handling.done():
            answering.add(handling)
            handling.add_done_callback(_finish_answering(answering, update.update_id))
            return Response(status_code=200)
        if handling.cancelled() or handling.exception() is not None:
            # Not handled, so not committed: answer an error and Telegram retries.
            logger.error(
                "Update %s failed; Telegram will redeliver it",
                update.update_id,
                exc_info=None if handling.cancelled() else handling.exception(),
            )
            return JSONResponse({"detail": "The update could not be handled"}, 503)
        return Response(status_code=200)

    return router


def _finish_answering(
    answering: set[asyncio.Task[Any]], update_id: int
) -> Callable[[asyncio.Task[Any]], None]:
    def finished(handling: asyncio.Task[Any]) -> None:
        answering.discard(handling)
        if not handling.cancelled() and handling.exception() is not None:
            # Its writes were committed before; what failed is what it had to say.
            logger.error(
                "Update %s failed after it was stored", update_id, exc_info=handling.exception()
            )

    return finished
