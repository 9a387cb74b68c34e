"""Inline buttons: a card's status buttons and /list's Prev/Next.

Every press is answered, whatever happens: Telegram keeps a button spinning (and counts
it against the bot) until the press gets an answer.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import Bot, Router
from aiogram.types import CallbackQuery
from aiogram.utils.i18n import gettext as _

from bot import actions
from bot.callbacks import ListPage, StatusButton
from bot.cards import LIST_PAGE_SIZE, render_card, render_list_page, shorten, status_label
from bot.operators import Operators
from bot.pipeline import OnQueued
from storage.store import (
    ChatScope,
    IncidentNotFoundError,
    IncidentStore,
    StatusChangedMeanwhileError,
    TransitionNotAllowedError,
)

ANSWER_LIMIT = 200
"""Telegram's limit for the text of a button press's answer (toast or alert)."""


def _answer_text(text: str) -> str:
    return shorten(text, ANSWER_LIMIT)


async def press_status_button(
    callback: CallbackQuery,
    callback_data: StatusButton,
    store: IncidentStore,
    chats: ChatScope,
    operators: Operators,
    bot: Bot,
    on_queued: OnQueued = None,
) -> None:
    """Change the status and answer the press at once.

    The incident's card is edited through the outbox (the store queued the edit with the
    change). Another message with the same buttons (a /status answer) is edited here. A
    press made on an out-of-date card (someone else changed the incident first, or the
    move is no longer allowed) changes nothing: it gets an alert and a refreshed card.
    A button naming another chat's incident (forged data) finds nothing.
    """
    card = callback.message
    pressed = (card.chat.id, card.message_id) if card is not None else None
    if not await operators.allow(card.chat if card is not None else None, callback.from_user):
        await callback.answer(_answer_text(actions.not_an_operator_text()), show_alert=True)
        return
    try:
        change = await store.change_status(
            callback_data.incident,
            callback_data.target,
            expected=callback_data.seen_status,
            changed_by=callback.from_user.full_name,
            changed_by_id=callback.from_user.id,
            chats=chats,
            on_queued=on_queued,
        )
    except IncidentNotFoundError:
        await callback.answer(
            _answer_text(actions.not_found_text(callback_data.incident)), show_alert=True
        )
        return
    except (StatusChangedMeanwhileError, TransitionNotAllowedError) as error:
        explanation = (
            actions.changed_meanwhile_text(error)
            if isinstance(error, StatusChangedMeanwhileError)
            else actions.forbidden_text(error)
        )
        await callback.answer(_answer_text(explanation), show_alert=True)
        if pressed is not None:
            await actions.edit_message(bot, *pressed, render_card(error.incident))
        return
    incident = change.incident
    answer = (
        _("Incident #{id} is now {status}.")
        if change.changed
        else _("Incident #{id} is already {status}.")
    )
    await callback.answer(
        _answer_text(answer.format(id=incident.id, status=status_label(incident.status)))
    )
    is_the_card = pressed == (incident.card_chat_id, incident.card_message_id)
    if pressed is not None and not (change.changed and is_the_card):
        await actions.edit_message(bot, *pressed, render_card(incident))


async def turn_list_page(
    callback: CallbackQuery,
    callback_data: ListPage,
    store: IncidentStore,
    chats: ChatScope,
    bot: Bot,
) -> None:
    """Show another page of this chat's /list in the same message (of `mine`: the
    incidents the person pressing owns)."""
    status = callback_data.status_filter
    page_number = callback_data.page
    before, after = callback_data.before, callback_data.after
    owner_id = callback.from_user.id if callback_data.mine else None
    offset = 0
    if page_number > 0 and before is None and after is None:
        offset = page_number * LIST_PAGE_SIZE
    elif page_number == 0:
        before = after = None
    page = await store.list(
        status=status,
        owner_id=owner_id,
        limit=LIST_PAGE_SIZE,
        offset=offset,
        before=before,
        after=after,
        chats=chats,
    )
    rendered = render_list_page(
        page.items,
        total=page.total,
        status=status,
        page=page_number,
        now=datetime.now(UTC),
        mine=callback_data.mine,
    )
    if callback.message is not None:
        await actions.edit_message(
            bot, callback.message.chat.id, callback.message.message_id, rendered
        )
    await callback.answer()


async def answer_unknown_press(callback: CallbackQuery) -> None:
    """A button this bot does not know (an old version's, say): answered all the same."""
    await callback.answer(_("This button no longer works."))


def create_router() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(press_status_button, StatusButton.filter())
    router.callback_query.register(turn_list_page, ListPage.filter())
    router.callback_query.register(answer_unknown_press)
    return router
