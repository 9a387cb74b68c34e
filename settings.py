"""The service's settings: one class, read from the environment and `.env`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
# Telegram's rule for setWebhook's secret_token.
WEBHOOK_SECRET_PATTERN = r"^[A-Za-z0-9_-]{1,256}$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=False,
    )

    # Telegram
    bot_token: SecretStr | None = None
    telegram_api_url: AnyHttpUrl = AnyHttpUrl("https://api.telegram.org")
    allowed_chat_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    notify_chat_id: int | None = None
    # Webhook mode: Telegram POSTs updates to WEBHOOK_URL (served by the embedded HTTP
    # server at that URL's path, behind your HTTPS proxy); unset, the bot long-polls.
    webhook_url: AnyHttpUrl | None = None
    webhook_secret: SecretStr | None = None
    # Who may change incidents in the chat: these user ids, and/or with OPERATORS=admins
    # each group's administrators. Neither: everyone in a served chat.
    operator_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    operators: Literal["everyone", "admins"] = "everyone"

    # Storage
    database_url: str = "sqlite+aiosqlite:///incidents.db"

    # Several instances on one database: how soon a standby takes over from an active
    # instance that stopped (killed, cut off).
    failover_seconds: float = Field(default=15.0, ge=1.0, le=3600.0)
    # Concurrent writes share a transaction, SQLite statements take one trip to its
    # driver. `off` runs the store plainly, with the same behaviour (to rule them out).
    fast_paths: bool = True

    # HTTP API
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    api_key: SecretStr | None = None
    # GET /metrics in Prometheus' text format, open without API_KEY; off answers 404.
    metrics: bool = True

    log_level: str = "INFO"

    @field_validator(
        "bot_token", "api_key", "notify_chat_id", "webhook_url", "webhook_secret", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `BOT_TOKEN=` in a .env file means "not set", not "an empty token".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("operators", mode="before")
    @classmethod
    def _blank_is_everyone(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or "everyone"
        return value

    @field_validator("allowed_chat_ids", "operator_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("database_url")
    @classmethod
    def _parsable_database_url(cls, value: str) -> str:
        try:
            make_url(value)
        except ArgumentError:
            raise ValueError(
                "must be a SQLAlchemy URL like sqlite+aiosqlite:///incidents.db"
            ) from None
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_accepts_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(
            WEBHOOK_SECRET_PATTERN, value.get_secret_value()
        ):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, '_' or '-'")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        # An endpoint anyone can post fake updates to is worse than no webhook at all.
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError("WEBHOOK_URL and WEBHOOK_SECRET must be set together")
        return self

    @property
    def webhook_path(self) -> str | None:
        """The path the embedded HTTP server receives updates on, from WEBHOOK_URL."""
        if self.webhook_url is None:
            return None
        return self.webhook_url.path or "/"

    @property
    def bot_enabled(self) -> bool:
        return self.bot_token is not None


_SECRET_FIELDS = frozenset(
    name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)
)


def describe_error(error: ValidationError) -> str:
    """One readable line naming each bad variable, e.g. for `HTTP_PORT=abc`."""
    problems = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a rule about several variables; the message names them
            problems.append(message)
            continue
        field = str(item["loc"][0])
        variable = field.upper()
        given = item.get("input")
        secret = field in _SECRET_FIELDS
        shown = "" if secret or isinstance(given, dict) or given is None else f" (got {given!r})"
        problems.append(f"{variable}: {message}{shown}")
    return "Invalid configuration: " + "; ".join(problems)
