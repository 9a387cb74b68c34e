"""A local stand-in for the Telegram Bot API, for end-to-end bot tests.

An aiohttp server on 127.0.0.1 (ephemeral port) that answers aiogram's HTTP calls the way
Telegram does and keeps Telegram's rules: getUpdates offsets and long polling, HTML
parse-mode validation ("can't parse entities"), 4096 UTF-16 units after parsing, 1-64 byte
callback_data, "message is not modified", answerCallbackQuery once per press, and — when a
test switches them on — flood limits (429 with retry_after) and faults (502/500, dropped
connections, "chat not found", a kicked bot, group-to-supergroup migration).

Usage::

    import asyncio

    from aiogram import Bot, Dispatcher
    from aiogram.client.default import DefaultBotProperties
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from tests.telegram_stub import TelegramStub

    async def test_reply_to_report_in_group() -> None:
        async with TelegramStub() as stub:
            bot = Bot(
                stub.token,
                session=AiohttpSession(api=TelegramAPIServer.from_base(stub.base_url)),
                default=DefaultBotProperties(parse_mode="HTML"),
            )
            dp = Dispatcher()  # the real routers, middlewares and store
            polling = asyncio.create_task(
                dp.start_polling(bot, handle_signals=False, polling_timeout=1)
            )
            try:
                chat, alice = stub.supergroup("On-call"), stub.user("Alice", language_code="ru")
                report = await stub.send_user_message(chat, alice, "[monitoring] Scooter #42")
                card = await stub.wait_for_message(chat, reply_to=report)
                assert "Incident #1" in card.text           # visible text, entities parsed
                assert card.raw_text.startswith("<b>")       # what the bot sent
                query_id = await stub.press_button(chat, alice, card, text="Resolved")
                answer = await stub.wait_for_answer(query_id)
                await stub.wait_for(lambda: "resolved" in stub.message(chat, card.message_id).text)
                print(stub.chat_transcript(chat))            # what a person sees
            finally:
                await dp.stop_polling()                      # also closes the bot's session
                await polling

Inspecting: `stub.sent_messages(chat)`, `stub.messages(chat)`, `stub.message(chat, id)`
(`ChatMessage`: `.text`, `.raw_text`, `.entities`, `.buttons`, `.button_texts`,
`.reply_to_message_id`, `.message_thread_id`, `.history`, `.deleted`),
`stub.chat_transcript(chat)`, `stub.calls("sendMessage")` (`CallRecord`), `stub.callback_answers`,
`stub.commands(scope=..., language_code="ru")`, `stub.offset`, `stub.pending_updates`,
`stub.dropped_updates`, `stub.webhook`.

Waiting (no sleeps; every waiter raises a TimeoutError listing the recent calls):
`await stub.wait_for(predicate)`, `wait_for_message(chat, after=, contains=, reply_to=)`,
`wait_for_call(method, predicate, count=)`, `wait_for_answer(query_id)`,
`wait_confirmed(update_id)` (the bot's getUpdates offset moved past it).

Pushing updates as people would: `send_user_message(chat, user, text, reply_to=,
message_thread_id=, photo=True, document="x.txt", caption=)`, `edit_user_message(...)`,
`post_channel(channel, text)`, `press_button(chat, user, message, data | text=)`,
`push_update({...})`. Chats and users: `stub.user("Ivan", language_code="ru")`,
`stub.private_chat(user)`, `stub.group()`, `stub.supergroup(forum=True)` +
`stub.create_topic(chat, "Payments")`, `stub.channel()`.

Limits and faults: `stub.enable_rate_limits(RateLimits(group=Limit(5, 1.0)))` then
`stub.rate_log`, `stub.max_in_window(1.0, chat_id=...)`, `stub.early_retries()`;
`stub.inject_fault(FaultKind.BAD_GATEWAY, times=3 | duration=0.5, methods={"sendMessage"})`
(also INTERNAL_ERROR, DISCONNECT, CHAT_NOT_FOUND, BOT_KICKED, TOO_MANY_REQUESTS, MIGRATED,
SLOW with `delay=`), `stub.kick_bot(chat)`, `stub.forget_chat(chat)`,
`stub.migrate_to_supergroup(group)`; `TelegramStub(callback_query_ttl=...)` expires presses;
`stub.on_accepted("sendMessage", hook)` runs `hook(record)` as Telegram accepts each call.

Webhooks: after `setWebhook` with an `http://127.0.0.1:<port>/...` URL the stub POSTs each
update there in order, with `X-Telegram-Bot-Api-Secret-Token`, until the bot answers 2xx
(a method in the answer's JSON body is executed, as Telegram does); failures show in
`getWebhookInfo.last_error_message` and `stub.webhook_deliveries`, and are retried.
getUpdates answers 409 while a webhook is set, and to an older poll when a newer one
arrives ("terminated by other getUpdates request"), as Telegram does.

Deliberate differences from Telegram: a `&` that does not start an HTML entity is refused
(Telegram keeps it literally, though the Bot API docs require escaping it) — pass
`TelegramStub(strict_ampersand=False)` for Telegram's behaviour; Markdown parse modes are
accepted but not parsed (the visible text is the raw text); only the methods listed in
`TelegramStub` exist (others answer 404 "Not Found", as unknown methods do on Telegram).
"""

from .entities import (
    MAX_MESSAGE_LENGTH,
    EntityParseError,
    ParsedText,
    clean_text,
    parse_html,
    strip_text,
    utf16_length,
)
from .records import (
    Button,
    CallbackAnswer,
    CallRecord,
    ChatMessage,
    Fault,
    FaultKind,
    Limit,
    MessageVersion,
    RateEvent,
    RateLimits,
    WebhookDelivery,
)
from .server import ApiError, TelegramStub

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "ApiError",
    "Button",
    "CallRecord",
    "CallbackAnswer",
    "ChatMessage",
    "EntityParseError",
    "Fault",
    "FaultKind",
    "Limit",
    "MessageVersion",
    "ParsedText",
    "RateEvent",
    "RateLimits",
    "TelegramStub",
    "WebhookDelivery",
    "clean_text",
    "parse_html",
    "strip_text",
    "utf16_length",
]
