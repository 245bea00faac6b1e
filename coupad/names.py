"""File names from Coupa made safe for Linux, macOS and Windows, and read from HTTP headers.

Every attachment name comes from a server, so it is hostile until proven otherwise: it may
hold path separators, ``..``, NUL and other control characters, names Windows reserves, or
300 characters. :func:`safe_name` turns any text into exactly one harmless path component of
bounded length; :func:`unique_name` keeps two attachments of one PO apart the way users know
from their file managers (``name (2).ext``); :func:`filename_from_content_disposition` reads
the name a server declares, preferring the RFC 5987 form that carries accents faithfully.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from urllib.parse import unquote_to_bytes

DEFAULT_MAX_BYTES = 180  # well below 255 (ext4, APFS) so "name (12).ext" and paths still fit
MIN_MAX_BYTES = 32  # room for a kept extension, a " (123)" suffix and a few stem characters
FALLBACK_NAME = "attachment"
MAX_EXTENSION_CHARS = 16

# Characters Windows refuses in a name; "/" and "\" are also separators on Linux and Windows.
_ILLEGAL = frozenset('/\\:*?"<>|')
# Invisible characters that reorder or hide text: they let "evil\u202efdp.exe" pose as a PDF.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_RESERVED_STEMS = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]}
)
_EXTENSION = re.compile(r"^\.[^\W_]+$")  # letters and digits of any script, no spaces
_STRIP = " ."


def safe_name(name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Return ``name`` as one path component that every common file system accepts."""
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes={max_bytes} leaves no room for a name (minimum {MIN_MAX_BYTES})")
    text = unicodedata.normalize("NFC", name)
    cleaned = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or char in _BIDI_CONTROLS:
            continue  # control characters (NUL included) and lone surrogates have no glyph
        cleaned.append("_" if char in _ILLEGAL else char)
    text = "".join(cleaned).strip(_STRIP)
    if text in ("", ".", ".."):
        return FALLBACK_NAME
    stem, ext = split_extension(text)
    return _assemble(stem, ext, "", max_bytes)


def unique_name(
    name: str, taken: Collection[str], max_bytes: int = DEFAULT_MAX_BYTES
) -> str:
    """Return ``name``, or ``name (2).ext``, ``name (3).ext``... not yet in ``taken``.

    Names are compared the way macOS and Windows file systems do: ignoring case and Unicode
    normalisation, so ``Report.PDF`` and ``report.pdf`` never end up as one file there.
    """
    keys = {_fold(other) for other in taken}
    if _fold(name) not in keys:
        return name
    stem, ext = split_extension(name)
    number = 2
    while True:
        candidate = _assemble(stem, ext, f" ({number})", max_bytes)
        if _fold(candidate) not in keys:
            return candidate
        number += 1


def split_extension(name: str) -> tuple[str, str]:
    """Split ``name`` into stem and extension, counting only a short, plain extension."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    ext = name[dot:]
    if len(ext) - 1 > MAX_EXTENSION_CHARS or not _EXTENSION.match(ext):
        return name, ""
    return name[:dot], ext


def filename_from_content_disposition(header: str | None) -> str | None:
    """Return the file name a Content-Disposition header declares, or None (RFC 6266).

    ``filename*`` (RFC 5987, UTF-8 or ISO-8859-1) wins over ``filename``; a plain
    ``filename`` that is really UTF-8 read as Latin-1 (a common server bug) is repaired. The
    result is the server's text, not yet safe: pass it through :func:`safe_name`.
    """
    if not header or not isinstance(header, str):
        return None
    params = _parameters(header)
    extended = params.get("filename*")
    if extended is not None:
        decoded = _decode_extended(extended)
        if decoded:
            return decoded
    plain = params.get("filename")
    if plain is None:
        return None
    plain = _repair_mojibake(plain).strip()
    return plain or None


def _assemble(stem: str, ext: str, suffix: str, max_bytes: int) -> str:
    """Join stem, suffix and extension within ``max_bytes``, keeping the extension whole."""
    stem = _defuse_reserved(stem.strip(_STRIP))
    room = max_bytes - len(ext.encode()) - len(suffix.encode())
    if room < 1:  # an extension this long cannot be kept whole: treat it as part of the stem
        stem, ext = stem + ext, ""
        room = max_bytes - len(suffix.encode())
    stem = _truncate(stem, room).rstrip(_STRIP)
    stem = _defuse_reserved(stem)
    if len(stem.encode()) > room:  # the "_" of a reserved stem did not fit
        stem = _truncate(stem, room - 1).rstrip(_STRIP) + "_"
    if not stem:
        stem = _truncate(FALLBACK_NAME, room)  # ".pdf" alone would be a hidden file
    return f"{stem}{suffix}{ext}"


def _defuse_reserved(stem: str) -> str:
    """Append "_" to a stem Windows reserves (CON, NUL, COM1...), whatever follows its dot."""
    first = stem.split(".", 1)[0].rstrip(" ")
    if first.upper() in _RESERVED_STEMS:
        return first + "_" + stem[len(first):]
    return stem


def _truncate(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` of UTF-8 without splitting a character."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    return encoded[: max(max_bytes, 0)].decode(errors="ignore")


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


_PARAM = re.compile(
    r"""
    ;\s*
    (?P<name>[!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*
    =\s*
    (?P<value>"(?:[^"\\]|\\.)*"?|[^;]*)
    """,
    re.VERBOSE,
)


def _parameters(header: str) -> dict[str, str]:
    """Parameters of a Content-Disposition header, by lower-case name, first one winning."""
    found: dict[str, str] = {}
    semicolon = header.find(";")
    if semicolon < 0:
        return found
    for match in _PARAM.finditer(header, semicolon):
        name = match.group("name").lower()
        value = match.group("value").strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1] if value.endswith('"') and len(value) > 1 else value[1:])
        found.setdefault(name, value)
    return found


def _decode_extended(value: str) -> str | None:
    """Decode an RFC 5987 ``charset'language'percent-encoded`` value, or None if malformed."""
    value = value.strip().strip('"')  # some servers quote it, which RFC 5987 forbids
    parts = value.split("'", 2)
    if len(parts) != 3:
        return None
    charset = parts[0].strip().lower()
    if charset not in ("utf-8", "iso-8859-1", "latin-1", "us-ascii"):
        return None
    try:
        text = unquote_to_bytes(parts[2]).decode(charset)
    except (UnicodeDecodeError, LookupError):
        return None
    return text.strip() or None


def _repair_mojibake(text: str) -> str:
    """Undo UTF-8 bytes that HTTP libraries decoded as Latin-1 ("cafÃ©" -> "café")."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text
