"""Telegram's HTML parse mode, as the Bot API server applies it to a message text.

A port of TDLib's `parse_html` (td/telegram/MessageEntity.cpp), which the Bot API server
runs on every `parse_mode=HTML` text: it walks the UTF-8 bytes, decodes the four named
entities and numeric ones, turns the supported tags into message entities with UTF-16
offsets, and reports errors with the same wording and byte offsets as Telegram.

One deliberate difference, on by default: TDLib keeps a `&` that does not start an entity
as a literal character, while the Bot API documentation requires every `&` outside an
entity to be escaped. With `strict_ampersand=True` such a `&` (and an unknown named
entity, or one without its `;`) is a 400 "can't parse entities" error, so a bot that
forgets to escape user text fails in tests rather than by luck in production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "EntityParseError",
    "ParsedText",
    "clean_text",
    "parse_html",
    "strip_text",
    "utf16_length",
]

MAX_MESSAGE_LENGTH = 4096
"""Longest message text, in UTF-16 code units, after entity parsing."""

_SUPPORTED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SIMPLE_TAG_TYPES = {
    "i": "italic",
    "em": "italic",
    "b": "bold",
    "strong": "bold",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
}
# TDLib's is_space: the C string's terminating NUL counts as space too.
_SPACE_BYTES = frozenset(b" \t\r\n\0\v")
# What Telegram trims from both ends of a message text after parsing.
_TRIMMED = " \t\r\n\v\f"
_NAMED_ENTITIES = {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'}
_LINK_SCHEMES = frozenset({"http", "https", "tg", "ton", "ftp"})


class EntityParseError(ValueError):
    """The text is not valid Telegram HTML; `str()` is TDLib's reason."""


@dataclass(frozen=True)
class ParsedText:
    """What a person sees: the visible text and its entities (Bot API dicts)."""

    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Length in UTF-16 code units, the unit of Telegram's limits and offsets."""
        return utf16_length(self.text)


def utf16_length(text: str) -> int:
    """Length of `text` in UTF-16 code units, as Telegram counts it."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _OpenTag:
    name: str
    argument: str
    utf16_offset: int
    result_position: int


class _Parser:
    def __init__(self, text: str, *, strict_ampersand: bool) -> None:
        self.data = text.encode("utf-8")
        self.strict_ampersand = strict_ampersand
        self.result = bytearray()
        self.utf16_offset = 0
        self.entities: list[dict[str, Any]] = []
        self.open_tags: list[_OpenTag] = []

    def at(self, position: int) -> int:
        """The byte at `position`, or 0 past the end (TDLib reads a NUL-terminated string)."""
        return self.data[position] if position < len(self.data) else 0

    def decode_entity(self, position: int) -> tuple[str, int] | None:
        """Decode the character reference at `position` (an `&`): (character, next position)."""
        end = position + 1
        code = 0
        if self.at(end) == ord("#"):
            end += 1
            if self.at(end) == ord("x"):
                end += 1
                while chr(self.at(end)) in "0123456789abcdefABCDEF" and self.at(end):
                    code = code * 16 + int(chr(self.at(end)), 16)
                    end += 1
            else:
                while ord("0") <= self.at(end) <= ord("9"):
                    code = code * 10 + self.at(end) - ord("0")
                    end += 1
            if code == 0 or code >= 0x10FFFF or end - position >= 10:
                return None
            character = chr(code)
        else:
            while chr(self.at(end)).isascii() and chr(self.at(end)).isalpha() and self.at(end):
                end += 1
            name = self.data[position + 1 : end]
            if name not in _NAMED_ENTITIES:
                return None
            character = _NAMED_ENTITIES[name]
        if self.at(end) == ord(";"):
            return character, end + 1
        if self.strict_ampersand:
            return None
        return character, end

    def append_character(self, character: str) -> None:
        self.result += character.encode("utf-8", "surrogatepass")
        self.utf16_offset += 2 if ord(character) > 0xFFFF else 1

    def error(self, reason: str) -> EntityParseError:
        return EntityParseError(reason)

    def parse(self) -> ParsedText:
        if b"\0" in self.data:
            raise self.error("Text must not contain null bytes")
        position = 0
        size = len(self.data)
        while position < size:
            byte = self.data[position]
            if byte == ord("&"):
                decoded = self.decode_entity(position)
                if decoded is not None:
                    character, position = decoded
                    self.append_character(character)
                    continue
                if self.strict_ampersand:
                    raise self.error(
                        f'Unescaped "&" at byte offset {position}: '
                        'write "&amp;" (the stub requires every "&" to be escaped)'
                    )
            if byte != ord("<"):
                if byte & 0xC0 != 0x80:  # the first byte of a UTF-8 sequence
                    self.utf16_offset += 2 if byte >= 0xF0 else 1
                self.result.append(byte)
                position += 1
                continue
            if self.at(position + 1) != ord("/"):
                position = self.parse_start_tag(position)
            else:
                position = self.parse_end_tag(position)
        if self.open_tags:
            raise self.error(
                f"Can't find end tag corresponding to start tag {self.open_tags[-1].name}"
            )
        for entity in self.entities:
            if entity["type"] == "code":
                entity.pop("language", None)
        try:
            text = self.result.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units"
            ) from None
        self.entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
        return ParsedText(text, self.entities)

    def parse_start_tag(self, begin: int) -> int:
        position = begin + 1
        while self.at(position) not in _SPACE_BYTES and self.at(position) != ord(">"):
            position += 1
        if self.at(position) == 0:
            raise self.error(f"Unclosed start tag at byte offset {begin}")
        tag_name = self.data[begin + 1 : position].decode("utf-8", "replace").lower()
        if tag_name not in _SUPPORTED_TAGS:
            raise self.error(f'Unsupported start tag "{tag_name}" at byte offset {begin}')
        argument = ""
        while self.at(position) != ord(">"):
            while self.at(position) != 0 and self.at(position) in _SPACE_BYTES:
                position += 1
            if self.at(position) == ord(">"):
                break
            name_begin = position
            while self.at(position) not in _SPACE_BYTES and self.at(position) not in b"=>/\"'":
                position += 1
            attribute_name = self.data[name_begin:position].decode("utf-8", "replace")
            if not attribute_name:
                raise self.error(
                    f'Empty attribute name in the tag "{tag_name}" at byte offset {begin}'
                )
            while self.at(position) != 0 and self.at(position) in _SPACE_BYTES:
                position += 1
            if self.at(position) != ord("="):
                if self.at(position) == 0:
                    raise self.error(f'Unclosed start tag "{tag_name}" at byte offset {begin}')
                if tag_name == "blockquote" and attribute_name == "expandable":
                    argument = "1"
                continue
            position += 1
            while self.at(position) != 0 and self.at(position) in _SPACE_BYTES:
                position += 1
            if self.at(position) == 0:
                raise self.error(f'Unclosed start tag "{tag_name}" at byte offset {begin}')
            value, position = self.parse_attribute_value(position)
            if self.at(position) == 0:
                raise self.error(f"Unclosed start tag at byte offset {begin}")
            if tag_name == "a" and attribute_name == "href":
                argument = value
            elif (
                tag_name == "code" and attribute_name == "class" and value.startswith("language-")
            ):
                argument = value.removeprefix("language-")
            elif tag_name == "span" and attribute_name == "class" and value.startswith("tg-"):
                argument = value.removeprefix("tg-")
            elif (tag_name == "tg-emoji" and attribute_name == "emoji-id") or (
                tag_name == "blockquote" and attribute_name == "expandable"
            ):
                argument = value if tag_name == "tg-emoji" else "1"
        if tag_name == "span" and argument != "spoiler":
            raise self.error(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
        self.open_tags.append(_OpenTag(tag_name, argument, self.utf16_offset, len(self.result)))
        return position + 1

    def parse_attribute_value(self, position: int) -> tuple[str, int]:
        quote = self.at(position)
        if quote not in (ord("'"), ord('"')):
            token_begin = position
            while chr(self.at(position)).isascii() and (
                chr(self.at(position)).isalnum() or self.at(position) in b".-"
            ):
                if self.at(position) == 0:
                    break
                position += 1
            if self.at(position) not in _SPACE_BYTES and self.at(position) != ord(">"):
                raise self.error(f"Unexpected end of name token at byte offset {token_begin}")
            return self.data[token_begin:position].decode("ascii").lower(), position
        position += 1
        value = bytearray()
        while self.at(position) != quote and self.at(position) != 0:
            if self.at(position) == ord("&"):
                decoded = self.decode_entity(position)
                if decoded is not None:
                    character, position = decoded
                    value += character.encode("utf-8", "surrogatepass")
                    continue
            value.append(self.at(position))
            position += 1
        if self.at(position) == quote:
            position += 1
        return value.decode("utf-8", "replace"), position

    def parse_end_tag(self, begin: int) -> int:
        if not self.open_tags:
            raise self.error(f"Unexpected end tag at byte offset {begin}")
        position = begin + 2
        while self.at(position) not in _SPACE_BYTES and self.at(position) != ord(">"):
            position += 1
        end_tag_name = self.data[begin + 2 : position].decode("utf-8", "replace").lower()
        while self.at(position) != 0 and self.at(position) in _SPACE_BYTES:
            position += 1
        if self.at(position) != ord(">"):
            raise self.error(f"Unclosed end tag at byte offset {begin}")
        tag = self.open_tags[-1]
        if end_tag_name and end_tag_name != tag.name:
            raise self.error(
                f'Unmatched end tag at byte offset {begin}, expected "</{tag.name}>", '
                f'found "</{end_tag_name}>"'
            )
        if self.utf16_offset > tag.utf16_offset:
            self.add_entity(tag)
        self.open_tags.pop()
        return position + 1

    def add_entity(self, tag: _OpenTag) -> None:
        offset = tag.utf16_offset
        length = self.utf16_offset - offset
        entity: dict[str, Any] = {"offset": offset, "length": length}
        last = self.entities[-1] if self.entities else None
        same_span = last is not None and last["offset"] == offset and last["length"] == length
        if tag.name in _SIMPLE_TAG_TYPES:
            entity["type"] = _SIMPLE_TAG_TYPES[tag.name]
        elif tag.name == "span":
            entity["type"] = "spoiler"
        elif tag.name == "tg-emoji":
            if not tag.argument.isdigit() or int(tag.argument) == 0:
                raise self.error("Invalid custom emoji identifier specified")
            entity |= {"type": "custom_emoji", "custom_emoji_id": tag.argument}
        elif tag.name == "a":
            url = tag.argument or self.result[tag.result_position :].decode("utf-8", "replace")
            mention = re.fullmatch(r"tg://user\?id=([1-9][0-9]{0,15})", url.strip())
            if mention is not None:
                user = {"id": int(mention.group(1)), "is_bot": False, "first_name": ""}
                entity |= {"type": "text_mention", "user": user}
                self.entities.append(entity)
                return
            checked = _checked_link(url)
            if checked is None:
                return
            entity |= {"type": "text_link", "url": checked}
        elif tag.name == "pre":
            if same_span and last is not None and last["type"] == "code" and last.get("language"):
                last["type"] = "pre"
                return
            entity["type"] = "pre"
        elif tag.name == "code":
            if same_span and last is not None and last["type"] == "pre" and tag.argument:
                last["language"] = tag.argument
                return
            entity["type"] = "code"
            if tag.argument:
                entity["language"] = tag.argument
        else:  # blockquote
            entity["type"] = "expandable_blockquote" if tag.argument else "blockquote"
        self.entities.append(entity)


def _checked_link(url: str) -> str | None:
    """A URL Telegram would keep for a text link, or None when it silently drops it."""
    url = url.strip()
    if not url or any(character.isspace() for character in url):
        return None
    parts = urlsplit(url if "://" in url or url.startswith("tg:") else f"http://{url}")
    if parts.scheme.lower() not in _LINK_SCHEMES:
        return None
    if parts.scheme.lower() in {"http", "https", "ftp"} and "." not in parts.netloc:
        return None
    return url if "://" in url or url.startswith("tg:") else f"http://{url}/"


def clean_text(parsed: ParsedText) -> ParsedText:
    """Telegram's input cleaning: "\\r" and U+2028-U+202E are removed, other control
    characters (a tab too) become spaces; entity offsets follow."""
    characters: list[str] = []
    # new_offsets[i]: the UTF-16 offset in the cleaned text of old UTF-16 offset i
    new_offsets: list[int] = [0]
    position = 0
    for character in parsed.text:
        units = 2 if ord(character) > 0xFFFF else 1
        if character == "\r" or "\u2028" <= character <= "\u202e":
            new_offsets.extend([position] * units)
            continue
        if ord(character) < 32 and character != "\n":
            character = " "
        characters.append(character)
        for _ in range(units):
            position += 1
            new_offsets.append(position)
    if len(characters) == len(parsed.text):
        return ParsedText("".join(characters), parsed.entities)
    entities: list[dict[str, Any]] = []
    for entity in parsed.entities:
        start = new_offsets[entity["offset"]]
        end = new_offsets[entity["offset"] + entity["length"]]
        if end > start:
            entities.append(entity | {"offset": start, "length": end - start})
    return ParsedText("".join(characters), entities)


def strip_text(parsed: ParsedText) -> ParsedText:
    """Trim whitespace from both ends and shift the entities, as Telegram does."""
    text = parsed.text
    lead = len(text) - len(text.lstrip(_TRIMMED))
    stripped = text.strip(_TRIMMED)
    lead_units = utf16_length(text[:lead])
    total = utf16_length(stripped)
    entities: list[dict[str, Any]] = []
    for entity in parsed.entities:
        start = max(entity["offset"] - lead_units, 0)
        end = min(entity["offset"] + entity["length"] - lead_units, total)
        if end > start:
            entities.append(entity | {"offset": start, "length": end - start})
    return ParsedText(stripped, entities)


def parse_html(text: str, *, strict_ampersand: bool = True) -> ParsedText:
    """Parse Telegram HTML into visible text and entities (not yet trimmed).

    Raises EntityParseError with Telegram's reason (the part after
    "Bad Request: can't parse entities: ").
    """
    return _Parser(text, strict_ampersand=strict_ampersand).parse()
