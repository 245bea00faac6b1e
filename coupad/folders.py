"""One folder per PO under the download root, its manifest, and the one rename that ends it.

A PO's files are written into ``<root>/[<group>/]<PO>__WORK`` while it is processed; when the
outcome is final the folder is renamed once, atomically, to ``<PO>_<STATUS>``. Crash safety
comes from the order of operations, never from a dying process cleaning up:

- a file is complete in a staging folder (``.incoming/``) before it is renamed into place,
  and it counts only once ``manifest.json`` lists it (the manifest is replaced atomically);
- reopening a PO therefore keeps exactly the files the manifest lists with the right size,
  deletes everything else (partial downloads, staging folders, a file placed just before a
  crash but never recorded), and so never downloads a listed file twice;
- reopening finds the PO's folder wherever it is (``__WORK`` or final, in any group) and
  reuses it, so there is never a second folder for one PO.

The folder holds ``manifest.json`` (:mod:`coupad.manifest`) exactly when it holds attachment
files: the contract says folders of ``NO_ATTACHMENTS``, ``NOT_FOUND`` and ``ACCESS_DENIED``
POs are empty. A PDF the daemon made of a mail in a final folder (:mod:`coupad.pdfs`) is
listed with the mail it came from; a reopened folder keeps it as long as it keeps the mail.
One PO is processed by one worker at a time (the journal's lease guarantees it), and the
daemon writes into a final folder only while no worker holds its PO; within that worker, a
lock makes :meth:`PoFolder.add_file` safe from several download threads.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import threading
import uuid
from datetime import datetime, UTC
from pathlib import Path

from coupad import manifest
from coupad.durable import fsync_dir
from coupad.errors import CoupadError
from coupad.faults import crash_point
from coupad.manifest import MANIFEST
from coupad.records import FileRecord
from coupad.names import safe_name, unique_name
from coupad.ponumber import PoNumber
from coupad.states import FINAL, TaskState

log = logging.getLogger("coupad.folders")

WORK_SUFFIX = "__WORK"
STAGING = ".incoming"
FINAL_STATUSES: frozenset[str] = frozenset(state.value for state in FINAL)
_PO_FOLDER = re.compile(r"^PO\d+(?:__WORK|_[A-Z_]+)$")
_CHUNK = 1 << 20


class FolderError(CoupadError):
    """A PO folder cannot be opened, written or finished; the message says why."""


class PoFolder:
    """The folder of one PO while it is being processed, and its manifest."""

    def __init__(self, path: Path, po: PoNumber, entries: list[FileRecord]) -> None:
        self.path = path
        self.po = po
        self._entries = entries
        self._lock = threading.Lock()
        self._final_path: Path | None = None

    @classmethod
    def open(cls, root: Path, po: PoNumber, group: str | None = None) -> PoFolder:
        """Reuse this PO's folder (work or final, in any group) as ``<PO>__WORK``, or create it.

        With ``group`` the folder ends up in ``<root>/<safe group>/`` (an existing folder in
        another group is moved there); without it an existing folder stays where it is.
        """
        root = Path(root)
        wanted_parent = root / group_folder_name(group) if group else root
        work_name = po.display + WORK_SUFFIX
        existing = _find_folders(root, po)
        if existing:
            chosen = min(existing, key=lambda p: _preference(p, po, wanted_parent))
            if len(existing) > 1:
                others = ", ".join(str(p) for p in existing if p != chosen)
                log.warning("%s has several folders; reusing %s and leaving %s", po, chosen, others)
            parent = wanted_parent if group else chosen.parent
            path = parent / work_name
            if chosen != path:
                parent.mkdir(parents=True, exist_ok=True)
                _rename(chosen, path)
                log.info("%s: reopened %s as %s", po, chosen, path)
        else:
            path = wanted_parent / work_name
            wanted_parent.mkdir(parents=True, exist_ok=True)
            path.mkdir(exist_ok=True)
            fsync_dir(wanted_parent)
        listed = manifest.read(path, po)
        folder = cls(path, po, listed.entries)
        folder._sweep()
        if listed.rewrite or listed.status is not None:
            folder._write_manifest(status=None)
        return folder

    @property
    def entries(self) -> list[FileRecord]:
        """The files recorded so far, in the order they were added."""
        with self._lock:
            return list(self._entries)

    def staging_dir(self, label: str) -> Path:
        """Create an empty, unique folder inside the work folder for one download in flight."""
        self._check_open()
        path = self.path / STAGING / f"{safe_name(label, max_bytes=64)}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True)
        return path

    def entry_for(self, key: str) -> FileRecord | None:
        """The recorded file for ``key`` if it is still on disk with its recorded size."""
        with self._lock:
            entry = next((e for e in self._entries if e.key == key), None)
            return entry if entry is not None and self._on_disk(entry) else None

    def add_file(
        self,
        tmp: Path,
        original_name: str,
        source_url: str,
        source: str,
        key: str,
        sha256: str | None = None,
    ) -> FileRecord:
        """Move a complete download into place under a safe, unique name and record it.

        Idempotent by ``key``: a key already recorded (and still on disk) returns the existing
        entry and deletes ``tmp``.
        """
        tmp = Path(tmp)
        with self._lock:
            self._check_open()
            existing = next((e for e in self._entries if e.key == key), None)
            if existing is not None:
                if self._on_disk(existing):
                    tmp.unlink(missing_ok=True)
                    return existing
                self._entries.remove(existing)
            if not tmp.is_file() or tmp.is_symlink():
                raise FolderError(f"{tmp} is not a downloaded file")
            crash_point("download")
            digest = sha256 or file_sha256(tmp)
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
                size = os.fstat(handle.fileno()).st_size
            taken = [e.name for e in self._entries] + [MANIFEST]
            name = unique_name(safe_name(original_name), taken)
            self._move_into_place(tmp, self.path / name)
            entry = FileRecord(
                name=name,
                original_name=original_name,
                source_url=source_url,
                size=size,
                sha256=digest,
                source=source,
                key=key,
            )
            self._entries.append(entry)
            self._write_manifest(status=None)
            return entry

    def finalize(self, status: str | TaskState) -> Path:
        """Rename the work folder once, atomically, to ``<PO>_<STATUS>`` and return its path."""
        try:
            state = TaskState(status)
        except ValueError:
            raise ValueError(f"{status!r} is not a task status") from None
        if not state.final:
            raise ValueError(f"{state.value} is not a final status; the PO folder stays open")
        with self._lock:
            self._check_open()
            shutil.rmtree(self.path / STAGING, ignore_errors=True)
            self._remove_temp_files()
            finished_at = datetime.now(UTC).isoformat(timespec="seconds")
            self._write_manifest(status=state.value, finished_at=finished_at)
            target = self.path.parent / f"{self.po.display}_{state.value}"
            if target.exists():
                raise FolderError(f"cannot finish {self.path}: {target} already exists")
            crash_point("rename")
            _rename(self.path, target)
            self.path = target
            self._final_path = target
            return target

    def _check_open(self) -> None:
        if self._final_path is not None:
            raise FolderError(f"{self._final_path} is already finished")

    def _on_disk(self, entry: FileRecord) -> bool:
        return manifest.on_disk(self.path, entry)

    def _move_into_place(self, tmp: Path, target: Path) -> None:
        """Rename ``tmp`` to ``target``; a file on another disk is copied in first."""
        try:
            os.replace(tmp, target)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        staging = self.path / STAGING
        staging.mkdir(exist_ok=True)
        part = staging / f"{uuid.uuid4().hex}.part"
        shutil.copyfile(tmp, part)
        with part.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(part, target)
        tmp.unlink()

    def _sweep(self) -> None:
        """Delete what no manifest entry accounts for: staging, temp files, unrecorded files."""
        shutil.rmtree(self.path / STAGING, ignore_errors=True)
        listed = {e.name for e in self._entries} | {MANIFEST}
        for child in self.path.iterdir():
            if child.name in listed:
                continue
            if child.is_dir() and not child.is_symlink():
                log.warning("%s: leaving unexpected folder %s", self.po, child)
                continue
            log.info("%s: removing %s (not recorded in the manifest)", self.po, child.name)
            child.unlink(missing_ok=True)

    def _remove_temp_files(self) -> None:
        for child in self.path.glob(f".{MANIFEST}.*.tmp"):
            child.unlink(missing_ok=True)

    def _write_manifest(self, status: str | None, finished_at: str | None = None) -> None:
        manifest.write(self.path, self.po, self._entries, status, finished_at)


def group_folder_name(group: str) -> str:
    """The folder name of a group (a supplier): safe, and never mistaken for a PO folder."""
    name = safe_name(group)
    return f"{name} (group)" if _PO_FOLDER.match(name) else name


def find_any(root: Path, po: PoNumber) -> Path | None:
    """This PO's folder under ``root`` or one of its group folders, work or final."""
    existing = _find_folders(Path(root), po)
    return min(existing, key=lambda p: _preference(p, po, Path(root))) if existing else None


def find_final(root: Path, po: PoNumber) -> Path | None:
    """This PO's final ``<PO>_<STATUS>`` folder under ``root`` or a group folder, if any."""
    finals = [p for p in _find_folders(Path(root), po) if not p.name.endswith(WORK_SUFFIX)]
    return min(finals, key=lambda p: _preference(p, po, Path(root))) if finals else None


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as 64 lower-case hex digits."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_names(po: PoNumber) -> list[str]:
    return [po.display + WORK_SUFFIX] + [f"{po.display}_{s}" for s in sorted(FINAL_STATUSES)]


def _find_folders(root: Path, po: PoNumber) -> list[Path]:
    """Every folder of this PO directly under ``root`` or under one group folder of it."""
    names = set(_folder_names(po))
    found: list[Path] = []
    groups: list[Path] = []
    try:
        scan = list(os.scandir(root))
    except FileNotFoundError:
        return []
    for entry in scan:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name in names:
            found.append(Path(entry.path))
        elif not _PO_FOLDER.match(entry.name) and not entry.name.startswith("."):
            groups.append(Path(entry.path))
    for group in groups:
        for name in names:
            candidate = group / name
            if candidate.is_dir() and not candidate.is_symlink():
                found.append(candidate)
    return sorted(found)


def _preference(path: Path, po: PoNumber, wanted_parent: Path) -> tuple[bool, bool, str]:
    """Sort key: a work folder first, then one already in the wanted place, then by name."""
    return (path.name != po.display + WORK_SUFFIX, path.parent != wanted_parent, str(path))


def _rename(source: Path, target: Path) -> None:
    """Rename a folder atomically and make the new name durable."""
    if target.exists():
        raise FolderError(f"cannot rename {source} to {target}: it already exists")
    os.rename(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


