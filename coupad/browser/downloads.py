"""Click-only downloads in every tab at once, each attributed to its tab by download events.

The browser has one download behaviour, not one per tab, so instead of pointing it at the
clicking PO's folder before each click (which serialises clicks across the browser), one
:class:`DownloadRouter` per browser owns it for good: ``allowAndName`` into a staging folder
of its own, with download events on. Every file lands as ``<staging>/<guid>``, so same-name
files never collide, and the events say which tab each download came from:

- ``Browser.downloadWillBegin {frameId, guid, url, suggestedFilename}``: ``frameId`` is the
  tab's target id, or a child frame's or a popup's, mapped to its tab by
  :mod:`coupad.browser.frames`.
- ``Browser.downloadProgress {guid, receivedBytes, totalBytes, state}`` follows it to
  ``completed`` or ``canceled``.

A tab announces a click with :meth:`DownloadRouter.expect` *before* clicking, and the downloads
that begin in a tab are matched to its expectations in order. So that order is never in doubt,
a tab keeps at most one click awaiting its download's start: click, wait for :class:`Began`
(or give up and :meth:`~DownloadRouter.withdraw`), then click the next. Tabs are independent
and click at the same time; the downloads themselves run in parallel everywhere.

A download that cannot be attributed to a tab awaiting one is cancelled and reported as
:class:`Refused` — never handed to a tab by guess.

Only this router may set the download behaviour of its browser: the last client to set it
wins for the whole browser, and every client with events on receives every download's events.
The behaviour reverts when the DevTools connection that set it closes, so it is an arming
of the connection, set again by :meth:`~coupad.browser.cdp.Connection.reconnect`. Downloads already
running when the connection dropped finish into the staging folder, but the new connection
gets no events for them: those are followed on disk instead (``<guid>.crdownload`` while
running, renamed to ``<guid>`` when complete) until they complete, vanish or stall. A download
that *begins* while the connection is down goes wherever the reverted behaviour sends it and
is never seen here: its click's wait for :class:`Began` runs out, and the caller withdraws it.

The staging folder must be on this machine (sizes and downloads followed on disk are read
from it). On Selenium Grid the files land on the node instead; only the attribution carries
over there as it is.

The router does not read the socket: the owner pumps the connection, the router's listeners
record what happened, and :meth:`DownloadRouter.poll` returns it. A completed file is the
caller's to check (``coupad.download.is_sign_in_download``) and move.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coupad.browser.cdp import Connection
from coupad.browser.download_events import (
    Began,
    Completed,
    DownloadEvent,
    Failed,
    Progress,
    Refused,
)
from coupad.browser.frames import Frames

__all__ = [
    "ORPHAN_GRACE", "ORPHAN_STALL", "Began", "Completed", "DownloadEvent", "DownloadRouter",
    "Failed", "Progress", "Refused",
]

log = logging.getLogger("coupad.browser.downloads")

# A download followed on disk after a reconnect fails when its file stops growing this long.
ORPHAN_STALL = 30.0
# ... or when neither its partial nor its final file has been there this long: the moment
# between the download's start and its partial file, or a rename seen half-way, is shorter.
ORPHAN_GRACE = 2.0
# A running download whose bytes have not moved this long is failed at once if the disk is full.
SPACE_LOOK = 2.0
_FINISHED_KEPT = 4096
_MIN_FREE = 1 << 20  # less free space than this in the staging folder: the disk is full


@dataclass
class _Download:
    tab_id: str
    key: str
    guid: str
    url: str
    name: str
    seen: float  # when its bytes last moved (or, followed on disk, when its file was last there)
    received: int = 0
    total: int = 0
    on_disk: bool = False  # followed on disk: its events went with the old connection


class DownloadRouter:
    """Owns one browser's download behaviour and attributes each download to its tab."""

    def __init__(self, connection: Connection, staging: Path, *,
                 orphan_stall: float = ORPHAN_STALL) -> None:
        self.connection = connection
        self.staging = staging
        self.orphan_stall = orphan_stall
        staging.mkdir(parents=True, exist_ok=True)
        self._expected: dict[str, deque[str]] = {}  # tab → keys of its clicks, in order
        self._frames = Frames(connection)
        self._watched: set[str] = set()  # sessions whose frames are followed
        self._downloads: dict[str, _Download] = {}  # by guid, while running
        self._finished: OrderedDict[str, None] = OrderedDict()  # guids ended or refused
        self._events: list[DownloadEvent] = []
        self._progress: dict[str, Progress] = {}
        self._registered = False
        self._armed = 0  # how many times the behaviour was set: more than once means reconnects
        self.reconnected_at = 0.0  # monotonic time of the last reconnect's re-arming
        listen = connection.listen
        listen("Target.attachedToTarget", self._on_attached)
        listen("Target.targetCreated", self._frames.on_target_created)
        listen("Target.targetDestroyed", self._frames.on_target_destroyed)
        listen("Page.frameAttached", self._frames.on_frame_attached)
        listen("Browser.downloadWillBegin", self._on_will_begin)
        listen("Browser.downloadProgress", self._on_progress)

    # ---- what the caller does --------------------------------------------------------------

    def arm(self) -> None:
        """Take the browser's download behaviour, now and after every reconnect."""
        if not self._registered:
            self._registered = True
            self.connection.arm(self._arm)

    def expect(self, tab_id: str, key: str) -> None:
        """The tab is about to click for attachment ``key``: its next download is that file."""
        self._expected.setdefault(tab_id, deque()).append(key)

    def withdraw(self, tab_id: str, key: str) -> bool:
        """A click that started nothing: its download, should it begin later, is refused."""
        queue = self._expected.get(tab_id)
        if queue is None or key not in queue:
            return False
        queue.remove(key)
        return True

    def forget(self, tab_id: str) -> None:
        """The tab's PO ended: drop its expectations and cancel its running downloads."""
        self._expected.pop(tab_id, None)
        for download in [d for d in self._downloads.values() if d.tab_id == tab_id]:
            self._cancel(download.guid)
            self._end(download)

    def cancel(self, guid: str, reason: str) -> None:
        """Cancel a running download (a stall, a deadline); it is reported as Failed."""
        download = self._downloads.get(guid)
        if download is not None:
            self._cancel(guid)
            self._fail(download, reason)

    def expected(self, tab_id: str) -> tuple[str, ...]:
        """The keys the tab's clicks still await a download for, in order."""
        return tuple(self._expected.get(tab_id, ()))

    def poll(self, now: float | None = None) -> list[DownloadEvent]:
        """What happened since the last poll, in order; progress once per download, latest.

        ``now`` (``time.monotonic()`` by default) dates the look at downloads followed on disk.
        """
        now = time.monotonic() if now is None else now
        self._follow_on_disk(now)
        self._check_space(now)
        events, self._events = self._events, []
        events.extend(self._progress.values())
        self._progress.clear()
        return events

    # ---- arming ----------------------------------------------------------------------------

    def _arm(self, connection: Connection) -> None:
        if self._armed:
            # A reconnect: running downloads go on, but their events went with the old socket.
            now = time.monotonic()
            self.reconnected_at = now
            for download in self._downloads.values():
                download.on_disk = True
                download.seen = now
            self._watched = {s for s in self._watched if connection.targets.target_of(s) is not None}
        self._armed += 1
        connection.call("Browser.setDownloadBehavior", self._behavior())
        for target_id in connection.targets.pages():  # tabs attached before this router listened
            session = connection.targets.session_for(target_id)
            if session is not None:
                self._watch(target_id, session)

    # ---- tabs and their frames -------------------------------------------------------------

    def _on_attached(self, params: dict[str, Any], session: str | None) -> None:
        info = params.get("targetInfo")
        new_session = params.get("sessionId")
        if (session is None and isinstance(info, dict) and info.get("type") == "page"
                and isinstance(info.get("targetId"), str) and isinstance(new_session, str)):
            self._watch(info["targetId"], new_session)

    def _watch(self, target_id: str, session: str) -> None:
        """Follow a tab's frames: those it has now, and each one attached later."""
        if session in self._watched:
            return
        self._watched.add(session)
        self.connection.send("Page.enable", session=session, then=_ignore)
        self.connection.send("Page.getFrameTree", session=session,
                             then=lambda result: self._frames.learn_tree(target_id, result))

    # ---- downloads -------------------------------------------------------------------------

    def _on_will_begin(self, params: dict[str, Any], session: str | None) -> None:
        guid, frame_id = params.get("guid"), params.get("frameId")
        url, name = params.get("url"), params.get("suggestedFilename")
        url = url if isinstance(url, str) else ""
        name = name if isinstance(name, str) else ""
        if not isinstance(guid, str) or guid in self._downloads or guid in self._finished:
            return
        page = (self._frames.page_of(frame_id, self._expected) if isinstance(frame_id, str)
                else None)
        if page is None:
            self._refuse(None, guid, url, name, "it began in a frame that belongs to no known tab")
            return
        tab = self._frames.tab_of(page, self._expected)
        if page != tab and self.connection.targets.session_for(page) is not None:
            # A popup opened only for the download: Chromium usually closes it itself.
            self.connection.send("Target.closeTarget", {"targetId": page}, then=_ignore)
        queue = self._expected.get(tab)
        if not queue:
            self._refuse(tab, guid, url, name, f"tab {tab} awaits no download")
            return
        key = queue.popleft()
        self._downloads[guid] = _Download(tab, key, guid, url, name, seen=time.monotonic())
        self._events.append(Began(tab, key, guid, url, name))

    def _on_progress(self, params: dict[str, Any], session: str | None) -> None:
        guid = params.get("guid")
        download = self._downloads.get(guid) if isinstance(guid, str) else None
        if download is None:
            return
        received = _count(params.get("receivedBytes"))
        if received > download.received or download.on_disk:
            download.seen = time.monotonic()
        download.on_disk = False  # events again: they are the better source
        # A cancelled download reports 0 bytes received: keep the last count seen.
        download.received = max(download.received, received)
        download.total = _count(params.get("totalBytes")) or download.total
        state = params.get("state")
        if state == "completed":
            where = params.get("filePath")
            self._complete(download, where if isinstance(where, str) else None)
        elif state == "canceled":
            self._fail(download, self._why_canceled(download))
        else:
            self._progress[download.guid] = Progress(
                download.tab_id, download.key, download.guid, download.received, download.total)

    def _follow_on_disk(self, now: float) -> None:
        """Downloads whose events went with an old connection: read their state from disk."""
        for download in [d for d in self._downloads.values() if d.on_disk]:
            final = self.staging / download.guid
            partial = self.staging / f"{download.guid}.crdownload"
            if final.is_file():
                self._complete(download)
                continue
            try:
                size = partial.stat().st_size
            except FileNotFoundError:
                if final.is_file():  # renamed between the two looks
                    self._complete(download)
                elif now - download.seen > ORPHAN_GRACE:
                    self._fail(download, "its file vanished while its events were lost "
                               "with the DevTools connection: the browser gave it up")
                continue
            if size != download.received:
                download.received = size
                download.seen = now
                self._progress[download.guid] = Progress(
                    download.tab_id, download.key, download.guid, size, download.total)
            elif now - download.seen > self.orphan_stall:
                self._cancel(download.guid)
                self._fail(download, f"it stalled at {size} bytes for {self.orphan_stall:.0f} s "
                           "after the DevTools connection was re-established")

    def _behavior(self) -> dict[str, Any]:
        """The browser's download behaviour: every file as ``<staging>/<guid>``, with events."""
        return {"behavior": "allowAndName", "downloadPath": str(self.staging), "eventsEnabled": True}

    def _fetch(self, download: _Download, browser_path: str | None) -> Path:
        """Where the completed download is on this machine (a browser elsewhere overrides this
        to copy it here); OSError when it is not there."""
        path = self.staging / download.guid
        path.stat()
        return path

    def _complete(self, download: _Download, browser_path: str | None = None) -> None:
        try:
            path = self._fetch(download, browser_path)
            size = path.stat().st_size
        except OSError as exc:
            self._fail(download, f"the browser reported it complete, but its file is missing: {exc}")
            return
        self._events.append(Completed(download.tab_id, download.key, download.guid, path, size,
                                      download.total, download.url, download.name))
        self._end(download)

    def _fail(self, download: _Download, reason: str) -> None:
        self._events.append(Failed(download.tab_id, download.key, download.guid, reason))
        self._end(download)

    def _why_canceled(self, download: _Download) -> str:
        """Why the browser gave a download up, as far as can be told: the event carries no
        reason, so the staging folder's free space is read. Chromium deletes the partial file
        when it gives up, so a disk that filled up shows as less free space than the file
        needed (its declared size), or no more than its bytes received and a little."""
        no_space = self._no_space(max(download.total, download.received + _MIN_FREE))
        if no_space:
            return no_space
        total = str(download.total) if download.total else "an undeclared number of"
        return (f"the browser cancelled or gave up the download after {download.received} of "
                f"{total} bytes")

    def _no_space(self, needed: int) -> str | None:
        """Why a download cannot be written when the staging folder has less than ``needed``
        bytes free ("no space left on device", the bytes free, the folder), else None."""
        try:
            info = os.statvfs(self.staging)
        except OSError:
            return None
        free = info.f_bavail * info.f_frsize
        if free >= needed:
            return None
        return f"no space left on device ({free} bytes free in {self.staging})"

    def _check_space(self, now: float) -> None:
        """Fail at once, cancelled, the downloads that stopped moving on a full disk (a browser
        may hold a download that cannot be written rather than give it up)."""
        for download in list(self._downloads.values()):
            if now - download.seen < SPACE_LOOK:
                continue
            no_space = self._no_space(_MIN_FREE)
            if no_space is None:
                return  # one look says it for every download: they share the folder
            self._cancel(download.guid)
            self._fail(download, no_space)

    def _refuse(self, tab: str | None, guid: str, url: str, name: str, reason: str) -> None:
        log.warning("refused a download: %s", reason)
        self._cancel(guid)
        self._mark_finished(guid)
        self._events.append(Refused(tab, guid, url, name, reason))

    def _cancel(self, guid: str) -> None:
        if not self.connection.closed:
            self.connection.send("Browser.cancelDownload", {"guid": guid}, then=_ignore)

    def _end(self, download: _Download) -> None:
        self._downloads.pop(download.guid, None)
        self._progress.pop(download.guid, None)
        self._mark_finished(download.guid)

    def _mark_finished(self, guid: str) -> None:
        self._finished[guid] = None
        while len(self._finished) > _FINISHED_KEPT:
            self._finished.popitem(last=False)


def _count(value: Any) -> int:
    """A byte count from an event; anything else (a bool, NaN, a negative) reads as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if 0 <= value < 1 << 62 else 0


def _ignore(outcome: Any) -> None:
    """Answers nobody waits for: a tab that closed meanwhile makes them errors, harmlessly."""
