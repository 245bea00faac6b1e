"""A PO folder's ``manifest.json``: its entries, how they are checked on reading, how written.

Each entry is one file of the folder, downloaded from Coupa, or derived from one of them: a
PDF made of an Outlook mail names its mail in ``derived_from``; a mail that could not become
a PDF carries the reason in ``pdf_error``. The manifest is the folder's record of what is
complete on disk, so reading it trusts nothing: an entry that names a path outside the
folder, the manifest itself, a second file of one name or key, a file whose size is not
the listed one, or (for a derived file) a source the manifest does not keep, is dropped —
and with it, when the folder is reopened, the file. Writes replace the file atomically.
"""

from __future__ import annotations

import json
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coupad.durable import atomic_write, fsync_dir
from coupad.names import safe_name, unique_name
from coupad.ponumber import PoNumber
from coupad.records import FileRecord

log = logging.getLogger("coupad.folders")

MANIFEST = "manifest.json"
DERIVED = "derived"  # the ``source`` of a file coupad made from another file of the folder
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TEXT_FIELDS = ("name", "original_name", "source_url", "sha256", "source", "key")


@dataclass(frozen=True)
class Manifest:
    """What manifest.json said: its trustworthy entries, and whether it needs rewriting."""

    entries: list[FileRecord]
    status: str | None = None
    finished_at: str | None = None
    rewrite: bool = False  # something was dropped, or the file could not be read


def read(path: Path, po: PoNumber) -> Manifest:
    """The manifest of the folder ``path``, keeping only entries whose files are intact."""
    manifest = path / MANIFEST
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Manifest([])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s: ignoring unreadable %s (%s)", po, manifest, exc)
        return Manifest([], rewrite=True)
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, list):
        log.warning("%s: ignoring %s without a list of files", po, manifest)
        return Manifest([], rewrite=True)
    entries: list[FileRecord] = []
    names: list[str] = [MANIFEST]
    keys: set[str] = set()
    for raw in files:
        entry = entry_from_json(raw)
        if entry is None:
            log.warning("%s: dropping a malformed manifest entry", po)
            continue
        if entry.key in keys or unique_name(entry.name, names) != entry.name:
            log.warning("%s: dropping duplicate manifest entry %s", po, entry.name)
            continue
        if not on_disk(path, entry):
            again = "made" if entry.derived else "downloaded"
            log.info("%s: %s is missing or has the wrong size; it will be %s again", po,
                     entry.name, again)
            continue
        entries.append(entry)
        names.append(entry.name)
        keys.add(entry.key)
    entries = _with_sources(entries, po)
    status = document.get("status")
    finished_at = document.get("finished_at")
    return Manifest(
        entries,
        status if isinstance(status, str) else None,
        finished_at if isinstance(finished_at, str) else None,
        rewrite=len(entries) != len(files),
    )


def write(path: Path, po: PoNumber, entries: list[FileRecord], status: str | None,
          finished_at: str | None = None) -> None:
    """Replace manifest.json atomically, or remove it when the folder holds no files."""
    manifest = path / MANIFEST
    if not entries:
        if manifest.exists():
            manifest.unlink()
            fsync_dir(path)
        return
    document: dict[str, Any] = {
        "po": po.display,
        "status": status,
        "finished_at": finished_at,
        "files": [entry.to_json() for entry in entries],
    }
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    atomic_write(manifest, lambda stream: stream.write(text.encode("utf-8")))


def on_disk(path: Path, entry: FileRecord) -> bool:
    """Whether the entry's file is in the folder ``path``: a regular file of the listed size."""
    try:
        info = (path / entry.name).lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == entry.size


def entry_from_json(raw: object) -> FileRecord | None:
    """A manifest entry from JSON, or None when a field is missing, mistyped or unsafe."""
    if not isinstance(raw, dict):
        return None
    if not all(isinstance(raw.get(f), str) for f in _TEXT_FIELDS):
        return None
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    name = raw["name"]
    # A tampered manifest must not name a path outside the folder or the manifest itself.
    if name != safe_name(name) or name == MANIFEST or not _SHA256.match(raw["sha256"]):
        return None
    derived_from = raw.get("derived_from")
    if derived_from is not None and (not isinstance(derived_from, str) or derived_from == name):
        return None
    pdf_error = raw.get("pdf_error")
    return FileRecord(
        name=name,
        original_name=raw["original_name"],
        source_url=raw["source_url"],
        size=size,
        sha256=raw["sha256"],
        source=raw["source"],
        key=raw["key"],
        derived_from=derived_from,
        # A reason is only words for people: a mistyped one is dropped, not the file.
        pdf_error=pdf_error if isinstance(pdf_error, str) else None,
    )


def _with_sources(entries: list[FileRecord], po: PoNumber) -> list[FileRecord]:
    """Drop derived files whose source is not a kept, downloaded file of the folder."""
    sources = {e.name for e in entries if not e.derived}
    kept = []
    for entry in entries:
        if entry.derived and entry.derived_from not in sources:
            log.info("%s: %s was made from a file the folder does not keep; dropping it", po,
                     entry.name)
            continue
        kept.append(entry)
    return kept
