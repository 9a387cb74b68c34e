"""Languages: English by default, Russian for people whose Telegram language is `ru`.

Texts are marked with aiogram's `gettext` (imported as `_`) and translated through the
gettext catalogue `bot/locales/ru/LC_MESSAGES/messages.po`, compiled to `messages.mo`.
To update after changing texts (run from the repository root):

    uv run pybabel extract -k _ --no-location --sort-output -o /tmp/messages.pot bot
    uv run pybabel update -i /tmp/messages.pot -d bot/locales -D messages -l ru -w 99
    (translate the new entries in messages.po)
    uv run pybabel compile -d bot/locales -D messages -l ru

`tests/bot/test_i18n.py` fails when the .mo is stale or a text has no entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject
from aiogram.utils.i18n import I18n, SimpleI18nMiddleware

LOCALES_DIR = Path(__file__).with_name("locales")
DOMAIN = "messages"
DEFAULT_LOCALE = "en"


def create_i18n() -> I18n:
    """The catalogues, loaded from `bot/locales`."""
    return I18n(path=LOCALES_DIR, default_locale=DEFAULT_LOCALE, domain=DOMAIN)


class LanguageCodeMiddleware(SimpleI18nMiddleware):
    """aiogram's SimpleI18nMiddleware, remembering what each `language_code` resolved to.

    It parses the code with babel for every update, looking for locale data on disk each
    time, a cost the ingestion bench shows. The codes are few (Telegram sends the user's
    IETF tag), so the answers are kept.
    """

    MAX_REMEMBERED = 512

    def __init__(self, i18n: I18n) -> None:
        super().__init__(i18n)
        self._resolved: dict[str | None, str] = {}

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user = data.get("event_from_user")
        code: str | None = getattr(user, "language_code", None)
        locale = self._resolved.get(code)
        if locale is None:
            locale = await super().get_locale(event, data)
            if len(self._resolved) < self.MAX_REMEMBERED:
                self._resolved[code] = locale
        return locale


def create_i18n_middleware(i18n: I18n) -> SimpleI18nMiddleware:
    """Picks the catalogue from the Telegram user's `language_code` (`ru`, `ru-RU` → ru).

    Languages without a catalogue, and updates with no user (channel posts), get English.
    """
    return LanguageCodeMiddleware(i18n)
