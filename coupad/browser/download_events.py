"""What a :class:`coupad.browser.downloads.DownloadRouter` reports of a click download.

Each download is reported :class:`Began`, then :class:`Progress` while it runs, then
:class:`Completed` or :class:`Failed`; a download no tab awaited is :class:`Refused`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

@dataclass(frozen=True)
class Began:
    """A download began in a tab that expected it: the first expectation there is used up."""

    tab_id: str
    key: str
    guid: str
    url: str
    suggested_name: str


@dataclass(frozen=True)
class Progress:
    """The latest byte counts of a running download (``total`` 0: not declared)."""

    tab_id: str
    key: str
    guid: str
    received: int
    total: int


@dataclass(frozen=True)
class Completed:
    """Every byte is on disk, at ``path`` (``<staging>/<guid>``); the caller moves it."""

    tab_id: str
    key: str
    guid: str
    path: Path
    size: int
    total: int
    url: str
    suggested_name: str


@dataclass(frozen=True)
class Failed:
    """The download ended without a file; ``reason`` says what is known of why."""

    tab_id: str
    key: str
    guid: str
    reason: str


@dataclass(frozen=True)
class Refused:
    """A download no tab awaited was cancelled; ``tab_id`` is where it began, if known."""

    tab_id: str | None
    guid: str
    url: str
    suggested_name: str
    reason: str


DownloadEvent = Began | Progress | Completed | Failed | Refused
