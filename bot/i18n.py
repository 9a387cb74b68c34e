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

from aiogram.utils.i18n import I18n, SimpleI18nMiddleware

LOCALES_DIR = Path(__file__).with_name("locales")
DOMAIN = "messages"
DEFAULT_LOCALE = "en"


def create_i18n() -> I18n:
    """The catalogues, loaded from `bot/locales`."""
    return I18n(path=LOCALES_DIR, default_locale=DEFAULT_LOCALE, domain=DOMAIN)


def create_i18n_middleware(i18n: I18n) -> SimpleI18nMiddleware:
    """Picks the catalogue from the Telegram user's `language_code` (`ru`, `ru-RU` → ru).

    Languages without a catalogue, and updates with no user (channel posts), get English.
    """
    return SimpleI18nMiddleware(i18n)
