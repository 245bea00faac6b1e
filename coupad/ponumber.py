"""PO numbers as users write them, and the one canonical form coupad uses.

Users write ``PO15262984``, ``po 15262984``, ``15262984`` or ``PM987654``. The canonical key is
the digits; the display form (folder names, reports) is ``PO`` followed by the digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from coupad.errors import CoupadError

MIN_DIGITS = 6
MAX_DIGITS = 15  # longer numbers are almost always a spreadsheet artefact, not a PO
_PREFIX = re.compile(r"^(?:po|pm)[\s#:\-_.]*", re.IGNORECASE)
_EXCEL_FLOAT = re.compile(r"^(\d+)\.0+$")


class InvalidPoNumber(CoupadError, ValueError):
    """The text cannot be read as a PO number; the message says why in plain words."""


@dataclass(frozen=True, order=True)
class PoNumber:
    digits: str

    @property
    def display(self) -> str:
        return f"PO{self.digits}"

    def __str__(self) -> str:
        return self.display


def normalize(text: object) -> PoNumber:
    """Read one cell as a PO number, or raise InvalidPoNumber saying what is wrong."""
    if text is None:
        raise InvalidPoNumber("the PO number is empty")
    if isinstance(text, bool):
        raise InvalidPoNumber(f"{text!r} is not a PO number")
    if isinstance(text, int):
        raw = str(text)
    elif isinstance(text, float):
        if not text.is_integer():
            raise InvalidPoNumber(f"{text!r} is not a PO number (it has decimals)")
        raw = str(int(text))
    else:
        raw = str(text)
    cleaned = "".join(raw.split())  # every kind of white space, including NBSP
    if not cleaned:
        raise InvalidPoNumber("the PO number is empty")
    match = _EXCEL_FLOAT.match(cleaned)
    if match:
        cleaned = match.group(1)
    cleaned = _PREFIX.sub("", cleaned)
    shown = raw.strip()[:40]
    if not cleaned.isascii() or not cleaned.isdigit():
        raise InvalidPoNumber(f"{shown!r} is not a PO number (expected digits, optionally after PO or PM)")
    if len(cleaned) < MIN_DIGITS:
        raise InvalidPoNumber(f"{shown!r} is too short for a PO number (fewer than {MIN_DIGITS} digits)")
    if len(cleaned) > MAX_DIGITS:
        raise InvalidPoNumber(f"{shown!r} is too long for a PO number (more than {MAX_DIGITS} digits)")
    return PoNumber(cleaned)
