"""Self-tests of the Bot API stand-in, driven by a real aiogram Bot and Dispatcher over HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import GetUpdates
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReplyParameters,
)
from aiogram.utils.text_decorations import html_decoration as html
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from tests.telegram_stub import (
    FaultKind,
    Limit,
    RateLimits,
    TelegramStub,
)


def keyboard(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=data)] for text, data in buttons
        ]
    )


# One event loop and one Bot for the module: closing an aiogram session costs a fixed
# 0.25 s, so each test gets a fresh stand-in and points the shared Bot's session at it.
pytestmark = pytest.mark.asyncio(loop_scope="module")
TOKEN = "123456:TEST-stand-in-self-tests"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_bot() -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base("http://127.0.0.1:9"))
    async with Bot(
        TOKEN, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML)
    ) as bot:
        yield bot


@pytest_asyncio.fixture(loop_scope="module")
async def stub() -> AsyncIterator[TelegramStub]:
    async with TelegramStub(token=TOKEN) as stub:
        yield stub


@pytest_asyncio.fixture(loop_scope="module")
async def bot(stub: TelegramStub, shared_bot: Bot) -> Bot:
    shared_bot.session.api = TelegramAPIServer.from_base(stub.base_url)
    return shared_bot


def echo_router() -> Router:
    router = Router(name="echo")

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.reply(f"<b>echo:</b> {html.quote(message.text or '')}")

    @router.edited_message(F.text)
    async def edited(message: Message) -> None:
        await message.reply(f"edited: {html.quote(message.text or '')}")

    @router.callback_query()
    async def pressed(query: CallbackQuery) -> None:
        await query.answer(f"got {query.data}", show_alert=query.data == "alert")

    return router


@pytest_asyncio.fixture(loop_scope="module")
async def polling(stub: TelegramStub, bot: Bot) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher()
    dispatcher.include_router(echo_router())
    task = asyncio.create_task(
        dispatcher.start_polling(
            bot, handle_signals=False, polling_timeout=1, close_bot_session=False
        )
    )
    yield dispatcher
    await dispatcher.stop_polling()
    await task


# -- getMe, routing, tokens --------------------------------------------------------------------


async def test_get_me_returns_bot_user(stub: TelegramStub, bot: Bot) -> None:
    me = await bot.get_me()

    assert me.model_dump() == stub.bot_user.model_dump()
    assert TelegramStub().token.startswith("123456:TEST")
    assert stub.base_url.startswith("http://127.0.0.1:")


async def test_call_unknown_method_not_found(stub: TelegramStub) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stub.base_url}/bot{stub.token}/sendTelepathy") as response,
    ):
        assert response.status == 404
        assert await response.json() == {
            "ok": False,
            "error_code": 404,
            "description": "Not Found",
        }


async def test_call_wrong_token_unauthorized(stub: TelegramStub) -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(stub.base_url))
    async with Bot("42:WRONG", session=session) as stranger:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()


async def test_call_json_body_accepted(stub: TelegramStub) -> None:
    chat = stub.group()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stub.base_url}/bot{stub.token}/SENDMESSAGE",
            json={"chat_id": chat.id, "text": "<i>hi</i>", "parse_mode": "HTML"},
        ) as response,
    ):
        body = await response.json()

    assert body["ok"] is True
    assert body["result"]["entities"] == [{"offset": 0, "length": 2, "type": "italic"}]
    assert stub.calls("sendMessage")[0].method == "sendMessage"


# -- getUpdates ------------------------------------------------------------------------------


async def test_get_updates_offset_confirms_earlier_updates(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.group(), stub.user()
    for text in ("one", "two", "three"):
        await stub.send_user_message(chat, alice, text)

    first = await bot.get_updates()
    again = await bot.get_updates()
    assert [u.update_id for u in again] == [u.update_id for u in first]
    assert [u.message.text for u in first if u.message] == ["one", "two", "three"]

    rest = await bot.get_updates(offset=first[1].update_id)
    assert [u.message.text for u in rest if u.message] == ["two", "three"]
    assert stub.is_confirmed(first[0].update_id)
    assert not stub.is_confirmed(first[1].update_id)

    assert await bot.get_updates(offset=first[-1].update_id + 1) == []
    assert stub.offset == first[-1].update_id + 1
    assert stub.pending_updates == []


async def test_get_updates_negative_offset_keeps_last_updates(
    stub: TelegramStub, bot: Bot
) -> None:
    chat, alice = stub.group(), stub.user()
    for text in ("one", "two", "three"):
        await stub.send_user_message(chat, alice, text)

    updates = await bot.get_updates(offset=-1)

    assert [u.message.text for u in updates if u.message] == ["three"]
    assert len(stub.dropped_updates) == 2


async def test_get_updates_limit_returns_oldest_first(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.group(), stub.user()
    for number in range(5):
        await stub.send_user_message(chat, alice, f"m{number}")

    updates = await bot.get_updates(limit=2)

    assert [u.message.text for u in updates if u.message] == ["m0", "m1"]


async def test_get_updates_long_poll_returns_early_on_push(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.group(), stub.user()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await stub.wait_for(lambda: stub.waiting_polls == 1, what="the long poll to wait")

    loop = asyncio.get_running_loop()
    pushed_at = loop.time()
    await stub.send_user_message(chat, alice, "wake up")
    updates = await asyncio.wait_for(poll, 2)

    assert loop.time() - pushed_at < 1
    assert [u.message.text for u in updates if u.message] == ["wake up"]


async def test_get_updates_allowed_updates_drops_other_types(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.group(), stub.user()
    await bot.get_updates(allowed_updates=["callback_query"])

    await stub.send_user_message(chat, alice, "not wanted")

    assert await bot.get_updates() == []
    assert stub.dropped_updates[0][1] == "'message' is not in allowed_updates"


async def test_get_updates_second_poll_conflicts_first(stub: TelegramStub, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await stub.wait_for(lambda: stub.waiting_polls == 1, what="the first poll")

    second = asyncio.create_task(bot.get_updates(timeout=0))

    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, 2)
    assert await second == []


async def test_get_updates_with_webhook_conflicts(stub: TelegramStub, bot: Bot) -> None:
    await bot.set_webhook("http://127.0.0.1:9/hook", secret_token="s3cret")

    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    info = await bot.get_webhook_info()
    assert info.url == "http://127.0.0.1:9/hook"
    assert stub.webhook["secret_token"] == "s3cret"

    await bot.delete_webhook()
    assert await bot.get_updates() == []


# -- sendMessage and HTML ----------------------------------------------------------------------


async def test_send_message_records_raw_and_visible_text(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    sent = await bot.send_message(
        chat.id, "  <b>Incident #1</b> · open\n&lt;script&gt; &amp; <a href='https://x.io'>x</a> "
    )

    record = stub.sent_messages(chat)[0]
    assert record.message_id == sent.message_id
    assert record.text == sent.text == "Incident #1 · open\n<script> & x"
    assert record.raw_text is not None and record.raw_text.startswith("  <b>Incident")
    assert record.entities == [
        {"offset": 0, "length": 11, "type": "bold"},
        {"offset": 30, "length": 1, "type": "text_link", "url": "https://x.io"},
    ]
    assert record.parse_mode == "HTML"


async def test_send_message_numbers_messages_per_chat(stub: TelegramStub, bot: Bot) -> None:
    first_chat, second_chat = stub.group(), stub.supergroup()

    ids = [
        (await bot.send_message(chat.id, "hi")).message_id
        for chat in (first_chat, first_chat, second_chat)
    ]

    assert ids == [1, 2, 1]


async def test_send_message_bare_less_than_bad_request(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    with pytest.raises(TelegramBadRequest) as raised:
        await bot.send_message(chat.id, "latency < 5 ms")

    assert raised.value.message == (
        'Bad Request: can\'t parse entities: Unsupported start tag "" at byte offset 8'
    )
    assert stub.sent_messages(chat) == []


async def test_send_message_bare_ampersand_bad_request(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    with pytest.raises(TelegramBadRequest, match='can\'t parse entities: Unescaped "&"'):
        await bot.send_message(chat.id, "Tom & Jerry")
    await bot.send_message(chat.id, "Tom & Jerry", parse_mode=None)

    assert [m.text for m in stub.sent_messages(chat)] == ["Tom & Jerry"]


async def test_send_message_bare_ampersand_kept_when_not_strict(bot: Bot) -> None:
    async with TelegramStub(token=bot.token, strict_ampersand=False) as lenient:
        session = AiohttpSession(api=TelegramAPIServer.from_base(lenient.base_url))
        async with Bot(bot.token, session=session) as lenient_bot:
            chat = lenient.group()
            sent = await lenient_bot.send_message(
                chat.id, "Tom & Jerry &copy; &lt", parse_mode="HTML"
            )

    assert sent.text == "Tom & Jerry &copy; <"


async def test_send_message_all_supported_tags_accepted(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()
    text = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s>"
        '<strike>k</strike><del>d</del><span class="tg-spoiler">p</span>'
        '<tg-spoiler>q</tg-spoiler><a href="https://t.me/x">a</a><code>c</code>'
        '<pre><code class="language-python">x = 1</code></pre>'
        "<blockquote>q</blockquote><blockquote expandable>e</blockquote>"
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>&#128512;&#x1F600;&quot;'
    )

    await bot.send_message(chat.id, text)

    record = stub.sent_messages(chat)[0]
    assert record.text == 'bsieunskdpqacx = 1qe👍😀😀"'
    types = [entity["type"] for entity in record.entities]
    assert types.count("bold") == 2
    assert types.count("italic") == 2
    assert types.count("strikethrough") == 3
    assert types.count("spoiler") == 2
    assert {"type": "pre", "offset": 13, "length": 5, "language": "python"} in record.entities
    assert {"type": "text_link", "offset": 11, "length": 1, "url": "https://t.me/x"} in (
        record.entities
    )
    assert "expandable_blockquote" in types
    assert "custom_emoji" in types


async def test_send_message_length_counted_after_parsing(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()
    visible = "x" * 4095

    await bot.send_message(chat.id, f"<b>{visible}</b>&amp;")
    with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
        await bot.send_message(chat.id, f"<b>{visible}</b>&amp;!")

    assert stub.sent_messages(chat)[0].text == visible + "&"


async def test_send_message_length_counts_utf16_units(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    await bot.send_message(chat.id, "😀" * 2048)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(chat.id, "😀" * 2048 + "x")


async def test_send_message_empty_text_bad_request(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    for text in ("", "   \n ", "<b> </b>", "\r\t"):
        with pytest.raises(TelegramBadRequest, match="Bad Request: message text is empty"):
            await bot.send_message(chat.id, text)


async def test_send_message_control_characters_cleaned(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    sent = await bot.send_message(chat.id, "<b>a\tb</b>\r\nc\u2028d", parse_mode="HTML")

    assert sent.text == "a b\ncd"
    assert stub.sent_messages(chat)[0].entities == [{"offset": 0, "length": 3, "type": "bold"}]


async def test_send_message_params_recorded(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    await bot.send_message(
        chat.id,
        "[1, 2]",
        reply_markup=keyboard(("A", "a")),
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )

    params = stub.calls("sendMessage")[0].params
    assert params["text"] == "[1, 2]"
    assert params["parse_mode"] == "HTML"
    assert params["link_preview_options"] == {"is_disabled": True}
    assert params["reply_markup"] == {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}


async def test_send_message_unknown_chat_not_found(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.send_message(-100123, "hi")


async def test_send_message_callback_data_limited_to_64_bytes(
    stub: TelegramStub, bot: Bot
) -> None:
    chat = stub.group()

    await bot.send_message(chat.id, "ok", reply_markup=keyboard(("A", "x" * 64), ("B", "ж" * 32)))
    for data in ("x" * 65, "ж" * 33):
        with pytest.raises(TelegramBadRequest, match="Bad Request: BUTTON_DATA_INVALID"):
            await bot.send_message(chat.id, "too long", reply_markup=keyboard(("A", data)))

    assert stub.sent_messages(chat)[0].button_texts == ["A", "B"]


async def test_send_message_reply_in_forum_topic_recorded(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.supergroup(forum=True), stub.user()
    topic = stub.create_topic(chat, "Scooters")
    report = await stub.send_user_message(
        chat, alice, "[monitoring] down", message_thread_id=topic
    )

    reply = await bot.send_message(
        chat.id,
        "seen",
        reply_parameters=ReplyParameters(message_id=report.message_id),
        message_thread_id=topic,
    )

    assert reply.reply_to_message is not None
    assert reply.reply_to_message.message_id == report.message_id
    assert reply.message_thread_id == topic
    record = stub.sent_messages(chat)[0]
    assert (record.reply_to_message_id, record.message_thread_id) == (report.message_id, topic)


async def test_send_message_reply_to_missing_message_bad_request(
    stub: TelegramStub, bot: Bot
) -> None:
    chat = stub.group()

    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(chat.id, "hi", reply_parameters=ReplyParameters(message_id=99))


async def test_send_message_inline_buttons_validated(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    with pytest.raises(TelegramBadRequest, match="Text buttons are unallowed"):
        await bot.send_message(
            chat.id,
            "x",
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[[InlineKeyboardButton(text="plain")]]
            ),
        )
    with pytest.raises(TelegramBadRequest, match="BUTTON_URL_INVALID"):
        await bot.send_message(
            chat.id,
            "x",
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[[InlineKeyboardButton(text="link", url="not a url")]]
            ),
        )


async def test_send_message_legacy_reply_fields_honoured(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.group(), stub.user()
    report = await stub.send_user_message(chat, alice, "report")

    reply = await bot.send_message(chat.id, "ok", reply_to_message_id=report.message_id)
    orphan = await bot.send_message(
        chat.id,
        "still sent",
        reply_parameters=ReplyParameters(message_id=999, allow_sending_without_reply=True),
    )

    assert reply.reply_to_message is not None
    assert reply.reply_to_message.message_id == report.message_id
    assert orphan.reply_to_message is None


async def test_send_message_unknown_forum_topic_bad_request(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.supergroup(forum=True)

    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(chat.id, "hi", message_thread_id=77)


async def test_send_message_explicit_entities_used(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    await bot.send_message(
        chat.id, "<not markup>", entities=[MessageEntity(type="bold", offset=1, length=3)]
    )

    record = stub.sent_messages(chat)[0]
    assert record.text == "<not markup>"
    assert record.entities == [{"type": "bold", "offset": 1, "length": 3}]
    assert record.parse_mode is None


# -- editing, deleting, buttons ------------------------------------------------------------------


async def test_edit_message_text_identical_not_modified(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()
    markup = keyboard(("Resolve", "resolve:1"))
    sent = await bot.send_message(chat.id, "<b>#1</b> open", reply_markup=markup)

    with pytest.raises(TelegramBadRequest, match="Bad Request: message is not modified: "):
        await bot.edit_message_text(
            "<b>#1</b> open", chat_id=chat.id, message_id=sent.message_id, reply_markup=markup
        )
    edited = await bot.edit_message_text(
        "<b>#1</b> resolved", chat_id=chat.id, message_id=sent.message_id
    )

    assert isinstance(edited, Message) and edited.edit_date is not None
    record = stub.message(chat, sent.message_id)
    assert record.text == "#1 resolved"
    assert record.buttons == []  # an edit without reply_markup removes the keyboard
    assert [version.text for version in record.history] == ["#1 open"]


async def test_edit_message_text_unknown_message_bad_request(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    with pytest.raises(TelegramBadRequest, match="Bad Request: message to edit not found"):
        await bot.edit_message_text("x", chat_id=chat.id, message_id=404)


async def test_edit_message_text_user_message_refused(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.group(), stub.user()
    message = await stub.send_user_message(chat, alice, "mine")

    with pytest.raises(TelegramBadRequest, match="Bad Request: message can't be edited"):
        await bot.edit_message_text("yours", chat_id=chat.id, message_id=message.message_id)


async def test_edit_message_text_too_long_bad_request(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()
    sent = await bot.send_message(chat.id, "short")

    with pytest.raises(TelegramBadRequest, match="Bad Request: MESSAGE_TOO_LONG"):
        await bot.edit_message_text("x" * 4097, chat_id=chat.id, message_id=sent.message_id)


async def test_edit_message_reply_markup_identical_not_modified(
    stub: TelegramStub, bot: Bot
) -> None:
    chat = stub.group()
    sent = await bot.send_message(chat.id, "card", reply_markup=keyboard(("A", "a")))

    await bot.edit_message_reply_markup(
        chat_id=chat.id, message_id=sent.message_id, reply_markup=keyboard(("B", "b"))
    )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=chat.id, message_id=sent.message_id, reply_markup=keyboard(("B", "b"))
        )

    assert stub.message(chat, sent.message_id).button_texts == ["B"]


async def test_delete_message_hides_it_from_transcript(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()
    sent = await bot.send_message(chat.id, "oops")

    assert await bot.delete_message(chat.id, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(chat.id, sent.message_id)

    assert stub.chat_transcript(chat) == ""
    assert stub.sent_messages(chat)[0].deleted


async def test_answer_callback_query_twice_bad_request(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.group(), stub.user()
    card = await bot.send_message(chat.id, "card", reply_markup=keyboard(("Resolve", "r:1")))
    query_id = await stub.press_button(chat, alice, card.message_id, "r:1")

    assert await bot.answer_callback_query(query_id, text="Done", show_alert=True)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)
    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query("12345")

    answer = stub.callback_answer(query_id)
    assert answer is not None and (answer.text, answer.show_alert) == ("Done", True)


async def test_press_button_missing_data_refused(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.group(), stub.user()
    card = await bot.send_message(chat.id, "card", reply_markup=keyboard(("Resolve", "r:1")))

    with pytest.raises(LookupError, match="no button with data 'r:2'"):
        await stub.press_button(chat, alice, card.message_id, "r:2")
    assert await stub.press_button(chat, alice, card.message_id, "r:2", check=False)


# -- commands, chat actions ----------------------------------------------------------------------


async def test_set_my_commands_recorded_per_language_and_scope(
    stub: TelegramStub, bot: Bot
) -> None:
    english = [BotCommand(command="list", description="Recent incidents")]
    russian = [BotCommand(command="list", description="Последние инциденты")]

    await bot.set_my_commands(english)
    await bot.set_my_commands(russian, language_code="ru")
    await bot.set_my_commands(english, scope=BotCommandScopeAllGroupChats())

    assert stub.commands() == [{"command": "list", "description": "Recent incidents"}]
    assert stub.commands(language_code="ru") == [
        {"command": "list", "description": "Последние инциденты"}
    ]
    assert stub.commands(scope={"type": "all_group_chats"}) is not None
    assert [c.model_dump() for c in await bot.get_my_commands(language_code="ru")] == [
        c.model_dump() for c in russian
    ]
    assert await bot.get_my_commands(language_code="de") == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="List", description="x")])


async def test_send_chat_action_checks_action(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()

    assert await bot.send_chat_action(chat.id, "typing")
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(chat.id, "dancing")


# -- rate limits -------------------------------------------------------------------------------


async def test_send_message_past_group_limit_retry_after(stub: TelegramStub, bot: Bot) -> None:
    stub.enable_rate_limits(RateLimits(group=Limit(5, 1.0), overall=None))
    chat, other = stub.group(), stub.group()

    for number in range(5):
        await bot.send_message(chat.id, f"m{number}")
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(chat.id, "one too many")
    await bot.send_message(other.id, "another chat has its own window")

    assert raised.value.retry_after == 1
    assert "Too Many Requests: retry after 1" in raised.value.message
    assert stub.max_in_window(1.0, chat_id=chat.id) == 5
    refused = [event for event in stub.rate_log if not event.accepted]
    assert [(e.chat_id, e.retry_after, e.scope) for e in refused] == [(chat.id, 1, "group")]


async def test_send_message_private_and_overall_limits(stub: TelegramStub, bot: Bot) -> None:
    stub.enable_rate_limits(RateLimits(group=None, private=Limit(1, 1.0), overall=Limit(3, 1.0)))
    users = [stub.user(f"U{number}") for number in range(4)]
    chats = [stub.private_chat(user) for user in users]

    await bot.send_message(chats[0].id, "1")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(chats[0].id, "2")
    await bot.send_message(chats[1].id, "3")
    await bot.send_message(chats[2].id, "4")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(chats[3].id, "5")

    assert [event.scope for event in stub.rate_log if not event.accepted] == [
        "private",
        "overall",
    ]


async def test_early_retries_lists_calls_ignoring_retry_after(
    stub: TelegramStub, bot: Bot
) -> None:
    stub.enable_rate_limits(RateLimits(group=Limit(1, 1.0), overall=None))
    chat = stub.group()
    await bot.send_message(chat.id, "1")

    for _ in range(2):
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(chat.id, "impatient")

    assert len(stub.early_retries()) == 1


# -- faults ----------------------------------------------------------------------------------


async def test_send_message_bad_gateway_server_error(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()
    fault = stub.fail_next(2, FaultKind.BAD_GATEWAY, methods={"sendMessage"})

    for _ in range(2):
        with pytest.raises(TelegramServerError, match="Bad Gateway"):
            await bot.send_message(chat.id, "hi")
    await bot.get_me()
    await bot.send_message(chat.id, "hi")

    assert fault.hits == 2
    assert [call.status for call in stub.calls("sendMessage")] == [502, 502, 200]


async def test_send_message_faults_for_a_duration(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()
    stub.inject_fault(FaultKind.INTERNAL_ERROR, duration=0.2)

    with pytest.raises(TelegramServerError, match="Internal Server Error"):
        await bot.send_message(chat.id, "hi")
    await asyncio.sleep(0.25)  # let the fault's time run out
    await bot.send_message(chat.id, "hi")


async def test_send_message_dropped_connection_network_error(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()
    stub.fail_next(1, FaultKind.DISCONNECT)

    with pytest.raises(TelegramNetworkError):
        await bot.send_message(chat.id, "hi")
    await bot.send_message(chat.id, "hi again")

    assert [m.text for m in stub.sent_messages(chat)] == ["hi again"]


async def test_send_message_migrated_group_migrate_to_chat(stub: TelegramStub, bot: Bot) -> None:
    group = stub.group()
    supergroup = stub.migrate_to_supergroup(group)

    with pytest.raises(TelegramMigrateToChat) as raised:
        await bot.send_message(group.id, "hi")
    await bot.send_message(raised.value.migrate_to_chat_id, "hi")

    assert raised.value.migrate_to_chat_id == supergroup.id
    assert supergroup.id < -1_000_000_000_000
    assert [m.text for m in stub.sent_messages(supergroup)] == ["hi"]


async def test_inject_fault_rate_limit_migration_and_delay(stub: TelegramStub, bot: Bot) -> None:
    chat = stub.group()
    stub.inject_fault(FaultKind.TOO_MANY_REQUESTS, times=1, retry_after=7)
    stub.inject_fault(FaultKind.MIGRATED, times=1, migrate_to_chat_id=-1001234567890)
    stub.inject_fault(FaultKind.SLOW, times=1, delay=0.1)

    with pytest.raises(TelegramRetryAfter) as too_many:
        await bot.send_message(chat.id, "1")
    with pytest.raises(TelegramMigrateToChat) as migrated:
        await bot.send_message(chat.id, "2")
    await bot.send_message(chat.id, "3")

    assert too_many.value.retry_after == 7
    assert migrated.value.migrate_to_chat_id == -1001234567890
    slow = stub.calls("sendMessage")[-1]
    assert slow.ok and slow.fault == "slow" and slow.finished_at - slow.at >= 0.1


async def test_migrate_to_supergroup_announces_service_messages(stub: TelegramStub) -> None:
    group = stub.group()

    supergroup = stub.migrate_to_supergroup(group)

    old, new = (update["message"] for update in stub.pending_updates)
    assert old["migrate_to_chat_id"] == supergroup.id
    assert new["migrate_from_chat_id"] == group.id
    assert new["chat"]["id"] == supergroup.id


async def test_send_message_kicked_or_forgotten_chat_refused(stub: TelegramStub, bot: Bot) -> None:
    group, private = stub.supergroup(), stub.private_chat(stub.user())
    stub.kick_bot(group)
    stub.kick_bot(private)

    with pytest.raises(TelegramForbiddenError, match="bot was kicked from the supergroup chat"):
        await bot.send_message(group.id, "hi")
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(private.id, "hi")

    other = stub.group()
    stub.inject_fault(FaultKind.CHAT_NOT_FOUND, chat_id=other.id, times=1)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(other.id, "hi")
    stub.forget_chat(other)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(other.id, "hi")


async def test_inject_fault_method_filter_spares_other_methods(
    stub: TelegramStub, bot: Bot
) -> None:
    fault = stub.inject_fault(FaultKind.BAD_GATEWAY, methods={"getupdates"})

    for _ in range(3):
        with pytest.raises(TelegramServerError):
            await bot(GetUpdates())
    await bot.get_me()
    fault.cancel()

    assert await bot.get_updates() == []
    assert fault.hits == 3


# -- the real Dispatcher polling the stub ----------------------------------------------------


async def test_polling_replies_to_user_message(stub: TelegramStub, polling: Dispatcher) -> None:
    chat, alice = stub.supergroup(forum=True), stub.user("Alice", language_code="ru")
    topic = stub.create_topic(chat, "Payments")

    message = await stub.send_user_message(chat, alice, "a < b & c", message_thread_id=topic)
    reply = await stub.wait_for_message(chat, reply_to=message)

    assert reply.text == "echo: a < b & c"
    assert reply.message_thread_id == topic
    assert stub.chat_transcript(chat) == (
        f"#2 Alice (topic {topic}): a < b & c\n"
        f"#3 Incident Bot (reply to #2, topic {topic}): echo: a < b & c"
    )


async def test_polling_confirms_processed_updates(stub: TelegramStub, polling: Dispatcher) -> None:
    chat, alice = stub.group(), stub.user()
    message = await stub.send_user_message(chat, alice, "first")
    update_id = stub.pending_updates[-1]["update_id"]

    await stub.wait_for_message(chat, reply_to=message)
    confirmed_at = await stub.wait_confirmed(update_id)

    assert stub.offset == update_id + 1
    assert confirmed_at <= stub.now()


async def test_polling_answers_button_press(
    stub: TelegramStub, polling: Dispatcher, bot: Bot
) -> None:
    chat, alice = stub.group(), stub.user()
    card = await bot.send_message(chat.id, "card", reply_markup=keyboard(("Alert", "alert")))

    query_id = await stub.press_button(chat, alice, card.message_id, text="Alert")
    answer = await stub.wait_for_answer(query_id)

    assert (answer.text, answer.show_alert) == ("got alert", True)


async def test_polling_edited_message_delivered(stub: TelegramStub, polling: Dispatcher) -> None:
    chat, alice = stub.group(), stub.user()
    message = await stub.send_user_message(chat, alice, "typo")
    await stub.wait_for_message(chat, reply_to=message)

    edited = await stub.edit_user_message(chat, message, "fixed")
    reply = await stub.wait_for_message(chat, contains="edited: fixed")

    assert edited.edit_date is not None
    assert reply.reply_to_message_id == message.message_id
    assert stub.message(chat, message.message_id).edited
    assert "#1 Alice (edited): fixed" in stub.chat_transcript(chat)


async def test_polling_channel_post_and_photo_in_transcript(
    stub: TelegramStub, polling: Dispatcher
) -> None:
    channel, group, alice = stub.channel("Alerts"), stub.group(), stub.user()

    post = await stub.post_channel(channel, "[monitoring] disk full")
    photo = await stub.send_user_message(group, alice, photo=True, caption="[operator] see")

    assert post.sender_chat is not None and post.sender_chat.id == channel.id
    assert photo.photo and photo.caption == "[operator] see"
    assert stub.chat_transcript(channel) == "#1 Alerts: [monitoring] disk full"
    assert stub.chat_transcript(group) == "#1 Alice: <photo> [operator] see"


# -- webhooks --------------------------------------------------------------------------------


async def test_set_webhook_delivers_updates_with_secret(stub: TelegramStub, bot: Bot) -> None:
    dispatcher = Dispatcher()
    dispatcher.include_router(echo_router())
    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, secret_token="right").register(app, path="/hook")
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    chat, alice = stub.group(), stub.user()
    try:
        await bot.set_webhook(url, secret_token="wrong")
        message = await stub.send_user_message(chat, alice, "via webhook")
        await stub.wait_for(lambda: stub.webhook_deliveries, what="a delivery attempt")
        info = await bot.get_webhook_info()
        assert info.last_error_message == "Wrong response from the webhook: 401 Unauthorized"
        assert info.pending_update_count == 1

        await bot.set_webhook(url, secret_token="right")
        reply = await stub.wait_for_message(chat, reply_to=message)
    finally:
        await bot.delete_webhook()
        await runner.cleanup()

    assert reply.text == "echo: via webhook"
    assert stub.webhook_deliveries[-1].ok
    assert stub.pending_updates == []


async def test_set_webhook_answer_method_executed(stub: TelegramStub, bot: Bot) -> None:
    chat, alice = stub.group(), stub.user()

    async def hook(request: web.Request) -> web.Response:
        update = await request.json()
        text = update["message"]["text"]
        return web.json_response(
            {
                "method": "sendMessage",
                "chat_id": chat.id,
                "text": f"<i>{text}</i>",
                "parse_mode": "HTML",
            }
        )

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        await bot.set_webhook(f"http://127.0.0.1:{sock.getsockname()[1]}/hook")
        await stub.send_user_message(chat, alice, "ping")
        reply = await stub.wait_for_message(chat, contains="ping")
    finally:
        await bot.delete_webhook()
        await runner.cleanup()

    assert reply.entities == [{"offset": 0, "length": 4, "type": "italic"}]
    assert stub.calls("sendMessage")[0].via == "webhook"


async def test_set_webhook_non_local_http_refused(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="An HTTPS URL must be provided"):
        await bot.set_webhook("http://example.org/hook")


# -- waiting ---------------------------------------------------------------------------------


async def test_wait_for_timeout_lists_recent_calls(stub: TelegramStub, bot: Bot) -> None:
    await bot.get_me()

    with pytest.raises(TimeoutError, match=r"(?s)a miracle.*getMe -> ok"):
        await stub.wait_for(lambda: False, timeout=0.05, what="a miracle")


async def test_answer_callback_query_expired_bad_request(bot: Bot) -> None:
    async with TelegramStub(token=bot.token, callback_query_ttl=0.0) as strict:
        session = AiohttpSession(api=TelegramAPIServer.from_base(strict.base_url))
        async with Bot(bot.token, session=session) as strict_bot:
            chat, alice = strict.group(), strict.user()
            card = await strict_bot.send_message(chat.id, "c", reply_markup=keyboard(("A", "a")))
            query_id = await strict.press_button(chat, alice, card.message_id, "a")
            with pytest.raises(TelegramBadRequest, match="query is too old"):
                await strict_bot.answer_callback_query(query_id)
