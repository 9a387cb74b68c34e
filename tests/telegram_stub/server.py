"""The Bot API stand-in: an aiohttp server on 127.0.0.1 that keeps Telegram's rules."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiogram.types import Chat, Message, User
from aiohttp import web

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

__all__ = ["ApiError", "TelegramStub"]

JsonDict = dict[str, Any]
ChatRef = Chat | int
UserRef = User | int
_T = TypeVar("_T")

HOST = "127.0.0.1"

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
# Update types Telegram sends when allowed_updates is empty or was never set.
DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
# Parameters whose form values are JSON-serialized objects or arrays.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "reply_parameters",
        "link_preview_options",
        "entities",
        "caption_entities",
        "allowed_updates",
        "commands",
        "scope",
    }
)
_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_SECRET_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")


class ApiError(Exception):
    """A Bot API error answer: `{"ok": false, "error_code": ..., "description": ...}`."""

    def __init__(self, status: int, description: str, parameters: JsonDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> JsonDict:
        payload: JsonDict = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            payload["parameters"] = self.parameters
        return payload


def _bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


class _Params:
    """A request's parameters, from the query string, a form or a JSON body."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def get_str(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        if value is None:
            return default
        return value if isinstance(value, str) else json.dumps(value)

    def get_int(self, name: str, default: int | None = None) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise _bad_request(f"invalid {name} specified")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad_request(f"invalid {name} specified") from None

    def get_bool(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, str):
            return value.lower() in {"true", "1", "yes"}
        return bool(value)

    def get_json(self, name: str, what: str | None = None) -> Any:
        value = self.values.get(name)
        if not isinstance(value, str):
            return value
        if value == "":
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise _bad_request(f"can't parse {what or name} JSON object") from None

    def recorded(self) -> JsonDict:
        """The parameters with JSON-encoded values decoded, for tests to inspect."""
        decoded: JsonDict = {}
        for name, value in self.values.items():
            if isinstance(value, str) and name in _JSON_FIELDS:
                try:
                    decoded[name] = json.loads(value)
                    continue
                except ValueError:
                    pass
            decoded[name] = value
        return decoded


class _ChatState:
    def __init__(self, chat: JsonDict) -> None:
        self.chat = chat
        self.next_message_id = 1
        self.messages: dict[int, ChatMessage] = {}
        self.topics: dict[int, str] = {}
        self.bot_kicked = False
        self.migrated_to: int | None = None
        self.forgotten = False
        self.owner: int | None = None
        self.admins: list[int] = []
        self.reactions_off = False

    @property
    def id(self) -> int:
        return int(self.chat["id"])

    @property
    def type(self) -> str:
        return str(self.chat["type"])

    def take_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


class _CallbackQuery:
    def __init__(
        self, query_id: str, chat_id: int | None, message_id: int | None, pressed_at: float
    ) -> None:
        self.id = query_id
        self.chat_id = chat_id
        self.message_id = message_id
        self.pressed_at = pressed_at
        self.answer: CallbackAnswer | None = None


ALLOWED_REACTIONS = frozenset({"👍", "👎", "❤", "🔥", "🙏", "👌", "👀", "🤝", "✍", "🫡"})
"""Some of the emoji Telegram lets a bot react with; others are REACTION_INVALID, as
Telegram answers for an emoji not on its list."""


def _display_name(user: JsonDict) -> str:
    if "title" in user:
        return str(user["title"])
    name = str(user.get("first_name", ""))
    if user.get("last_name"):
        name += f" {user['last_name']}"
    return name


def _update_type(update: JsonDict) -> str:
    return next(key for key in update if key != "update_id")


class TelegramStub:
    """A local stand-in for the Telegram Bot API; see the package docstring for a tour.

    Use `async with TelegramStub() as stub:` (or `await start()` / `await stop()`) and
    point aiogram at it with
    `AiohttpSession(api=TelegramAPIServer.from_base(stub.base_url))`.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        bot_username: str = "incident_test_bot",
        bot_name: str = "Incident Bot",
        rate_limits: RateLimits | None = None,
        strict_ampersand: bool = True,
        first_update_id: int = 100_001,
        callback_query_ttl: float | None = None,
        webhook_retry_delay: float = 0.2,
        webhook_timeout: float = 5.0,
    ) -> None:
        self.token = token or f"123456:TEST{secrets.token_urlsafe(24).replace('-', 'x')}"
        bot_id = int(self.token.split(":", 1)[0])
        self._bot: JsonDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.rate_limits = rate_limits
        self.strict_ampersand = strict_ampersand
        self.callback_query_ttl = callback_query_ttl
        """Seconds after a press within which it can be answered (None: no expiry)."""
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_timeout = webhook_timeout

        self._chats: dict[int, _ChatState] = {}
        self._users: dict[int, JsonDict] = {}
        self._user_ids = itertools.count(10_000_001)
        self._group_ids = itertools.count(4_000_000_001)
        self._supergroup_ids = itertools.count(1_000_000_001)
        self._query_ids = itertools.count(1)
        self._call_seq = itertools.count(1)

        self._next_update_id = first_update_id
        self._queue: list[JsonDict] = []
        self._pushed: dict[int, JsonDict] = {}
        self._confirmed_at: dict[int, float] = {}
        self._dropped: list[tuple[JsonDict, str]] = []
        self._offset = 0
        self._allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._poll_generation = 0
        self._waiting_polls = 0

        self._webhook: JsonDict = {}
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_deliveries: list[WebhookDelivery] = []
        self._webhook_error: tuple[int, str] | None = None
        self._commands: dict[tuple[str, str], list[JsonDict]] = {}
        self._queries: dict[str, _CallbackQuery] = {}
        self._answers: list[CallbackAnswer] = []
        self._calls: list[CallRecord] = []
        self._sent: list[ChatMessage] = []
        self._faults: list[Fault] = []
        self._accepted_hooks: list[tuple[str, Callable[[CallRecord], None]]] = []
        self._rate_log: list[RateEvent] = []
        self._windows: dict[tuple[str, int], deque[float]] = {}

        self._changed = asyncio.Event()
        self._closing = False
        self._started_at = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._methods: dict[str, tuple[str, Callable[[_Params], Awaitable[Any]]]] = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "sendMessage": self._send_message,
                "editMessageText": self._edit_message_text,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "deleteMessage": self._delete_message,
                "answerCallbackQuery": self._answer_callback_query,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "sendChatAction": self._send_chat_action,
                "getChat": self._get_chat,
                "getChatAdministrators": self._get_chat_administrators,
                "setMessageReaction": self._set_message_reaction,
            }.items()
        }

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        """Serve on 127.0.0.1 on an ephemeral port."""
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        self._port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._started_at = time.monotonic()
        return self

    async def stop(self) -> None:
        """Answer pending long polls and shut the server down."""
        self._closing = True
        self._notify()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """The server root, for `TelegramAPIServer.from_base(stub.base_url)`."""
        if self._port is None:
            raise RuntimeError("the stub is not started")
        return f"http://{HOST}:{self._port}"

    @property
    def bot_user(self) -> User:
        return User.model_validate(self._bot)

    def now(self) -> float:
        """Seconds since the stub started: the clock of every recorded timestamp."""
        return time.monotonic() - self._started_at

    # -- factories: users and chats --------------------------------------------------------

    def user(
        self,
        first_name: str = "Alice",
        *,
        language_code: str | None = "en",
        username: str | None = None,
        last_name: str | None = None,
        is_bot: bool = False,
        user_id: int | None = None,
    ) -> User:
        """A Telegram user (`language_code` "en" or "ru" drives the bot's language)."""
        data: JsonDict = {
            "id": user_id if user_id is not None else next(self._user_ids),
            "is_bot": is_bot,
            "first_name": first_name,
        }
        if last_name:
            data["last_name"] = last_name
        if username:
            data["username"] = username
        if language_code:
            data["language_code"] = language_code
        self._users[data["id"]] = data
        return User.model_validate(data)

    def private_chat(self, user: UserRef) -> Chat:
        """The private chat between `user` and the bot (its id is the user's id)."""
        data = self._user_data(user)
        chat: JsonDict = {"id": data["id"], "type": "private", "first_name": data["first_name"]}
        for key in ("last_name", "username"):
            if key in data:
                chat[key] = data[key]
        return self._add_chat(chat)

    def group(self, title: str = "On-call", *, chat_id: int | None = None) -> Chat:
        """A basic group (negative id, can be migrated to a supergroup)."""
        chat_id = chat_id if chat_id is not None else -next(self._group_ids)
        return self._add_chat({"id": chat_id, "type": "group", "title": title})

    def supergroup(
        self,
        title: str = "On-call",
        *,
        forum: bool = False,
        username: str | None = None,
        chat_id: int | None = None,
    ) -> Chat:
        """A supergroup (`-100…` id); with `forum=True` it has topics (see `create_topic`)."""
        chat: JsonDict = {
            "id": chat_id if chat_id is not None else self._new_supergroup_id(),
            "type": "supergroup",
            "title": title,
        }
        if forum:
            chat["is_forum"] = True
        if username:
            chat["username"] = username
        return self._add_chat(chat)

    def channel(
        self, title: str = "Monitoring", *, username: str | None = None, chat_id: int | None = None
    ) -> Chat:
        """A channel the bot is an administrator of."""
        chat: JsonDict = {
            "id": chat_id if chat_id is not None else self._new_supergroup_id(),
            "type": "channel",
            "title": title,
        }
        if username:
            chat["username"] = username
        return self._add_chat(chat)

    def create_topic(self, chat: ChatRef, name: str, *, announce: bool = False) -> int:
        """Open a forum topic; returns its `message_thread_id`.

        With `announce=True` the `forum_topic_created` service message is pushed as an update.
        """
        state = self._chat_state(chat)
        if not state.chat.get("is_forum"):
            raise ValueError(f"chat {state.id} is not a forum supergroup")
        thread_id = state.take_message_id()
        state.topics[thread_id] = name
        service: JsonDict = {
            "message_id": thread_id,
            "date": int(time.time()),
            "chat": state.chat,
            "message_thread_id": thread_id,
            "is_topic_message": True,
            "forum_topic_created": {"name": name, "icon_color": 7322096},
        }
        if announce:
            self.push_update({"message": service})
        return thread_id

    # -- pushing updates as people would ---------------------------------------------------

    def push_update(self, update: JsonDict) -> int:
        """Queue a raw update (without `update_id`); returns the `update_id` it got.

        Like Telegram, an update whose type is not in the bot's current `allowed_updates`
        is dropped (see `dropped_updates`), and is never delivered.
        """
        update_id = self._next_update_id
        self._next_update_id += 1
        update = {"update_id": update_id, **update}
        self._pushed[update_id] = update
        kind = _update_type(update)
        if kind not in self._allowed_updates:
            self._dropped.append((update, f"{kind!r} is not in allowed_updates"))
        else:
            self._queue.append(update)
        self._notify()
        return update_id

    async def send_user_message(
        self,
        chat: ChatRef,
        user: UserRef,
        text: str | None = None,
        *,
        reply_to: int | Message | None = None,
        message_thread_id: int | None = None,
        caption: str | None = None,
        photo: bool = False,
        document: str | None = None,
        entities: list[JsonDict] | None = None,
    ) -> Message:
        """A person posts a message (a `message` update); returns the Message.

        `photo=True` or `document="report.txt"` make it a media message with `caption`.
        A text starting with "/" gets its `bot_command` entity, as Telegram adds one.
        """
        state = self._chat_state(chat)
        sender = self._user_data(user)
        message = self._new_user_message(
            state,
            sender,
            text=text,
            caption=caption,
            photo=photo,
            document=document,
            entities=entities,
            reply_to=reply_to,
            message_thread_id=message_thread_id,
        )
        self.push_update({"message": message})
        return Message.model_validate(message)

    async def post_channel(
        self,
        channel: ChatRef,
        text: str | None = None,
        *,
        caption: str | None = None,
        photo: bool = False,
        document: str | None = None,
        author_signature: str | None = None,
    ) -> Message:
        """A post appears in a channel (a `channel_post` update); returns the Message."""
        state = self._chat_state(channel)
        if state.type != "channel":
            raise ValueError(f"chat {state.id} is not a channel")
        message = self._new_user_message(
            state,
            None,
            text=text,
            caption=caption,
            photo=photo,
            document=document,
            author_signature=author_signature,
        )
        self.push_update({"channel_post": message})
        return Message.model_validate(message)

    async def edit_user_message(
        self,
        chat: ChatRef,
        message_id: int | Message,
        text: str | None = None,
        *,
        caption: str | None = None,
    ) -> Message:
        """A person edits their message (`edited_message`, or `edited_channel_post`)."""
        state = self._chat_state(chat)
        record = self._find_message(state, _message_id(message_id))
        if record is None or record.from_bot:
            raise LookupError(f"no message {message_id} from a person in chat {state.id}")
        data = dict(record.data)
        new_text = text if text is not None else caption
        if new_text is None:
            raise ValueError("give the new text or caption")
        field_name = "caption" if record.is_caption else "text"
        entities_field = "caption_entities" if record.is_caption else "entities"
        data[field_name] = new_text
        data.pop(entities_field, None)
        if new_text.startswith("/") and not record.is_caption:
            data["entities"] = [_command_entity(new_text)]
        data["edit_date"] = int(time.time())
        record.history.append(
            MessageVersion(record.raw_text, record.text, record.entities, None, self.now())
        )
        record.raw_text = record.text = new_text
        record.entities = list(data.get(entities_field, []))
        record.data = data
        kind = "edited_channel_post" if state.type == "channel" else "edited_message"
        self.push_update({kind: data})
        return Message.model_validate(data)

    async def press_button(
        self,
        chat: ChatRef,
        user: UserRef,
        message_id: int | Message | ChatMessage,
        data: str | None = None,
        *,
        text: str | None = None,
        check: bool = True,
    ) -> str:
        """A person presses an inline button; returns the callback query id.

        Name the button by its `data` or its label `text`. With `check=False` the data
        need not be on the message (a press from a client showing an older keyboard).
        """
        state = self._chat_state(chat)
        sender = self._user_data(user)
        number = (
            message_id.message_id
            if isinstance(message_id, ChatMessage)
            else _message_id(message_id)
        )
        record = self._find_message(state, number)
        if record is None:
            raise LookupError(f"no message {number} in chat {state.id}")
        if text is not None:
            data = record.button(text).callback_data
        if data is None:
            raise ValueError("give the button's callback data or its text")
        if check and data not in {
            button.callback_data for row in record.buttons for button in row
        }:
            raise LookupError(
                f"message {number} in chat {state.id} has no button with data {data!r}; "
                f"its buttons: {[(b.text, b.callback_data) for r in record.buttons for b in r]}"
            )
        query_id = str(next(self._query_ids) * 1_000_003 + secrets.randbelow(1000))
        self._queries[query_id] = _CallbackQuery(query_id, state.id, number, self.now())
        self.push_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": sender,
                    "message": record.data,
                    "chat_instance": str(abs(state.id) * 7 + 13),
                    "data": data,
                }
            }
        )
        return query_id

    def set_admins(self, chat: ChatRef, *admins: UserRef, owner: UserRef | None = None) -> None:
        """The chat's creator and administrators, as getChatAdministrators lists them."""
        state = self._chat_state(chat)
        state.owner = None if owner is None else int(self._user_data(owner)["id"])
        state.admins = [int(self._user_data(admin)["id"]) for admin in admins]

    def turn_reactions_off(self, chat: ChatRef) -> None:
        """The chat allows no reactions: setMessageReaction answers REACTION_INVALID."""
        self._chat_state(chat).reactions_off = True

    def kick_bot(self, chat: ChatRef) -> None:
        """The bot is removed from the chat (or blocked, for a private chat): 403 from now on."""
        self._chat_state(chat).bot_kicked = True

    def forget_chat(self, chat: ChatRef) -> None:
        """The chat disappears: "chat not found" from now on."""
        self._chat_state(chat).forgotten = True

    def migrate_to_supergroup(self, group: ChatRef, *, announce: bool = True) -> Chat:
        """Upgrade a basic group to a supergroup; returns the new chat.

        Calls for the old id get 400 with `parameters.migrate_to_chat_id` from now on. With
        `announce=True` the two service messages (`migrate_to_chat_id` in the old chat,
        `migrate_from_chat_id` in the new one) are pushed as updates, as Telegram does.
        """
        old = self._chat_state(group)
        if old.type != "group":
            raise ValueError(f"chat {old.id} is not a basic group")
        new_chat = self.supergroup(str(old.chat.get("title", "")))
        new = self._chat_state(new_chat)
        old.migrated_to = new.id
        if announce:
            now = int(time.time())
            self.push_update(
                {
                    "message": {
                        "message_id": old.take_message_id(),
                        "date": now,
                        "chat": old.chat,
                        "from": self._bot,
                        "migrate_to_chat_id": new.id,
                    }
                }
            )
            self.push_update(
                {
                    "message": {
                        "message_id": new.take_message_id(),
                        "date": now,
                        "chat": new.chat,
                        "sender_chat": old.chat,
                        "migrate_from_chat_id": old.id,
                    }
                }
            )
        return new_chat

    # -- faults and limits -----------------------------------------------------------------

    def inject_fault(
        self,
        kind: FaultKind,
        *,
        times: int | None = None,
        duration: float | None = None,
        methods: Iterable[str] | None = None,
        chat_id: int | None = None,
        delay: float = 0.0,
        retry_after: int = 1,
        migrate_to_chat_id: int | None = None,
    ) -> Fault:
        """Make calls fail: the next `times` matching calls, or for `duration` seconds,
        or (neither given) until `fault.cancel()` / `clear_faults()`.

        `methods` (names, any case) and `chat_id` narrow which calls match; `delay` holds
        each answer back that long first.
        """
        fault = Fault(
            kind=kind,
            methods=None if methods is None else frozenset(name.lower() for name in methods),
            chat_id=chat_id,
            remaining=times,
            until=None if duration is None else self.now() + duration,
            delay=delay,
            retry_after=retry_after,
            migrate_to_chat_id=migrate_to_chat_id,
        )
        self._faults.append(fault)
        return fault

    def on_accepted(self, method: str, hook: Callable[[CallRecord], None]) -> None:
        """Call `hook(record)` whenever a `method` call succeeds, before the bot has the
        answer: the moment Telegram has done what was asked (a test takes a lock there)."""
        self._accepted_hooks.append((method.lower(), hook))

    def fail_next(
        self, times: int = 1, kind: FaultKind = FaultKind.BAD_GATEWAY, **options: Any
    ) -> Fault:
        """Shorthand for `inject_fault(kind, times=times, ...)`."""
        return self.inject_fault(kind, times=times, **options)

    def clear_faults(self) -> None:
        for fault in self._faults:
            fault.cancel()
        self._faults.clear()

    def enable_rate_limits(self, limits: RateLimits | None = None) -> RateLimits:
        """Switch flood limits on (Telegram's defaults unless given); returns them."""
        self.rate_limits = limits or RateLimits()
        self._windows.clear()
        return self.rate_limits

    # -- inspecting ------------------------------------------------------------------------

    def calls(self, method: str | None = None, *, chat_id: int | None = None) -> list[CallRecord]:
        """Answered requests in order, optionally of one method (any case) or chat."""
        return [
            call
            for call in self._calls
            if (method is None or call.method.lower() == method.lower())
            and (chat_id is None or call.chat_id == chat_id)
        ]

    def sent_messages(self, chat_id: ChatRef | None = None) -> list[ChatMessage]:
        """Messages the bot sent, in order, in their current state (deleted ones flagged)."""
        wanted = None if chat_id is None else _chat_id(chat_id)
        return [message for message in self._sent if wanted is None or message.chat_id == wanted]

    def messages(self, chat: ChatRef) -> list[ChatMessage]:
        """Every message in the chat, from people and the bot, by message_id."""
        state = self._chat_state(chat)
        return [state.messages[number] for number in sorted(state.messages)]

    def message(self, chat: ChatRef, message_id: int) -> ChatMessage:
        record = self._find_message(self._chat_state(chat), message_id)
        if record is None:
            raise LookupError(f"no message {message_id} in chat {_chat_id(chat)}")
        return record

    def chat_transcript(self, chat: ChatRef) -> str:
        """The chat as a person sees it: visible text as edited, buttons, no deleted messages.

        One block per message: `#id sender (reply to #n, topic t, edited): text`, then the
        keyboard, one row per line.
        """
        lines: list[str] = []
        for record in self.messages(chat):
            if record.deleted:
                continue
            notes = []
            if record.reply_to_message_id is not None:
                notes.append(f"reply to #{record.reply_to_message_id}")
            if record.message_thread_id is not None:
                notes.append(f"topic {record.message_thread_id}")
            if record.edited:
                notes.append("edited")
            head = f"#{record.message_id} {record.sender}"
            if notes:
                head += f" ({', '.join(notes)})"
            body = record.text if record.text is not None else _describe_service(record.data)
            if record.is_caption:
                body = f"{_describe_service(record.data)} {body}"
            text_lines = body.split("\n")
            lines.append(f"{head}: {text_lines[0]}")
            lines.extend(f"    {line}" for line in text_lines[1:])
            lines.extend(
                "    " + " ".join(str(button) for button in row) for row in record.buttons
            )
        return "\n".join(lines)

    @property
    def callback_answers(self) -> list[CallbackAnswer]:
        return list(self._answers)

    def callback_answer(self, query_id: str) -> CallbackAnswer | None:
        query = self._queries.get(query_id)
        return None if query is None else query.answer

    @property
    def offset(self) -> int:
        """The highest `offset` getUpdates confirmed with (0 before any confirmation)."""
        return self._offset

    @property
    def pending_updates(self) -> list[JsonDict]:
        """Updates queued and not yet confirmed."""
        return list(self._queue)

    @property
    def dropped_updates(self) -> list[tuple[JsonDict, str]]:
        """Updates never delivered (filtered by allowed_updates, dropped pending), with why."""
        return list(self._dropped)

    @property
    def waiting_polls(self) -> int:
        """getUpdates requests currently waiting (long polling) for an update."""
        return self._waiting_polls

    def is_confirmed(self, update_id: int) -> bool:
        return update_id in self._confirmed_at

    def confirmed_at(self, update_id: int) -> float | None:
        return self._confirmed_at.get(update_id)

    @property
    def allowed_updates(self) -> frozenset[str]:
        return self._allowed_updates

    @property
    def webhook(self) -> JsonDict:
        """The last setWebhook's parameters ({} when no webhook is set)."""
        return dict(self._webhook)

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every attempt to POST an update to the webhook, in order."""
        return list(self._webhook_deliveries)

    def commands(
        self, *, scope: JsonDict | None = None, language_code: str = ""
    ) -> list[JsonDict] | None:
        """The commands set for a scope (default scope unless given) and language."""
        return self._commands.get((_scope_key(scope), language_code))

    @property
    def all_commands(self) -> dict[tuple[str, str], list[JsonDict]]:
        """Every command list set, by (scope as JSON, language code)."""
        return dict(self._commands)

    @property
    def rate_log(self) -> list[RateEvent]:
        """Every call counted by the rate limits, accepted or refused with 429, in order."""
        return list(self._rate_log)

    def max_in_window(self, window: float, *, chat_id: int | None = None) -> int:
        """Most accepted counted calls in any `window`-second span (for one chat or all)."""
        times = [
            event.at
            for event in self._rate_log
            if event.accepted and (chat_id is None or event.chat_id == chat_id)
        ]
        best = 0
        start = 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def early_retries(self, *, tolerance: float = 0.05) -> list[RateEvent]:
        """Counted calls made to a chat before a 429's `retry_after` for it had passed."""
        banned_until: dict[int, float] = {}
        early: list[RateEvent] = []
        for event in self._rate_log:
            if event.at + tolerance < banned_until.get(event.chat_id, -math.inf):
                early.append(event)
            if not event.accepted and event.retry_after is not None:
                banned_until[event.chat_id] = max(
                    banned_until.get(event.chat_id, -math.inf), event.at + event.retry_after
                )
        return early

    # -- waiting ---------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[], _T],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the asyncio.wait_for convention
        what: str | None = None,
    ) -> _T:
        """Wait until `predicate()` is truthy (re-checked on every change); return its value.

        Raises TimeoutError naming `what` and listing the recent calls.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(self._timeout_report(what or repr(predicate), timeout))
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                continue

    async def wait_confirmed(
        self,
        update_id: int,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the asyncio.wait_for convention
    ) -> float:
        """Wait until getUpdates confirmed `update_id` (its offset moved past it)."""
        await self.wait_for(
            lambda: self.is_confirmed(update_id),
            timeout=timeout,
            what=f"update {update_id} to be confirmed",
        )
        return self._confirmed_at[update_id]

    async def wait_for_message(
        self,
        chat: ChatRef,
        *,
        after: int | Message | None = None,
        contains: str | None = None,
        reply_to: int | Message | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - the asyncio.wait_for convention
    ) -> ChatMessage:
        """Wait for the first bot message in the chat matching all the conditions given.

        `after`: its message_id is greater; `contains`: in its visible text as it is now
        (so an edited card matches its new text); `reply_to`: it replies to that message.
        """
        chat_id = _chat_id(chat)
        after_id = None if after is None else _message_id(after)
        reply_id = None if reply_to is None else _message_id(reply_to)

        def find() -> ChatMessage | None:
            for message in self._sent:
                if (
                    message.chat_id == chat_id
                    and (after_id is None or message.message_id > after_id)
                    and (contains is None or contains in (message.text or ""))
                    and (reply_id is None or message.reply_to_message_id == reply_id)
                ):
                    return message
            return None

        conditions = ", ".join(
            f"{name}={value!r}"
            for name, value in (
                ("after", after_id),
                ("contains", contains),
                ("reply_to", reply_id),
            )
            if value is not None
        )
        found = await self.wait_for(
            find, timeout=timeout, what=f"a bot message in chat {chat_id} ({conditions})"
        )
        assert found is not None
        return found

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[CallRecord], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the asyncio.wait_for convention
    ) -> CallRecord:
        """Wait until `count` calls of `method` (matching `predicate`) were answered;
        returns the last of them."""

        def find() -> CallRecord | None:
            matching = [
                call for call in self.calls(method) if predicate is None or predicate(call)
            ]
            return matching[count - 1] if len(matching) >= count else None

        found = await self.wait_for(find, timeout=timeout, what=f"{count} call(s) of {method}")
        assert found is not None
        return found

    async def wait_for_answer(
        self,
        query_id: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the asyncio.wait_for convention
    ) -> CallbackAnswer:
        """Wait until the bot answered the callback query."""
        found = await self.wait_for(
            lambda: self.callback_answer(query_id),
            timeout=timeout,
            what=f"an answer to callback query {query_id}",
        )
        assert found is not None
        return found

    def _timeout_report(self, what: str, timeout: float) -> str:
        lines = [f"Timed out after {timeout}s waiting for {what}.", "Recent Bot API calls:"]
        lines.extend(f"  {call}" for call in self._calls[-15:])
        if not self._calls:
            lines.append("  (none)")
        if self._queue:
            lines.append(f"Unconfirmed updates: {[u['update_id'] for u in self._queue]}")
        if self._dropped:
            lines.append("Dropped updates:")
            lines.extend(
                f"  {update['update_id']} ({_update_type(update)}): {why}"
                for update, why in self._dropped[-5:]
            )
        return "\n".join(lines)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- HTTP ------------------------------------------------------------------------------

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(ApiError(404, "Not Found").payload(), status=404)

    async def _read_params(self, request: web.Request) -> _Params:
        values: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    values.update(body)
            else:
                form = await request.post()
                for name, value in form.items():
                    values[name] = value if isinstance(value, str) else f"<file {name}>"
        return _Params(values)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        params = await self._read_params(request)
        record = await self._call(
            request.match_info["method"], params, token=request.match_info["token"]
        )
        if record.fault == FaultKind.DISCONNECT.value:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        not_the_bot_api = _NOT_THE_BOT_API.get(record.fault or "")
        if not_the_bot_api is not None:
            status, content_type, body = not_the_bot_api
            return web.Response(text=body, status=status, content_type=content_type)
        return web.Response(
            text=json.dumps(record.response, ensure_ascii=False),
            status=record.status,
            content_type="application/json",
        )

    async def _call(
        self, requested: str, params: _Params, *, token: str, via: str = "http"
    ) -> CallRecord:
        """Run one Bot API call through faults, limits and the method; record it."""
        name, handler = self._methods.get(requested.lower(), (requested, None))
        record = CallRecord(
            seq=next(self._call_seq),
            method=name,
            params=params.recorded(),
            at=self.now(),
            via=via,
        )
        try:
            record.chat_id = _int_or_none(params.values.get("chat_id"))
        except ValueError:
            record.chat_id = None
        try:
            if token != self.token:
                raise ApiError(401, "Unauthorized")
            if handler is None:
                raise ApiError(404, "Not Found")
            fault = self._take_fault(name, record.chat_id)
            if fault is not None:
                record.fault = fault.kind.value
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.kind is FaultKind.DISCONNECT:
                    raise ApiError(0, "connection dropped (fault injected)")
                if fault.kind.value in _NOT_THE_BOT_API:
                    raise ApiError(0, f"not the Bot API ({fault.kind.value}, fault injected)")
                if fault.kind is not FaultKind.SLOW:
                    raise self._fault_error(fault, record.chat_id)
            counted = self._check_rate(name, record.chat_id)
            result = await handler(params)
            if counted:
                self._count_rate(name, record.chat_id)
            status, payload = 200, {"ok": True, "result": result}
            record.response = payload
            for method, hook in self._accepted_hooks:
                if method == name.lower():
                    hook(record)
        except ApiError as error:
            status, payload = error.status, error.payload()
        record.finished_at = self.now()
        record.status = status
        record.response = payload
        self._calls.append(record)
        self._notify()
        return record

    def _take_fault(self, method: str, chat_id: int | None) -> Fault | None:
        now = self.now()
        for fault in self._faults:
            if fault.matches(method, chat_id, now):
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def _fault_error(self, fault: Fault, chat_id: int | None) -> ApiError:
        if fault.kind is FaultKind.BAD_GATEWAY:
            return ApiError(502, "Bad Gateway")
        if fault.kind is FaultKind.INTERNAL_ERROR:
            return ApiError(500, "Internal Server Error")
        if fault.kind is FaultKind.CHAT_NOT_FOUND:
            return _bad_request("chat not found")
        if fault.kind is FaultKind.BOT_KICKED:
            state = self._chats.get(chat_id) if chat_id is not None else None
            return _kicked_error(state.type if state is not None else "supergroup")
        if fault.kind is FaultKind.TOO_MANY_REQUESTS:
            return _too_many(fault.retry_after)
        target = fault.migrate_to_chat_id or self._new_supergroup_id()
        return ApiError(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            {"migrate_to_chat_id": target},
        )

    # -- rate limits -----------------------------------------------------------------------

    def _limits_for(self, chat_id: int) -> list[tuple[str, int, Limit]]:
        limits = self.rate_limits
        if limits is None:
            return []
        scopes: list[tuple[str, int, Limit]] = []
        if limits.overall is not None:
            scopes.append(("overall", 0, limits.overall))
        chat_limit = limits.group if chat_id < 0 else limits.private
        if chat_limit is not None:
            scopes.append(("group" if chat_id < 0 else "private", chat_id, chat_limit))
        return scopes

    def _check_rate(self, method: str, chat_id: int | None) -> bool:
        """Refuse with 429 when a window is full; True when the call counts."""
        limits = self.rate_limits
        if limits is None or chat_id is None or method not in limits.methods:
            return False
        now = self.now()
        for scope, key, limit in self._limits_for(chat_id):
            window = self._windows.setdefault((scope, key), deque())
            while window and window[0] <= now - limit.per:
                window.popleft()
            if len(window) >= limit.count:
                retry_after = max(1, math.ceil(window[0] + limit.per - now))
                self._rate_log.append(
                    RateEvent(now, method, chat_id, False, retry_after=retry_after, scope=scope)
                )
                raise _too_many(retry_after)
        return True

    def _count_rate(self, method: str, chat_id: int | None) -> None:
        assert chat_id is not None
        now = self.now()
        for scope, key, _limit in self._limits_for(chat_id):
            self._windows.setdefault((scope, key), deque()).append(now)
        self._rate_log.append(RateEvent(now, method, chat_id, True))

    # -- helpers ---------------------------------------------------------------------------

    def _new_supergroup_id(self) -> int:
        return -(1_000_000_000_000 + next(self._supergroup_ids))

    def _add_chat(self, chat: JsonDict) -> Chat:
        existing = self._chats.get(chat["id"])
        if existing is None:
            self._chats[chat["id"]] = _ChatState(chat)
        else:
            existing.chat = chat
        return Chat.model_validate(chat)

    def _chat_state(self, chat: ChatRef) -> _ChatState:
        chat_id = _chat_id(chat)
        state = self._chats.get(chat_id)
        if state is None:
            raise LookupError(f"unknown chat {chat_id}: create it with the stub's factories")
        return state

    def _user_data(self, user: UserRef) -> JsonDict:
        user_id = user if isinstance(user, int) else user.id
        data = self._users.get(user_id)
        if data is None:
            if isinstance(user, int):
                raise LookupError(f"unknown user {user_id}: create it with stub.user()")
            data = user.model_dump(exclude_none=True)
            self._users[user_id] = data
        return data

    def _find_message(self, state: _ChatState, message_id: int) -> ChatMessage | None:
        record = state.messages.get(message_id)
        return None if record is None or record.deleted else record

    def _resolve_chat(self, params: _Params, *, writable: bool = True) -> _ChatState:
        """The chat a call addresses, checked as Telegram would before acting."""
        raw = params.values.get("chat_id")
        if raw is None or raw == "":
            raise _bad_request("chat_id is empty")
        state: _ChatState | None = None
        if isinstance(raw, str) and raw.startswith("@"):
            username = raw[1:].lower()
            state = next(
                (
                    candidate
                    for candidate in self._chats.values()
                    if str(candidate.chat.get("username", "")).lower() == username
                    and candidate.type != "private"
                ),
                None,
            )
        else:
            try:
                state = self._chats.get(int(raw))
            except (TypeError, ValueError):
                state = None
        if state is None or state.forgotten:
            raise _bad_request("chat not found")
        if state.migrated_to is not None:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": state.migrated_to},
            )
        if writable and state.bot_kicked:
            raise _kicked_error(state.type)
        return state

    def _parse_text(
        self, params: _Params, field_name: str, entities_field: str, *, editing: bool
    ) -> tuple[str, ParsedText, str | None]:
        raw = params.get_str(field_name)
        if raw is None or raw == "":
            raise _bad_request("message text is empty")
        parse_mode = params.get_str("parse_mode") or None
        explicit = params.get_json(entities_field, "message entities")
        if explicit:
            if not isinstance(explicit, list):
                raise _bad_request("can't parse entities JSON object")
            parsed = ParsedText(raw, [dict(entity) for entity in explicit])
            parse_mode = None
        elif parse_mode is None:
            parsed = ParsedText(raw)
        elif parse_mode.lower() == "html":
            try:
                parsed = parse_html(raw, strict_ampersand=self.strict_ampersand)
            except EntityParseError as error:
                raise _bad_request(f"can't parse entities: {error}") from None
        elif parse_mode.lower() in {"markdown", "markdownv2"}:
            # Not parsed by the stub: the visible text is the raw text.
            parsed = ParsedText(raw)
        else:
            raise _bad_request("unsupported parse_mode")
        parsed = strip_text(clean_text(parsed))
        if not parsed.text:
            raise _bad_request("message text is empty")
        if utf16_length(parsed.text) > MAX_MESSAGE_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG" if editing else "message is too long")
        return raw, parsed, parse_mode

    def _reply_markup(self, params: _Params, *, inline_only: bool = False) -> JsonDict | None:
        markup = params.get_json("reply_markup", "reply keyboard markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if inline_only:
                raise _bad_request("inline keyboard expected")
            return markup
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        for row in rows:
            for button in row:
                _check_inline_button(button)
        return markup

    def _store_bot_message(
        self,
        state: _ChatState,
        params: _Params,
        raw: str,
        parsed: ParsedText,
        parse_mode: str | None,
        markup: JsonDict | None,
    ) -> ChatMessage:
        reply_to_id, quote_allowed = _reply_target(params)
        reply: ChatMessage | None = None
        if reply_to_id is not None:
            reply = self._find_message(state, reply_to_id)
            if reply is None and not quote_allowed:
                raise _bad_request("message to be replied not found")
        thread_id = params.get_int("message_thread_id")
        if state.chat.get("is_forum"):
            if thread_id is not None and thread_id not in state.topics and thread_id != 1:
                raise _bad_request("message thread not found")
            if thread_id is None and reply is not None:
                thread_id = reply.message_thread_id
        message_id = state.take_message_id()
        data: JsonDict = {"message_id": message_id}
        if state.type == "channel":
            data["sender_chat"] = state.chat
        else:
            data["from"] = self._bot
        data |= {"chat": state.chat, "date": int(time.time())}
        if thread_id is not None and state.chat.get("is_forum"):
            data["message_thread_id"] = thread_id
            data["is_topic_message"] = True
        if reply is not None:
            data["reply_to_message"] = _without_reply(reply.data)
        data["text"] = parsed.text
        if parsed.entities:
            data["entities"] = parsed.entities
        preview = params.get_json("link_preview_options", "link preview options")
        if isinstance(preview, dict) and preview:
            data["link_preview_options"] = preview
        if markup is not None and "inline_keyboard" in markup:
            data["reply_markup"] = markup
        record = ChatMessage(
            chat_id=state.id,
            message_id=message_id,
            from_bot=True,
            sender=_display_name(self._bot),
            raw_text=raw,
            text=parsed.text,
            entities=parsed.entities,
            parse_mode=parse_mode,
            reply_markup=data.get("reply_markup"),
            reply_to_message_id=None if reply is None else reply.message_id,
            message_thread_id=data.get("message_thread_id"),
            date=data["date"],
            sent_at=self.now(),
            data=data,
            params=params.recorded(),
        )
        state.messages[message_id] = record
        self._sent.append(record)
        return record

    def _new_user_message(
        self,
        state: _ChatState,
        sender: JsonDict | None,
        *,
        text: str | None,
        caption: str | None,
        photo: bool,
        document: str | None,
        entities: list[JsonDict] | None = None,
        reply_to: int | Message | None = None,
        message_thread_id: int | None = None,
        author_signature: str | None = None,
    ) -> JsonDict:
        media = photo or document is not None
        if media and text is not None:
            raise ValueError("a media message has a caption, not a text")
        if not media and text is None:
            raise ValueError("give the message text (or photo=True / document=... and caption)")
        reply: ChatMessage | None = None
        if reply_to is not None:
            reply = self._find_message(state, _message_id(reply_to))
            if reply is None:
                raise LookupError(f"no message {_message_id(reply_to)} in chat {state.id}")
        if state.chat.get("is_forum"):
            if message_thread_id is None and reply is not None:
                message_thread_id = reply.message_thread_id
            if message_thread_id is not None and message_thread_id not in state.topics:
                raise LookupError(f"no topic {message_thread_id} in chat {state.id}")
        message_id = state.take_message_id()
        data: JsonDict = {"message_id": message_id}
        if sender is not None:
            data["from"] = sender
        else:
            data["sender_chat"] = state.chat
        data |= {"chat": state.chat, "date": int(time.time())}
        if message_thread_id is not None:
            data["message_thread_id"] = message_thread_id
            if state.chat.get("is_forum"):
                data["is_topic_message"] = True
        if reply is not None:
            data["reply_to_message"] = _without_reply(reply.data)
        if author_signature:
            data["author_signature"] = author_signature
        visible = text if text is not None else caption
        if text is not None:
            data["text"] = text
            if entities:
                data["entities"] = entities
            elif text.startswith("/"):
                data["entities"] = [_command_entity(text)]
        if photo:
            unique = secrets.token_hex(8)
            data["photo"] = [
                {
                    "file_id": f"photo-{unique}-s",
                    "file_unique_id": f"{unique}s",
                    "width": 90,
                    "height": 67,
                },
                {
                    "file_id": f"photo-{unique}-m",
                    "file_unique_id": f"{unique}m",
                    "width": 1280,
                    "height": 960,
                },
            ]
        if document is not None:
            unique = secrets.token_hex(8)
            data["document"] = {
                "file_id": f"document-{unique}",
                "file_unique_id": unique,
                "file_name": document,
            }
        if media and caption is not None:
            data["caption"] = caption
            if entities:
                data["caption_entities"] = entities
        record = ChatMessage(
            chat_id=state.id,
            message_id=message_id,
            from_bot=False,
            sender=_display_name(sender if sender is not None else state.chat),
            raw_text=visible,
            text=visible,
            entities=list(entities or data.get("entities", [])),
            parse_mode=None,
            reply_markup=None,
            reply_to_message_id=None if reply is None else reply.message_id,
            message_thread_id=message_thread_id,
            date=data["date"],
            sent_at=self.now(),
            data=data,
            is_caption=media,
        )
        state.messages[message_id] = record
        return data

    def _edit_target(self, params: _Params) -> tuple[_ChatState, ChatMessage]:
        if params.has("inline_message_id"):
            raise _bad_request("message to edit not found")
        state = self._resolve_chat(params)
        message_id = params.get_int("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        record = self._find_message(state, message_id)
        if record is None:
            raise _bad_request("message to edit not found")
        if not record.from_bot:
            raise _bad_request("message can't be edited")
        return state, record

    def _apply_edit(
        self,
        record: ChatMessage,
        *,
        raw: str | None,
        parsed: ParsedText | None,
        parse_mode: str | None,
        markup: JsonDict | None,
    ) -> JsonDict:
        record.history.append(
            MessageVersion(
                record.raw_text, record.text, record.entities, record.reply_markup, self.now()
            )
        )
        data = dict(record.data)
        if parsed is not None:
            record.raw_text = raw
            record.text = parsed.text
            record.entities = parsed.entities
            record.parse_mode = parse_mode
            data["text"] = parsed.text
            data.pop("entities", None)
            if parsed.entities:
                data["entities"] = parsed.entities
        record.reply_markup = markup
        data.pop("reply_markup", None)
        if markup is not None:
            data["reply_markup"] = markup
        data["edit_date"] = int(time.time())
        record.data = data
        return data

    # -- Bot API methods -------------------------------------------------------------------

    async def _get_me(self, params: _Params) -> JsonDict:
        return self._bot

    async def _get_chat(self, params: _Params) -> JsonDict:
        state = self._resolve_chat(params, writable=False)
        return {**state.chat, "accent_color_id": 0, "max_reaction_count": 11}

    async def _get_chat_administrators(self, params: _Params) -> list[JsonDict]:
        state = self._resolve_chat(params, writable=False)
        if state.type == "private":
            raise _bad_request("there are no administrators in the private chat")
        members: list[JsonDict] = []
        if state.owner is not None:
            user = self._users[state.owner]
            members.append({"status": "creator", "user": user, "is_anonymous": False})
        rights = [
            "can_manage_chat",
            "can_delete_messages",
            "can_manage_video_chats",
            "can_restrict_members",
            "can_promote_members",
            "can_change_info",
            "can_invite_users",
            "can_post_stories",
            "can_edit_stories",
            "can_delete_stories",
            "can_send_welcome_messages",
        ]
        for admin in state.admins:
            members.append(
                {
                    "status": "administrator",
                    "user": self._users[admin],
                    "can_be_edited": False,
                    "is_anonymous": False,
                    **dict.fromkeys(rights, False),
                }
            )
        return members

    async def _get_updates(self, params: _Params) -> list[JsonDict]:
        if self._webhook.get("url"):
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get_int("offset", 0) or 0
        limit = min(max(params.get_int("limit", 100) or 100, 1), 100)
        timeout = max(params.get_int("timeout", 0) or 0, 0)
        allowed = params.get_json("allowed_updates", "allowed updates")
        if allowed is not None:
            if not isinstance(allowed, list):
                raise _bad_request("can't parse allowed updates JSON object")
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_UPDATE_TYPES
        self._poll_generation += 1
        generation = self._poll_generation
        self._confirm(offset)
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            batch = self._queue[:limit]
            remaining = deadline - loop.time()
            if batch or remaining <= 0 or self._closing:
                return batch
            self._waiting_polls += 1
            self._notify()
            changed = self._changed  # after our own notification, or it wakes us at once
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                continue
            finally:
                self._waiting_polls -= 1

    def _confirm(self, offset: int) -> None:
        now = self.now()
        if offset < 0:
            keep = self._queue[offset:]
            for update in self._queue[: len(self._queue) - len(keep)]:
                self._dropped.append((update, f"forgotten by offset {offset}"))
            self._queue = keep
            return
        if offset == 0:
            return
        confirmed = [update for update in self._queue if update["update_id"] < offset]
        for update in confirmed:
            self._confirmed_at[update["update_id"]] = now
        self._queue = [update for update in self._queue if update["update_id"] >= offset]
        self._offset = max(self._offset, offset)

    async def _set_webhook(self, params: _Params) -> bool:
        url = params.get_str("url") or ""
        if not url:
            self._webhook = {}
            self._notify()
            return True
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname == HOST):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get_str("secret_token")
        if secret is not None and not _SECRET_TOKEN_RE.fullmatch(secret):
            raise _bad_request("secret token contains unallowed characters")
        if params.get_bool("drop_pending_updates"):
            self._drop_pending("dropped by setWebhook(drop_pending_updates)")
        allowed = params.get_json("allowed_updates", "allowed updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_UPDATE_TYPES
        self._webhook = params.recorded()
        self._webhook_error = None
        self._poll_generation += 1
        self._notify()
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.create_task(self._deliver_webhooks())
        return True

    async def _delete_webhook(self, params: _Params) -> bool:
        if params.get_bool("drop_pending_updates"):
            self._drop_pending("dropped by deleteWebhook(drop_pending_updates)")
        self._webhook = {}
        self._notify()
        return True

    async def _deliver_webhooks(self) -> None:
        """POST queued updates to the webhook one at a time, in order, until it is deleted.

        Only http(s)://127.0.0.1 URLs are called; an update counts as confirmed once the
        bot answers 2xx, and a method in the answer's JSON body is executed, as Telegram
        does. A failed delivery is recorded and retried after `webhook_retry_delay`.
        """
        async with aiohttp.ClientSession() as http:
            while not self._closing and self._webhook.get("url"):
                changed = self._changed
                if not self._queue:
                    await changed.wait()
                    continue
                url = str(self._webhook["url"])
                if urlsplit(url).hostname != HOST:
                    self._webhook_error = (
                        int(time.time()),
                        "the stand-in delivers webhooks to 127.0.0.1 only",
                    )
                    await changed.wait()
                    continue
                update = self._queue[0]
                if await self._deliver_one(http, url, update):
                    continue
                await asyncio.sleep(self.webhook_retry_delay)

    async def _deliver_one(self, http: aiohttp.ClientSession, url: str, update: JsonDict) -> bool:
        headers = {}
        secret = self._webhook.get("secret_token")
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = str(secret)
        status: int | None = None
        body: Any = None
        error: str | None = None
        try:
            async with http.post(
                url,
                json=update,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    with suppress(ValueError, aiohttp.ContentTypeError):
                        body = await response.json()
                else:
                    error = f"Wrong response from the webhook: {status} {response.reason}"
        except (aiohttp.ClientError, TimeoutError) as failure:
            error = f"Connection failed: {type(failure).__name__}: {failure}"
        self._webhook_deliveries.append(
            WebhookDelivery(update["update_id"], url, self.now(), status, error)
        )
        if error is not None:
            self._webhook_error = (int(time.time()), error)
            self._notify()
            return False
        if self._queue and self._queue[0] is update:
            self._queue.pop(0)
        self._confirmed_at[update["update_id"]] = self.now()
        self._notify()
        if isinstance(body, dict) and isinstance(body.get("method"), str):
            method = body["method"]
            rest = {key: value for key, value in body.items() if key != "method"}
            await self._call(method, _Params(rest), token=self.token, via="webhook")
        return True

    def _drop_pending(self, why: str) -> None:
        self._dropped.extend((update, why) for update in self._queue)
        self._queue = []

    async def _get_webhook_info(self, params: _Params) -> JsonDict:
        info: JsonDict = {
            "url": self._webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        if self._webhook_error is not None:
            info["last_error_date"], info["last_error_message"] = self._webhook_error
        if self._webhook.get("url"):
            info["max_connections"] = int(self._webhook.get("max_connections", 40))
            if "allowed_updates" in self._webhook:
                info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    async def _send_message(self, params: _Params) -> JsonDict:
        state = self._resolve_chat(params)
        raw, parsed, parse_mode = self._parse_text(params, "text", "entities", editing=False)
        markup = self._reply_markup(params)
        return self._store_bot_message(state, params, raw, parsed, parse_mode, markup).data

    async def _edit_message_text(self, params: _Params) -> JsonDict:
        _state, record = self._edit_target(params)
        if record.text is None or record.is_caption:
            raise _bad_request("there is no text in the message to edit")
        raw, parsed, parse_mode = self._parse_text(params, "text", "entities", editing=True)
        markup = self._reply_markup(params, inline_only=True)
        if (
            parsed.text == record.text
            and parsed.entities == record.entities
            and markup == record.reply_markup
        ):
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        return self._apply_edit(
            record, raw=raw, parsed=parsed, parse_mode=parse_mode, markup=markup
        )

    async def _edit_message_reply_markup(self, params: _Params) -> JsonDict:
        _state, record = self._edit_target(params)
        markup = self._reply_markup(params, inline_only=True)
        if markup == record.reply_markup:
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        return self._apply_edit(record, raw=None, parsed=None, parse_mode=None, markup=markup)

    async def _set_message_reaction(self, params: _Params) -> bool:
        state = self._resolve_chat(params)
        message_id = params.get_int("message_id")
        record = None if message_id is None else self._find_message(state, message_id)
        if record is None:
            raise _bad_request("message to react not found")
        if state.reactions_off:
            raise _bad_request("REACTION_INVALID")
        reactions = params.get_json("reaction", "reaction") or []
        emoji = [str(item.get("emoji")) for item in reactions if item.get("type") == "emoji"]
        if any(item not in ALLOWED_REACTIONS for item in emoji):
            raise _bad_request("REACTION_INVALID")
        record.reactions = emoji
        return True

    async def _delete_message(self, params: _Params) -> bool:
        state = self._resolve_chat(params)
        message_id = params.get_int("message_id")
        record = None if message_id is None else self._find_message(state, message_id)
        if record is None:
            raise _bad_request("message to delete not found")
        record.deleted = True
        return True

    async def _answer_callback_query(self, params: _Params) -> bool:
        query_id = params.get_str("callback_query_id") or ""
        query = self._queries.get(query_id)
        if query is None or query.answer is not None:
            raise ApiError(400, QUERY_INVALID)
        if (
            self.callback_query_ttl is not None
            and self.now() - query.pressed_at > self.callback_query_ttl
        ):
            raise ApiError(400, QUERY_INVALID)
        text = params.get_str("text")
        if text is not None and len(text) > 200:
            raise _bad_request("MESSAGE_TOO_LONG")
        query.answer = CallbackAnswer(
            callback_query_id=query_id,
            text=text,
            show_alert=params.get_bool("show_alert"),
            url=params.get_str("url"),
            cache_time=params.get_int("cache_time", 0) or 0,
            at=self.now(),
        )
        self._answers.append(query.answer)
        return True

    def _commands_key(self, params: _Params) -> tuple[str, str]:
        scope = params.get_json("scope", "bot command scope")
        if scope is not None and (not isinstance(scope, dict) or "type" not in scope):
            raise _bad_request("can't parse bot command scope JSON object")
        language = params.get_str("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _bad_request("invalid language code specified")
        return _scope_key(scope), language

    async def _set_my_commands(self, params: _Params) -> bool:
        commands = params.get_json("commands", "bot commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse bot commands JSON object")
        if len(commands) > 100:
            raise _bad_request("BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse bot commands JSON object")
            if not _COMMAND_RE.fullmatch(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            description = str(command.get("description", ""))
            if not 1 <= len(description) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params)
        if commands:
            self._commands[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        else:
            self._commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: _Params) -> list[JsonDict]:
        return list(self._commands.get(self._commands_key(params), []))

    async def _delete_my_commands(self, params: _Params) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    async def _send_chat_action(self, params: _Params) -> bool:
        self._resolve_chat(params)
        if params.get_str("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True


_PORTAL_PAGE = "<!DOCTYPE html><html><body><h1>Sign in to the Wi-Fi</h1></body></html>"
_NOT_THE_BOT_API: dict[str, tuple[int, str, str]] = {
    FaultKind.HTML_PAGE.value: (200, "text/html", _PORTAL_PAGE),
    FaultKind.HTML_NOT_FOUND.value: (404, "text/html", "<html><h1>404 Not Found</h1></html>"),
    FaultKind.MALFORMED_JSON.value: (200, "application/json", '{"ok": true, "result": {"id'),
    FaultKind.WRONG_SHAPE.value: (200, "application/json", '{"status": "ok", "data": [1, 2]}'),
}
"""What a fault answers in place of the Bot API: (status, content type, body)."""


def _chat_id(chat: ChatRef) -> int:
    return chat if isinstance(chat, int) else chat.id


def _message_id(message: int | Message) -> int:
    return message if isinstance(message, int) else message.message_id


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str) and value.startswith("@"):
        return None
    return int(value)


def _too_many(retry_after: int) -> ApiError:
    return ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


def _kicked_error(chat_type: str) -> ApiError:
    if chat_type == "private":
        return ApiError(403, "Forbidden: bot was blocked by the user")
    return ApiError(403, f"Forbidden: bot was kicked from the {chat_type} chat")


def _scope_key(scope: JsonDict | None) -> str:
    if not scope:
        scope = {"type": "default"}
    return json.dumps(scope, sort_keys=True, separators=(",", ":"))


def _command_entity(text: str) -> JsonDict:
    command = text.split(maxsplit=1)[0] if text.strip() else text
    return {"type": "bot_command", "offset": 0, "length": utf16_length(command)}


def _without_reply(data: JsonDict) -> JsonDict:
    return {key: value for key, value in data.items() if key != "reply_to_message"}


def _reply_target(params: _Params) -> tuple[int | None, bool]:
    """The message a send replies to, and whether a missing one may be ignored."""
    reply_parameters = params.get_json("reply_parameters", "reply parameters")
    if isinstance(reply_parameters, dict):
        message_id = reply_parameters.get("message_id")
        allow = bool(reply_parameters.get("allow_sending_without_reply"))
        return (None if message_id is None else int(message_id)), allow
    return params.get_int("reply_to_message_id"), params.get_bool("allow_sending_without_reply")


def _check_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise _bad_request(
            'can\'t parse inline keyboard button: Field "text" must be of type String'
        )
    actions = [name for name in _BUTTON_ACTIONS if name in button]
    if not actions:
        raise _bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
            raise _bad_request("BUTTON_DATA_INVALID")
    if "url" in button:
        url = button["url"]
        if not isinstance(url, str) or not re.match(r"(https?|tg)://\S+$", url):
            raise _bad_request("BUTTON_URL_INVALID")


def _describe_service(data: JsonDict) -> str:
    for key in ("migrate_to_chat_id", "migrate_from_chat_id", "forum_topic_created"):
        if key in data:
            return f"<{key}: {data[key]}>"
    if "photo" in data:
        return "<photo>"
    if "document" in data:
        return f"<document {data['document'].get('file_name', '')}>"
    return "<service message>"
