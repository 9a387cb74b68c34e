"""The service's settings: one class, read from the environment and `.env`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


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

    # Storage
    database_url: str = "sqlite+aiosqlite:///incidents.db"

    # HTTP API
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    api_key: SecretStr | None = None

    log_level: str = "INFO"

    @field_validator("bot_token", "api_key", "notify_chat_id", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `BOT_TOKEN=` in a .env file means "not set", not "an empty token".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("allowed_chat_ids", mode="before")
    @classmethod
    def _split_chat_ids(cls, value: Any) -> Any:
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

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @property
    def bot_enabled(self) -> bool:
        return self.bot_token is not None


def describe_error(error: ValidationError) -> str:
    """One readable line naming each bad variable, e.g. for `HTTP_PORT=abc`."""
    problems = []
    for item in error.errors(include_url=False):
        variable = "_".join(str(part) for part in item["loc"][:1]).upper() or "settings"
        given = item.get("input")
        shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
        problems.append(f"{variable}: {item['msg']}{shown}")
    return "Invalid configuration: " + "; ".join(problems)
