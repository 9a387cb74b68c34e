"""The one text-cleaning rule, and the store applying it at every write of free text."""

from __future__ import annotations

import re

import pytest

from storage.rules import (
    DESCRIPTION_PATTERN,
    EXCERPT_MAX_LENGTH,
    NAME_MAX_LENGTH,
    InvalidIncidentError,
    Status,
    excerpt,
    has_visible_text,
    normalize_description,
    normalize_name,
    normalize_source,
)
from storage.store import IncidentStore, NewIncident

INVISIBLE = {
    "zero-width space": "\u200b",
    "zero-width joiners": "\u200c\u200d",
    "word joiner": "\u2060",
    "BOM": "\ufeff",
    "bidi marks": "\u200e\u200f\u202e\u2066",
    "soft hyphen": "\u00ad",
    "variation selector": "\ufe0f",
    "Hangul filler": "\u3164",
    "tag characters": "\U000e0041\U000e007f",
    "no-break and ideographic spaces": "\u00a0\u3000",
    "controls": "\x00\x07\x1b\x7f\x85",
    "mixed": " \u200b\ufeff\t\n\x00 ",
}


@pytest.mark.parametrize("text", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_normalize_description_refuses_invisible_text_as_empty(text: str) -> None:
    assert not has_visible_text(text)
    with pytest.raises(InvalidIncidentError, match="Description is empty"):
        normalize_description(text)


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("\x00Disk full", "Disk full"),
        ("Disk\x00 full\x07", "Disk full"),
        ("\x1b[31mred\x1b[0m alert", "[31mred[0m alert"),
        ("C1\x80\x9f controls", "C1 controls"),
        ("keeps\ttabs\nand\r\nline breaks", "keeps\ttabs\nand\r\nline breaks"),
        ("\x0bvertical\x0c tab and form feed", "vertical tab and form feed"),
        ("family 👨\u200d👩\u200d👧 stays joined", "family 👨\u200d👩\u200d👧 stays joined"),
        ("\ufeffBOM inside stays", "\ufeffBOM inside stays"),
    ],
)
def test_normalize_description_removes_controls_and_keeps_the_rest(raw: str, cleaned: str) -> None:
    assert normalize_description(raw) == cleaned


def test_normalize_description_counts_limit_after_cleaning() -> None:
    assert normalize_description("\x00" * 10 + "x" * 4096) == "x" * 4096
    with pytest.raises(InvalidIncidentError, match="the limit is 4096"):
        normalize_description("x" * 4097)


def test_normalize_description_refuses_lone_surrogate() -> None:
    with pytest.raises(InvalidIncidentError, match="valid Unicode"):
        normalize_description("\ud800 alone")


@pytest.mark.parametrize("raw", ["\x00", "monitoring\x00", "mon\x1bitoring", "\u200bops"])
def test_normalize_source_refuses_controls_and_invisible_characters(raw: str) -> None:
    with pytest.raises(InvalidIncidentError, match="Invalid source"):
        normalize_source(raw)


def test_normalize_source_repeats_only_an_excerpt_of_a_long_input() -> None:
    with pytest.raises(InvalidIncidentError) as refused:
        normalize_source("x" * 100_000)

    message = str(refused.value)
    assert len(message) < 2 * EXCERPT_MAX_LENGTH
    assert "x" * EXCERPT_MAX_LENGTH + "…" in message


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Alice Smith", "Alice Smith"),
        ("Bob\x00\x07", "Bob"),
        ("  \u3164  ", None),
        ("\u200b\ufeff", None),
        ("\x00", None),
        ("", None),
        (None, None),
        ("Eve \ud800", "Eve \ufffd"),
        ("я" * 500, "я" * NAME_MAX_LENGTH),
    ],
)
def test_normalize_name_cleans_cuts_and_drops_invisible_names(
    raw: str | None, name: str | None
) -> None:
    assert normalize_name(raw) == name


def test_excerpt_keeps_short_text_and_cuts_long_text() -> None:
    assert excerpt("short") == "short"
    assert excerpt("y" * 1_000_000) == "y" * EXCERPT_MAX_LENGTH + "…"


@pytest.mark.parametrize(
    "text", [*INVISIBLE.values(), "Disk full", "x", " \u200b.", "🔥", "\u200b\u0661"]
)
def test_description_pattern_agrees_with_the_rule_on_the_basic_plane(text: str) -> None:
    # The OpenAPI document's pattern tells clients what the rule accepts; off the basic
    # plane (tag characters) only the rule itself knows, as JSON Schema cannot say it.
    if all(ord(character) <= 0xFFFF for character in text):
        assert (re.search(DESCRIPTION_PATTERN, text) is not None) == has_visible_text(text)


async def test_store_cleans_every_door_s_free_text(store: IncidentStore) -> None:
    created = await store.create(
        NewIncident(
            "\x00Disk full\x1b",
            source="monitoring",
            created_by="\u3164",
            chat_id=-100,
            message_id=7,
        )
    )
    incident = created.incident
    assert (incident.description, incident.created_by, incident.updated_by) == (
        "Disk full",
        None,
        None,
    )

    edited = await store.update_description(-100, 7, "\x00Disk full on db-1")
    assert edited is not None
    assert edited.description == "Disk full on db-1"
    with pytest.raises(InvalidIncidentError, match="Description is empty"):
        await store.update_description(-100, 7, "\u200b\ufeff")

    moved = await store.change_status(incident.id, Status.RESOLVED, changed_by="Bob\x00")
    assert moved.incident.updated_by == "Bob"
    assert (await store.get(incident.id)).description == "Disk full on db-1"
