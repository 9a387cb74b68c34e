"""Self-tests of the stand-in's HTML parse mode on its own (no server), table-driven."""

from __future__ import annotations

import pytest

from tests.telegram_stub import EntityParseError, ParsedText, clean_text, parse_html, strip_text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("Tom & Jerry", 'Unescaped "&" at byte offset 4'),
        ("AT&T", 'Unescaped "&" at byte offset 2'),
        ("&lt without semicolon", 'Unescaped "&" at byte offset 0'),
        ("&nbsp;", 'Unescaped "&" at byte offset 0'),
        ("<script>alert(1)</script>", 'Unsupported start tag "script" at byte offset 0'),
        ("<br/>", 'Unsupported start tag "br/" at byte offset 0'),
        ("<b>bold", "Can't find end tag corresponding to start tag b"),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ('<a href="x>y</a>', "Unclosed start tag at byte offset 0"),
        ("<a href=https://t.me>t</a>", "Unexpected end of name token at byte offset 8"),
        ("<tg-emoji>x</tg-emoji>", "Invalid custom emoji identifier specified"),
        ("Жук <i>", "Can't find end tag corresponding to start tag i"),
        ("Жук < 5", 'Unsupported start tag "" at byte offset 7'),
    ],
)
def test_parse_html_invalid_markup_refused(text: str, reason: str) -> None:
    with pytest.raises(EntityParseError) as raised:
        parse_html(text)

    assert str(raised.value).startswith(reason)


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        ("&lt;b&gt; &amp; &quot;x&quot;", '<b> & "x"'),
        ("&#60;&#x3E;&#1046;", "<>Ж"),
        ("a > b", "a > b"),
        ("<B>x</B>", "x"),
        ("<b>x</>", "x"),
        ("<a href=t.me>t</a>", "t"),
        ("<code>&lt;tag&gt;</code>", "<tag>"),
    ],
)
def test_parse_html_valid_markup_visible_text(text: str, visible: str) -> None:
    assert parse_html(text).text == visible


def test_parse_html_mention_link_becomes_text_mention() -> None:
    parsed = parse_html('<a href="tg://user?id=42">Bob</a> <a href="javascript:x">y</a>')

    assert parsed.text == "Bob y"
    assert parsed.entities == [
        {
            "offset": 0,
            "length": 3,
            "type": "text_mention",
            "user": {"id": 42, "is_bot": False, "first_name": ""},
        }
    ]


def test_parse_html_offsets_in_utf16_units() -> None:
    parsed = parse_html("😀 <b>жир</b>")

    assert parsed.text == "😀 жир"
    assert parsed.entities == [{"offset": 3, "length": 3, "type": "bold"}]


def test_strip_text_trims_and_shifts_entities() -> None:
    parsed = strip_text(parse_html("\n  <b>bold</b> tail  \n"))

    assert parsed == ParsedText("bold tail", [{"offset": 0, "length": 4, "type": "bold"}])


def test_clean_text_removes_carriage_returns_before_entities() -> None:
    parsed = clean_text(parse_html("a\r\n\r\n<i>b</i>"))

    assert parsed == ParsedText("a\n\nb", [{"offset": 3, "length": 1, "type": "italic"}])
