"""Settings: defaults with no configuration, `.env` files, and readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from settings import Settings, describe_error

REPO_ROOT = Path(__file__).resolve().parent.parent
VARIABLES = (
    "BOT_TOKEN",
    "TELEGRAM_API_URL",
    "ALLOWED_CHAT_IDS",
    "NOTIFY_CHAT_ID",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "DATABASE_URL",
    "HTTP_HOST",
    "HTTP_PORT",
    "API_KEY",
    "METRICS",
    "LOG_LEVEL",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_settings_without_configuration_use_safe_defaults() -> None:
    settings = Settings()

    assert not settings.bot_enabled
    assert settings.database_url == "sqlite+aiosqlite:///incidents.db"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.allowed_chat_ids == frozenset()
    assert settings.api_key is None


def test_settings_env_example_as_dotenv_loads_cleanly(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text((REPO_ROOT / ".env.example").read_text())

    settings = Settings()

    assert settings == Settings(_env_file=None)


def test_settings_read_dotenv_and_split_chat_ids(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "BOT_TOKEN=123:abc\nALLOWED_CHAT_IDS=-1001, 42 ,\nAPI_KEY=s3cret\nlog_level=debug\n"
    )

    settings = Settings()

    assert settings.bot_enabled
    assert settings.bot_token is not None and settings.bot_token.get_secret_value() == "123:abc"
    assert settings.allowed_chat_ids == frozenset({-1001, 42})
    assert settings.log_level == "DEBUG"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HTTP_PORT", "abc"),
        ("HTTP_PORT", "70000"),
        ("ALLOWED_CHAT_IDS", "-100,general"),
        ("NOTIFY_CHAT_ID", "here"),
        ("LOG_LEVEL", "LOUD"),
        ("TELEGRAM_API_URL", "not a url"),
        ("DATABASE_URL", "incidents.db"),
    ],
)
def test_settings_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError) as error:
        Settings()

    message = describe_error(error.value)
    assert message.startswith(f"Invalid configuration: {variable}: ")
    assert "\n" not in message


def test_settings_webhook_needs_url_and_secret_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_URL", "https://bot.example.com/telegram/webhook")

    with pytest.raises(ValidationError) as error:
        Settings()

    assert describe_error(error.value) == (
        "Invalid configuration: WEBHOOK_URL and WEBHOOK_SECRET must be set together"
    )


def test_settings_metrics_are_on_unless_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().metrics

    monkeypatch.setenv("METRICS", "off")

    assert not Settings().metrics


def test_settings_webhook_path_comes_from_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_URL", "https://bot.example.com/telegram/webhook")
    monkeypatch.setenv("WEBHOOK_SECRET", "s3cret_token-1")

    assert Settings().webhook_path == "/telegram/webhook"


def test_settings_bad_secret_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_URL", "https://bot.example.com/hook")
    monkeypatch.setenv("WEBHOOK_SECRET", "has spaces in it")

    with pytest.raises(ValidationError) as error:
        Settings()

    message = describe_error(error.value)
    assert message.startswith("Invalid configuration: WEBHOOK_SECRET: ")
    assert "has spaces" not in message
