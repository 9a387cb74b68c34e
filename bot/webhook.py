"""Webhook mode: Telegram POSTs updates to the embedded HTTP server.

The route answers 200 only after the update was handled and committed, so Telegram
redelivers anything a crash interrupted (and the store's idempotency makes that safe).
Updates are handled one at a time, in the order they arrive, as in long polling.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Annotated, Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import SecretStr, ValidationError
from starlette.requests import ClientDisconnect

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def create_webhook_router(
    dispatcher: Dispatcher, bot: Bot, *, path: str, secret: SecretStr, **handler_data: Any
) -> APIRouter:
    """A router with the one route Telegram delivers updates to."""
    router = APIRouter()
    expected = secret.get_secret_value().encode()
    one_at_a_time = asyncio.Lock()

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
            try:
                await dispatcher.feed_update(bot, update, **handler_data)
            except Exception:
                # Not handled, so not committed: answer an error and Telegram retries.
                logger.exception("Update %s failed; Telegram will redeliver it", update.update_id)
                return JSONResponse({"detail": "The update could not be handled"}, 503)
        return Response(status_code=200)

    return router
