"""Line numbers of keys in TOML and JSON documents, so that errors can say where to look.

Neither ``tomllib`` nor ``json`` reports positions of valid values, so the text is scanned a
second time after a successful parse. Paths are tuples of keys and list indexes, as in
``("po", "15262984", "attachments", 1, "size")``.
"""

from __future__ import annotations

import json
import re

KeyPath = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY_PART = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_TABLE_LINE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?")
_KEY_LINE = re.compile(rf"^\s*({_DOTTED})\s*=")


def _split_dotted(text: str) -> tuple[str, ...]:
    parts = []
    for match in re.finditer(_KEY_PART, text):
        part = match.group(0)
        if part.startswith('"'):
            part = json.loads(part)
        elif part.startswith("'"):
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def toml_lines(text: str) -> dict[KeyPath, int]:
    """Map each key path of a TOML document to the line that defines it (best effort)."""
    lines: dict[KeyPath, int] = {}
    table: KeyPath = ()
    arrays: dict[KeyPath, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE_LINE.match(line)
        if header:
            keys: KeyPath = _split_dotted(header.group(2))
            if header.group(1) == "[[":
                arrays[keys] = arrays.get(keys, -1) + 1
                keys = keys + (arrays[keys],)
            table = keys
            for end in range(1, len(keys) + 1):
                lines.setdefault(keys[:end], number)
            continue
        key = _KEY_LINE.match(line)
        if key:
            lines.setdefault(table + _split_dotted(key.group(1)), number)
    return lines


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


class _JsonLines:
    """Walks a valid JSON document and records the line of every key path."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}

    def _line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def _string(self) -> str:
        match = _JSON_STRING.match(self.text, self.pos)
        assert match is not None  # the document parsed, so a string starts here
        self.pos = match.end()
        return str(json.loads(match.group(0)))

    def value(self, path: KeyPath) -> None:
        self._skip()
        self.lines.setdefault(path, self._line())
        char = self.text[self.pos]
        if char == "{":
            self.pos += 1
            self._members(path)
        elif char == "[":
            self.pos += 1
            self._items(path)
        elif char == '"':
            self._string()
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in ",]} \t\r\n":
                self.pos += 1

    def _members(self, path: KeyPath) -> None:
        while True:
            self._skip()
            if self.text[self.pos] == "}":
                self.pos += 1
                return
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            line = self._line()
            key = self._string()
            self.lines.setdefault(path + (key,), line)
            self._skip()
            self.pos += 1  # the colon
            self.value(path + (key,))

    def _items(self, path: KeyPath) -> None:
        index = 0
        while True:
            self._skip()
            if self.text[self.pos] == "]":
                self.pos += 1
                return
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            self.value(path + (index,))
            index += 1


def json_lines(text: str) -> dict[KeyPath, int]:
    """Map each key path of a valid JSON document to the line that defines it."""
    walker = _JsonLines(text)
    walker.value(())
    return walker.lines
