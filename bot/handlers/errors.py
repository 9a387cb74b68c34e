"""The last resort: an update whose handler failed is logged and the person gets an apology."""

from __future__ import annotations

import logging

from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import gettext as _

from bot.cards import escape

logger = logging.getLogger(__name__)


async def apologize(event: ErrorEvent) -> None:
    """Log the failure with its update id, then tell the person, briefly.

    An answer given up because the chat is at its flood limit gets no apology: that would
    only be one more message to a chat that cannot take any.
    """
    update = event.update
    if isinstance(event.exception, TelegramRetryAfter):
        logger.warning("Update %s: no answer sent: %s", update.update_id, event.exception)
        return
    logger.error(
        "Update %s failed: %s: %s",
        update.update_id,
        type(event.exception).__name__,
        event.exception,
        exc_info=event.exception,
    )
    apology = _("Sorry, something went wrong. Please try again later.")
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(apology, show_alert=True)
        elif update.message is not None:
            await update.message.reply(escape(apology))
        elif update.channel_post is not None:
            await update.channel_post.reply(escape(apology))
    except TelegramAPIError as error:
        logger.warning("Could not apologise for update %s: %s", update.update_id, error)
