"""What the stand-in records and how tests configure it: messages, calls, limits, faults."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Button",
    "CallRecord",
    "CallbackAnswer",
    "ChatMessage",
    "Fault",
    "FaultKind",
    "Limit",
    "MessageVersion",
    "RateEvent",
    "RateLimits",
    "WebhookDelivery",
]

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Button:
    """One inline keyboard button as a person sees it."""

    text: str
    callback_data: str | None = None
    url: str | None = None

    def __str__(self) -> str:
        return f"[{self.text}]"


@dataclass(frozen=True)
class MessageVersion:
    """A message's content at one moment: the state before an edit."""

    raw_text: str | None
    text: str | None
    entities: list[JsonDict]
    reply_markup: JsonDict | None
    at: float


@dataclass
class ChatMessage:
    """A message in a chat, from a person or from the bot, in its current state.

    `raw_text` is what the sender wrote (for the bot: the text with its HTML markup);
    `text` is what a person sees (entities parsed, trimmed; the caption for media).
    """

    chat_id: int
    message_id: int
    from_bot: bool
    sender: str
    raw_text: str | None
    text: str | None
    entities: list[JsonDict]
    parse_mode: str | None
    reply_markup: JsonDict | None
    reply_to_message_id: int | None
    message_thread_id: int | None
    date: int
    sent_at: float
    data: JsonDict
    params: JsonDict = field(default_factory=dict)
    is_caption: bool = False
    history: list[MessageVersion] = field(default_factory=list)
    deleted: bool = False
    reactions: list[str] = field(default_factory=list)
    """The bot's reaction to the message (setMessageReaction's emoji), if it set one."""

    @property
    def edited(self) -> bool:
        return bool(self.history)

    @property
    def buttons(self) -> list[list[Button]]:
        """The inline keyboard, row by row (empty when the message has none)."""
        if not self.reply_markup:
            return []
        rows: list[list[Button]] = []
        for row in self.reply_markup.get("inline_keyboard", []):
            rows.append(
                [
                    Button(
                        text=str(button.get("text", "")),
                        callback_data=button.get("callback_data"),
                        url=button.get("url"),
                    )
                    for button in row
                ]
            )
        return rows

    @property
    def button_texts(self) -> list[str]:
        return [button.text for row in self.buttons for button in row]

    def button(self, text: str) -> Button:
        """The button labelled `text` (exactly, or as a unique substring)."""
        buttons = [button for row in self.buttons for button in row]
        for button in buttons:
            if button.text == text:
                return button
        matching = [button for button in buttons if text in button.text]
        if len(matching) == 1:
            return matching[0]
        raise LookupError(
            f"message {self.message_id} in chat {self.chat_id} has no single button {text!r}; "
            f"it has {[button.text for button in buttons]}"
        )


@dataclass
class CallRecord:
    """One Bot API request and the answer the stand-in gave."""

    seq: int
    method: str
    params: JsonDict
    at: float
    finished_at: float = 0.0
    status: int = 0
    response: JsonDict = field(default_factory=dict)
    chat_id: int | None = None
    fault: str | None = None
    via: str = "http"
    """"http" for a request, "webhook" for a method returned in a webhook answer."""

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result")

    @property
    def description(self) -> str | None:
        description = self.response.get("description")
        return None if description is None else str(description)

    @property
    def retry_after(self) -> int | None:
        value = self.response.get("parameters", {}).get("retry_after")
        return None if value is None else int(value)

    def __str__(self) -> str:
        target = f" chat={self.chat_id}" if self.chat_id is not None else ""
        outcome = "ok" if self.ok else f"{self.status} {self.description}"
        if self.fault:
            outcome += f" (fault: {self.fault})"
        return f"{self.at:8.3f}s #{self.seq} {self.method}{target} -> {outcome}"


@dataclass(frozen=True)
class CallbackAnswer:
    """The bot's answerCallbackQuery for one button press."""

    callback_query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int
    at: float


@dataclass(frozen=True)
class Limit:
    """At most `count` accepted calls in any `per`-second sliding window."""

    count: int
    per: float


@dataclass(frozen=True)
class RateLimits:
    """Telegram's flood limits; pass smaller windows to keep tests fast.

    `group` applies per chat with a negative id (groups, supergroups, channels), `private`
    per private chat, `overall` to all counted calls together. Only calls to `methods`
    count; a call refused with 429 does not take a slot.
    """

    group: Limit | None = Limit(20, 60.0)
    private: Limit | None = Limit(1, 1.0)
    overall: Limit | None = Limit(30, 1.0)
    methods: frozenset[str] = frozenset(
        {"sendMessage", "editMessageText", "editMessageReplyMarkup"}
    )


@dataclass(frozen=True)
class RateEvent:
    """A counted call: accepted, or refused with 429 and `retry_after`."""

    at: float
    method: str
    chat_id: int
    accepted: bool
    retry_after: int | None = None
    scope: str | None = None


class FaultKind(enum.StrEnum):
    """How a faulty call is answered."""

    BAD_GATEWAY = "bad_gateway"
    """502 Bad Gateway (aiogram: TelegramServerError)."""
    INTERNAL_ERROR = "internal_error"
    """500 Internal Server Error (aiogram: TelegramServerError)."""
    DISCONNECT = "disconnect"
    """The connection is dropped without an answer (aiogram: TelegramNetworkError)."""
    CHAT_NOT_FOUND = "chat_not_found"
    """400 "Bad Request: chat not found"."""
    BOT_KICKED = "bot_kicked"
    """403 "Forbidden: bot was kicked from the ... chat" / "bot was blocked by the user"."""
    TOO_MANY_REQUESTS = "too_many_requests"
    """429 "Too Many Requests: retry after N" with `retry_after`."""
    MIGRATED = "migrated"
    """400 "group chat was upgraded to a supergroup chat" with `migrate_to_chat_id`."""
    SLOW = "slow"
    """Answered normally, after `delay` seconds."""
    HTML_PAGE = "html_page"
    """200 with an HTML page: a captive portal (aiogram: ClientDecodeError)."""
    HTML_NOT_FOUND = "html_not_found"
    """404 with an HTML page: a proxy that does not know the path (ClientDecodeError)."""
    MALFORMED_JSON = "malformed_json"
    """200 with JSON cut short (aiogram: ClientDecodeError)."""
    WRONG_SHAPE = "wrong_shape"
    """200 with JSON that is not a Bot API answer (aiogram: ClientDecodeError)."""


@dataclass
class Fault:
    """A fault rule; see `TelegramStub.inject_fault`."""

    kind: FaultKind
    methods: frozenset[str] | None = None
    chat_id: int | None = None
    remaining: int | None = None
    until: float | None = None
    delay: float = 0.0
    retry_after: int = 1
    migrate_to_chat_id: int | None = None
    hits: int = 0
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True

    def matches(self, method: str, chat_id: int | None, now: float) -> bool:
        if self.cancelled or (self.remaining is not None and self.remaining <= 0):
            return False
        if self.until is not None and now >= self.until:
            return False
        if self.methods is not None and method.lower() not in self.methods:
            return False
        return self.chat_id is None or self.chat_id == chat_id


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to deliver an update to the bot's webhook."""

    update_id: int
    url: str
    at: float
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300
