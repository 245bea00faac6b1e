"""The inbox folder: which dropped files are complete, and moving them out once read.

Layout under the inbox root::

    inbox/            files here get the default priority
    inbox/high/       ... high priority
    inbox/low/        ... low priority
    inbox/accepted/   NAME.<batch-id>.csv once a file became a batch
    inbox/rejected/   NAME.csv with NAME.reason.txt beside it

A file is complete when a ``stat()`` shows the same size, mtime and inode for
``quiet_seconds``, or when the writer closed it, or renamed it into the inbox, and it has not
changed since. Watchdog events
only nudge: the truth is the ``stat()`` of every pass, and a rescan of the folders every few
seconds catches what events miss (network shares, an overflowing event queue), so a missed
event only delays a file. The quiet period is measured by this inbox's own observations,
never by comparing an mtime with the local clock: a file server's clock may be off.

Ignored: names that are not ``.csv``/``.xlsx``, temporary and lock files, dotfiles, other
subfolders, folders named like files, and symbolic links (a link could make the daemon read
or move a file outside the inbox; a warning says to copy the file in instead).

Nothing outside the inbox tree is read, moved or written. The root is the operator's choice
and may be a link; below it, ``high/``, ``low/``, ``accepted/`` and ``rejected/`` are opened
with ``O_NOFOLLOW`` and every look, move and write inside them is relative to that open
folder, so a folder replaced by a symbolic link is never followed, even mid-pass. Such a
folder is named once in a warning; files stay where they are until it is a folder again.

The daemon calls :meth:`Inbox.ready` from its main loop, then :meth:`Inbox.accept` or
:meth:`Inbox.reject` for each file. Only the daemon writes into ``accepted/`` and
``rejected/``, so choosing a free name and renaming into it cannot race.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger("coupad.inbox")

PRIORITY_FOLDERS = {"high": "high", "low": "low"}  # inbox/ itself → default priority
ACCEPTED = "accepted"
REJECTED = "rejected"
RESCAN_SECONDS = 3.0
POLL_SECONDS = 1.0
SUFFIXES = (".csv", ".xlsx")
_TEMPORARY_SUFFIXES = (".part", ".tmp", ".crdownload", "~", "#")
_NAME_MAX = 255  # bytes in one file name on every file system coupad supports

Signature = tuple[int, int, int]  # size, mtime in ns, inode


def is_candidate(path: Path) -> bool:
    """Whether a file name is an input to read (.csv or .xlsx, not temporary, lock or hidden)."""
    name = path.name
    lowered = name.lower()
    if name.startswith((".", "~$")) or lowered.endswith(_TEMPORARY_SUFFIXES):
        return False
    suffix = next((s for s in SUFFIXES if lowered.endswith(s)), None)
    return suffix is not None and len(lowered) > len(suffix)


@dataclass(frozen=True)
class InboxFile:
    """A complete file in the inbox and the priority its folder gives it."""

    path: Path
    priority: str | None  # None: the inbox root, the default priority


@dataclass
class _Watch:
    signature: Signature
    changed_at: float
    handed_out: bool = False  # returned by ready(); again only once the file changes


class _Nudges(FileSystemEventHandler):
    """Collects the paths that events mention, and what a closed-after-write file looked like."""

    def __init__(self, on_complete: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._paths: set[Path] = set()
        self._closed: dict[Path, Signature] = {}
        self._on_complete = on_complete

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        for raw in (event.src_path, event.dest_path):
            if not raw:
                continue
            path = Path(os.fsdecode(raw))
            if not is_candidate(path):
                continue
            # Written and closed, or renamed into place (as `coupactl submit` does): complete.
            complete = isinstance(event, FileClosedEvent) or (
                isinstance(event, FileMovedEvent) and raw == event.dest_path)
            closed = _closed_signature(path) if complete else None
            with self._lock:
                self._paths.add(path)
                if closed is not None:
                    self._closed[path] = closed
            if closed is not None:
                self._on_complete()  # the file may be read now: no need to wait for a pass

    def take(self) -> tuple[set[Path], dict[Path, Signature]]:
        with self._lock:
            paths, closed = self._paths, self._closed
            self._paths, self._closed = set(), {}
        return paths, closed


class Inbox:
    """Watches the inbox folders and hands out each complete input file once."""

    def __init__(self, root: Path, *, quiet_seconds: float, polling: bool = False,
                 on_complete: Callable[[], None] = lambda: None) -> None:
        self.root = Path(os.path.abspath(root))
        self.quiet_seconds = quiet_seconds
        self.polling = polling
        self.folders = {None: self.root} | {
            priority: self.root / sub for priority, sub in PRIORITY_FOLDERS.items()
        }
        self.accepted = self.root / ACCEPTED
        self.rejected = self.root / REJECTED
        self._nudges = _Nudges(on_complete)
        self._observer: BaseObserver | None = None
        self._watches: dict[Path, _Watch] = {}
        self._pending: set[Path] = set()
        self._last_scan: float | None = None
        self._warned: set[Path] = set()

    def start(self) -> None:
        """Create the folders, start watching them, and queue the files already there."""
        logging.getLogger("watchdog.observers.inotify").addFilter(_quiet_stop_race)
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in [*self.folders.values(), self.accepted, self.rejected]:
            self._make(folder)
        try:
            self._observer = self._watch(PollingObserver(timeout=POLL_SECONDS) if self.polling
                                         else Observer())
        except OSError as exc:  # inotify watch or instance limit reached on this host
            log.warning("cannot watch %s with inotify (%s); polling it instead", self.root, exc)
            self._observer = self._watch(PollingObserver(timeout=POLL_SECONDS))
        self._pending |= self._scan()

    def _watch(self, observer: BaseObserver) -> BaseObserver:
        try:
            for folder in self.folders.values():
                if self._folder_fd(folder) is None:
                    continue  # a link (warned): the rescan finds files once it is a folder
                observer.schedule(self._nudges, str(folder), recursive=False)
            observer.start()
        except OSError:
            observer.stop()  # watches started before the failure would keep running
            raise
        return observer

    def stop(self) -> None:
        """Stop watching; files not yet handed out are found again at the next start."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None

    def ready(self, now: float) -> list[InboxFile]:
        """Files complete as of ``now``, oldest first, each returned once; never blocks.

        ``now`` is the caller's clock (``time.time()`` in the daemon); only differences
        between calls matter.
        """
        paths, closed = self._nudges.take()
        paths |= self._pending
        self._pending = set()
        if self._last_scan is None or now - self._last_scan >= RESCAN_SECONDS:
            paths |= self._scan()
            self._last_scan = now
        found: list[tuple[int, str, InboxFile]] = []
        folders = {folder: self._folder_fd(folder) for folder in self.folders.values()}
        try:
            for path in paths | set(self._watches):
                folder_fd = folders.get(path.parent)
                if folder_fd is None:  # not one of ours, or a link (warned), or unreadable
                    self._watches.pop(path, None)
                    continue
                self._look(path, folder_fd, closed, now, found)
        finally:
            for fd in folders.values():
                if fd is not None:
                    os.close(fd)
        return [item for _, _, item in sorted(found, key=lambda entry: entry[:2])]

    def _look(self, path: Path, folder_fd: int, closed: dict[Path, Signature], now: float,
              found: list[tuple[int, str, InboxFile]]) -> None:
        """One file's signature this pass: a complete file is added to ``found`` once."""
        signature = self._checked_signature(path, folder_fd)
        if signature is None:
            self._watches.pop(path, None)
            return
        watch = self._watches.get(path)
        if watch is None or watch.signature != signature:
            watch = self._watches[path] = _Watch(signature, changed_at=now)
        if watch.handed_out:
            return
        if closed.get(path) == signature or now - watch.changed_at >= self.quiet_seconds:
            watch.handed_out = True
            found.append((signature[1], str(path), InboxFile(path, self._priority(path))))

    def accept(self, f: InboxFile, batch_id: str) -> Path:
        """Move a file that became a batch to accepted/NAME.<batch-id>.<ext>; return where it is.

        If it cannot be moved, the failure is logged and the file stays where it is, not
        handed out again until it changes.
        """
        moved = self._move(f, self.accepted, f.path.stem, f".{batch_id}", [f.path.suffix])
        log.debug("moved %s to %s", f.path.name, moved)
        return moved

    def reject(self, f: InboxFile, reason: str) -> Path:
        """Move a file to rejected/ with NAME.reason.txt beside it; return where the file is.

        If it cannot be moved, the failure is logged and the file stays where it is, not
        handed out again until it changes.
        """
        moved = self._move(f, self.rejected, f.path.stem, "", [f.path.suffix, ".reason.txt"],
                           reason=reason)
        log.debug("moved %s to %s (%s)", f.path.name, moved, reason)
        return moved

    def forget(self, f: InboxFile) -> None:
        """Drop what the inbox knows of a file, e.g. when it vanished before it was read."""
        self._watches.pop(f.path, None)

    def _move(self, f: InboxFile, folder: Path, stem: str, tail: str, suffixes: list[str],
              reason: str | None = None) -> Path:
        """Rename the file into ``folder`` under a free name, both folders opened without
        following links; with a ``reason``, write the reason file beside it."""
        source_fd = self._folder_fd(f.path.parent)
        target_fd = self._folder_fd(folder)
        try:
            if source_fd is None or target_fd is None:
                log.error("cannot move %s to %s/ (see the warning about that folder); it "
                          "stays in the inbox until it changes", f.path, folder.name)
                return f.path
            free = _free_stem(target_fd, stem, tail, suffixes)
            target = f"{free}{f.path.suffix}"
            try:
                os.replace(f.path.name, target, src_dir_fd=source_fd, dst_dir_fd=target_fd)
            except FileNotFoundError:
                log.info("%s disappeared before it could be moved", f.path)
                self.forget(f)
                return f.path
            except OSError as exc:
                log.error("cannot move %s to %s (%s); it stays in the inbox until it changes",
                          f.path, folder, exc)
                return f.path
            self.forget(f)
            if reason is not None:
                try:
                    _write_reason(target_fd, f"{free}.reason.txt", f.path.name, reason)
                except OSError as exc:
                    log.error("rejected %s but could not write its reason file: %s",
                              folder / target, exc)
            return folder / target
        finally:
            for fd in (source_fd, target_fd):
                if fd is not None:
                    os.close(fd)

    def _priority(self, path: Path) -> str | None:
        return next((p for p, folder in self.folders.items() if path.parent == folder), None)

    def _make(self, folder: Path) -> None:
        """Create one of the inbox's folders if it is missing; never through a link."""
        if folder == self.root:
            self.root.mkdir(parents=True, exist_ok=True)
            return
        try:
            os.mkdir(folder)
        except FileExistsError:
            pass  # a folder, or a link or file that _folder_fd() will warn about
        except OSError as exc:
            self._warn_once(folder, "cannot create inbox folder %s: %s", folder, exc)

    def _folder_fd(self, folder: Path) -> int | None:
        """One of the inbox's folders, open; None, with one warning, when it is a link or
        cannot be opened. Below the root no link is followed."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        try:
            if folder == self.root:
                fd = os.open(self.root, flags)
            else:
                root_fd = os.open(self.root, flags)
                try:
                    fd = os.open(folder.name, flags | os.O_NOFOLLOW, dir_fd=root_fd)
                finally:
                    os.close(root_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn_once(folder, "ignoring inbox folder %s%s", folder,
                            _why_not_a_folder(folder, exc))
            return None
        self._warned.discard(folder)  # a folder again: warn again should it change
        return fd

    def _scan(self) -> set[Path]:
        found: set[Path] = set()
        for folder in self.folders.values():
            fd = self._folder_fd(folder)
            if fd is None:
                if not os.path.lexists(folder):
                    log.warning("inbox folder %s vanished; creating it again", folder)
                    self._make(folder)
                continue
            try:
                with os.scandir(fd) as entries:
                    found |= {folder / e.name for e in entries if is_candidate(Path(e.name))}
            except OSError as exc:
                self._warn_once(folder, "cannot list inbox folder %s: %s", folder, exc)
            finally:
                os.close(fd)
        return found

    def _checked_signature(self, path: Path, folder_fd: int) -> Signature | None:
        try:
            info = os.stat(path.name, dir_fd=folder_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn_once(path, "cannot look at %s: %s", path, exc)
            return None
        if stat.S_ISLNK(info.st_mode):
            self._warn_once(path, "ignoring %s: symbolic links are not read; copy the file "
                            "into the inbox instead", path)
            return None
        signature = _regular_signature(info)
        if signature is None:
            self._warn_once(path, "ignoring %s: it is not a regular file", path)
        return signature

    def _warn_once(self, key: Path, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)


def _quiet_stop_race(record: logging.LogRecord) -> bool:
    """Drop the error watchdog logs when its reader wakes up during stop(): nothing is lost."""
    return "called when the thread is inactive" not in record.getMessage()


def _regular_signature(info: os.stat_result) -> Signature | None:
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_size, info.st_mtime_ns, info.st_ino


def _closed_signature(path: Path) -> Signature | None:
    """What a file looks like right after its writer closed it (called on the watch thread)."""
    try:
        return _regular_signature(os.lstat(path))
    except OSError:
        return None


def _why_not_a_folder(folder: Path, exc: OSError) -> str:
    """Why an inbox folder could not be opened, in words for the warning."""
    try:
        if os.path.islink(folder):
            return (f": it is a symbolic link (to {os.readlink(folder)}); coupad reads, moves "
                    "and writes nothing through it. Make it a real folder")
        if not os.path.isdir(folder):
            return ": it is not a folder"
    except OSError:
        pass
    return f": {exc.strerror or exc}"


def _free_stem(folder_fd: int, stem: str, tail: str, suffixes: list[str]) -> str:
    """A free 'stem<tail>', 'stem<tail> (2)', ... for every suffix; a long stem is cut."""
    n = 1
    while True:
        extra = "" if n == 1 else f" ({n})"
        room = _NAME_MAX - max(len(os.fsencode(s)) for s in suffixes) - len(extra)
        candidate = _fit(stem, room - len(os.fsencode(tail))) + tail + extra
        if not any(_exists(folder_fd, f"{candidate}{s}") for s in suffixes):
            return candidate
        n += 1


def _exists(folder_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _fit(stem: str, room: int) -> str:
    """The stem cut to ``room`` bytes of file name without splitting a character."""
    while len(os.fsencode(stem)) > room:
        stem = stem[:-1]
    return stem


def _write_reason(folder_fd: int, name: str, original: str, reason: str) -> None:
    """NAME.reason.txt written whole, then renamed into place, inside the open folder."""
    text = (
        f"{original} was not read: {reason.rstrip('.')}.\n"
        "\n"
        "Correct the file and drop it into the inbox again.\n"
        f"Rejected at {time.strftime('%Y-%m-%d %H:%M:%S %z')}.\n"
    )
    temporary = f".{name}.tmp"
    try:
        os.unlink(temporary, dir_fd=folder_fd)  # left by a crash, or planted: never written
    except FileNotFoundError:
        pass
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666, dir_fd=folder_fd)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
