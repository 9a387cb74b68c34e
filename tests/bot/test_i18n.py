"""The Russian catalogue: complete, and its committed .mo compiled from its .po."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.i18n import DOMAIN, LOCALES_DIR

BOT_DIR = LOCALES_DIR.parent
RU_DIR = LOCALES_DIR / "ru" / "LC_MESSAGES"


def _read_catalogue(path: Path) -> BytesIO:
    return BytesIO(path.read_bytes())


def test_committed_mo_matches_po() -> None:
    catalog = read_po(_read_catalogue(RU_DIR / f"{DOMAIN}.po"), locale="ru")
    compiled = BytesIO()
    write_mo(compiled, catalog)

    assert compiled.getvalue() == (RU_DIR / f"{DOMAIN}.mo").read_bytes(), (
        "messages.mo is stale: run `uv run pybabel compile -d bot/locales -D messages -l ru`"
    )


def test_catalogue_translates_every_text_in_code() -> None:
    catalog = read_po(_read_catalogue(RU_DIR / f"{DOMAIN}.po"), locale="ru")
    in_code = {
        message
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(BOT_DIR), method_map=[("**.py", "python")], keywords={"_": None}
        )
    }
    translated = {str(entry.id) for entry in catalog if entry.id and entry.string}

    assert in_code - translated == set(), "texts without a Russian translation"
    assert translated - in_code == set(), "translations no text uses any more"
