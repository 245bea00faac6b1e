"""The engine's open tabs: one record per tab, its state, its reader and the POs it served.

A tab is :attr:`TabState.BUSY` while a PO runs in it. A finished PO's tab is kept for the next
PO (see :mod:`coupad.engine`): its document *retired* (``RETIRED``: a navigation may start at
once; the page is dropped after a while) or, when it could not be retired, sent to
``about:blank`` (``BLANKING``) until the browser reports it blank (``READY``). This module
only keeps the books: the engine does what touches the browser and tells the pool.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from coupad.browser.cdp import Connection
from coupad.browser.reader import ChannelError, TabReader

log = logging.getLogger("coupad.engine")


class TabState(enum.Enum):
    """Where an open tab stands between POs."""

    BUSY = "busy"  # a PO runs in it
    RETIRED = "retired"  # spare, still showing its last PO's retired document; navigable
    BLANKING = "blanking"  # spare, sent to about:blank, not yet reported blank: wait for it
    READY = "ready"  # spare and navigable: blank, or retired and sent to about:blank


SPARE = frozenset({TabState.RETIRED, TabState.BLANKING, TabState.READY})
NAVIGABLE = frozenset({TabState.RETIRED, TabState.READY})


@dataclass
class BrowserTab:
    """One open tab of the browser (not the home tab)."""

    handle: str
    state: TabState = TabState.BUSY
    released: float = 0.0  # when it last became spare
    served: int = 0  # POs it has served (pool.pos_per_tab)
    reader: TabReader | None = None  # its reader over its DevTools session; None: WebDriver
    reader_tried: bool = False  # whether a reader was asked for (None then means WebDriver)


class TabPool:
    """The engine's open tabs; spare ones are handed out in the order they became spare."""

    def __init__(self) -> None:
        self._runs: dict[str, BrowserTab] = {}  # in the order they were opened or released

    def opened(self, handle: str) -> None:
        """A new tab was opened for a PO."""
        self._runs[handle] = BrowserTab(handle)

    def take(self) -> tuple[str, bool, float] | None:
        """A spare tab for a new PO, a navigable one first: (handle, whether it is navigable,
        when it was released); None when there is none."""
        spare = [t for t in self._runs.values() if t.state in SPARE]
        if not spare:
            return None
        tab = next((t for t in spare if t.state in NAVIGABLE), spare[0])
        navigable = tab.state in NAVIGABLE
        tab.state = TabState.BUSY
        return tab.handle, navigable, tab.released

    def served_out(self, handle: str, pos_per_tab: int) -> bool:
        """Count one more PO served by the tab; True once it has served ``pos_per_tab``."""
        tab = self._runs.setdefault(handle, BrowserTab(handle))
        tab.served += 1
        return tab.served >= pos_per_tab

    def release(self, handle: str, now: float, state: TabState) -> None:
        """The tab's PO finished and the tab is kept: spare from ``now`` in ``state``."""
        tab = self._runs.pop(handle, None) or BrowserTab(handle)
        tab.state = state
        tab.released = now
        self._runs[handle] = tab  # last in the order

    def due_blank(self, now: float, after: float) -> list[str]:
        """The retired tabs released ``after`` seconds ago or more; they become READY (the
        engine sends them to about:blank)."""
        due = [t for t in self._runs.values() if t.state is TabState.RETIRED and now - t.released >= after]
        for tab in due:
            tab.state = TabState.READY
        return [t.handle for t in due]

    def turned_blank(self, handle: str) -> None:
        """The browser reports the tab blank: a spare one waiting for that is READY."""
        tab = self._runs.get(handle)
        if tab is not None and tab.state is TabState.BLANKING:
            tab.state = TabState.READY

    def spare(self) -> list[str]:
        """The spare tabs' handles, in the order they became spare."""
        return [t.handle for t in self._runs.values() if t.state in SPARE]

    def in_state(self, state: TabState) -> Iterator[BrowserTab]:
        return (t for t in self._runs.values() if t.state is state)

    def forget(self, handle: str) -> BrowserTab | None:
        """Drop the tab's record (closed, or lost); returns it."""
        return self._runs.pop(handle, None)

    def reader(self, handle: str) -> TabReader | None:
        """The tab's reader if it has one (None: not asked for yet, or read over WebDriver)."""
        tab = self._runs.get(handle)
        return tab.reader if tab is not None else None

    def open_reader(self, handle: str, conn: Connection, hold: float) -> TabReader | None:
        """The tab's reader over its DevTools session, opened on first use, or None: read it
        over WebDriver."""
        tab = self._runs.get(handle)
        if tab is None:
            tab = self._runs[handle] = BrowserTab(handle)
        if not tab.reader_tried:
            tab.reader_tried = True
            try:
                tab.reader = TabReader(conn, handle, hold=hold)
            except ChannelError as exc:
                log.info("tab %s is read over WebDriver: %s", handle, exc)
                tab.reader = None
        return tab.reader

    def drop_reader(self, handle: str, exc: ChannelError, *, retry: bool) -> None:
        """Read this tab over WebDriver from now on or, with ``retry``, until a reader is asked
        for again (the whole connection went down)."""
        tab = self._runs.get(handle)
        if tab is None:
            if retry:
                return
            tab = self._runs[handle] = BrowserTab(handle)
        if tab.reader is not None:
            tab.reader.close()
        tab.reader = None
        tab.reader_tried = not retry
        if retry:
            log.info("tab %s is read over WebDriver until the connection is back: %s", handle, exc)
        else:
            log.info("tab %s is read over WebDriver from now on: %s", handle, exc)

    def close(self) -> None:
        """Forget every tab, closing their readers (the browser is quitting)."""
        for tab in self._runs.values():
            if tab.reader is not None:
                tab.reader.close()
        self._runs.clear()
