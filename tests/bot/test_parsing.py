"""The parser: reports, status words and `#17 fixed`, table-driven."""
# ruff: noqa: RUF001 - Russian text is Russian, not look-alike Latin

from __future__ import annotations

import pytest
from aiogram.types import Message

from bot.filters import message_text
from bot.parsing import (
    MissingDescription,
    Report,
    StatusCommand,
    parse_incident_id,
    parse_report,
    parse_status_command,
    parse_status_word,
)
from storage.rules import DESCRIPTION_MAX_LENGTH, Status

LONG = "x" * (DESCRIPTION_MAX_LENGTH - 20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # tags, as written and in other cases
        ("[monitoring] Самокат #42 не отвечает", Report("monitoring", "Самокат #42 не отвечает")),
        ("[Monitoring] Scooter down", Report("monitoring", "Scooter down")),
        ("[OPERATOR] call back", Report("operator", "call back")),
        ("[partner] API 500", Report("partner", "API 500")),
        # Russian aliases, in any case, with or without ё
        ("[мониторинг] не отвечает", Report("monitoring", "не отвечает")),
        ("[Оператор] звонок", Report("operator", "звонок")),
        ("[партнер] ошибка", Report("partner", "ошибка")),
        ("[ПАРТНЁР] ошибка", Report("partner", "ошибка")),
        # any other valid source name is kept as its own source
        ("[zabbix] disk full", Report("zabbix", "disk full")),
        ("[Склад] нет самокатов", Report("склад", "нет самокатов")),
        ("[db-01] replication lag", Report("db-01", "replication lag")),
        # whitespace: around the tag, inside it, none after it, trimmed description
        ("   [monitoring]    lots of space   ", Report("monitoring", "lots of space")),
        ("\n\t[monitoring] after blank lines", Report("monitoring", "after blank lines")),
        ("[ monitoring ] spaced tag", Report("monitoring", "spaced tag")),
        ("[monitoring]no space", Report("monitoring", "no space")),
        # multi-line: line breaks kept, outer blank lines trimmed
        (
            "[monitoring]\nline one\n\nline three\n",
            Report("monitoring", "line one\n\nline three"),
        ),
        # markup characters are plain text here
        (
            "[operator] <script>alert(1)</script> & * _ [x](y)",
            Report("operator", "<script>alert(1)</script> & * _ [x](y)"),
        ),
        # a later bracket is part of the description
        ("[monitoring] [eu-west] down", Report("monitoring", "[eu-west] down")),
        # very long text is kept whole
        (f"[monitoring] {LONG}", Report("monitoring", LONG)),
        # a tag with nothing after it
        ("[monitoring]", MissingDescription("monitoring")),
        ("[мониторинг]   \n  ", MissingDescription("monitoring")),
        # not reports: plain chat, no tag first, brackets that name no source
        ("hi all", None),
        ("lunch?", None),
        ("", None),
        (None, None),
        ("Scooter down [monitoring]", None),
        ("[two words] text", None),
        ("[] empty tag", None),
        ("[!!!] alarm", None),
        (f"[{'a' * 33}] too long a tag", None),
        ("[monitoring\n] broken tag", None),
        ("/new [monitoring] a command", None),
    ],
)
def test_parse_report_reads_tag_and_description(
    text: str | None, expected: Report | MissingDescription | None
) -> None:
    assert parse_report(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in progress", Status.IN_PROGRESS),
        ("in_progress", Status.IN_PROGRESS),
        ("In Progress", Status.IN_PROGRESS),
        ("  in   progress  ", Status.IN_PROGRESS),
        ("resolved", Status.RESOLVED),
        ("fixed", Status.RESOLVED),
        ("Fixed!", Status.RESOLVED),
        ("done.", Status.RESOLVED),
        ("closed", Status.CLOSED),
        ("open", Status.OPEN),
        ("в работе", Status.IN_PROGRESS),
        ("В работе", Status.IN_PROGRESS),
        ("решено", Status.RESOLVED),
        ("решён", Status.RESOLVED),
        ("исправлено", Status.RESOLVED),
        ("закрыто", Status.CLOSED),
        ("открыт", Status.OPEN),
        ("fixed it, I think", None),
        ("thanks", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_status_word_accepts_whole_status_messages(
    text: str | None, expected: Status | None
) -> None:
    assert parse_status_word(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#17 fixed", StatusCommand(17, Status.RESOLVED)),
        ("  #17   in progress ", StatusCommand(17, Status.IN_PROGRESS)),
        ("#3 закрыто", StatusCommand(3, Status.CLOSED)),
        ("#17 Resolved.", StatusCommand(17, Status.RESOLVED)),
        ("#17 is broken again", None),
        ("#17", None),
        ("17 fixed", None),
        ("see #17 fixed", None),
        ("#x fixed", None),
    ],
)
def test_parse_status_command_reads_number_and_status(
    text: str, expected: StatusCommand | None
) -> None:
    assert parse_status_command(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("17", 17), ("#17", 17), (" 17 ", 17), ("abc", None), ("-1", None), ("", None)],
)
def test_parse_incident_id_accepts_number_with_or_without_hash(
    text: str, expected: int | None
) -> None:
    assert parse_incident_id(text) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"text": "[monitoring] down"}, "[monitoring] down"),
        ({"caption": "[operator] photo of the scooter"}, "[operator] photo of the scooter"),
        ({"text": "", "caption": "ignored"}, ""),
        ({}, None),
    ],
    ids=["text", "caption", "empty-text", "neither"],
)
def test_message_text_reads_text_or_caption(fields: dict[str, str], expected: str | None) -> None:
    message = Message.model_validate(
        {"message_id": 1, "date": 0, "chat": {"id": -1, "type": "group"}, **fields}
    )

    assert message_text(message) == expected
