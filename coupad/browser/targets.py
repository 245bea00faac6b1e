"""The tabs one DevTools connection knows: page targets, their sessions, openers and crashes.

With target discovery and auto-attach on (:meth:`coupad.browser.cdp.Connection.attach_tabs`),
the ``Target`` events name every page target — the tabs open now and every tab opened later,
by WebDriver or by the page — and give each a flattened session; a tab's target id is its
WebDriver window handle. Non-page targets (Chromium also auto-attaches a ``browser_ui``
target) are ignored. :class:`Targets` keeps that picture from the events it is shown.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from coupad.browser.wire import CdpError, TargetCrashed

# The tabs are a part of the DevTools connection, and log as it.
log = logging.getLogger("coupad.browser.cdp")

# Openers of closed popups are remembered this long (in entries): a popup opened only for a
# download is closed by Chromium within moments, maybe before its download is attributed.
_OPENERS_KEPT = 1024

# Fails the commands pending on a session with an error of the given type and a reason.
FailSession = Callable[[str, type[CdpError], str], None]


class Targets:
    """The page targets of one connection, kept from its ``Target`` events."""

    def __init__(self, fail_session: FailSession) -> None:
        self._fail_session = fail_session
        self._pages: dict[str, str | None] = {}  # page target → its session, once attached
        self._by_session: dict[str, str] = {}
        self._openers: OrderedDict[str, str] = OrderedDict()
        self._crashed: set[str] = set()

    def session_for(self, target_id: str) -> str | None:
        """The session of a tab, if attached."""
        return self._pages.get(target_id)

    def target_of(self, session: str) -> str | None:
        """The tab a session belongs to."""
        return self._by_session.get(session)

    def opener_of(self, target_id: str) -> str | None:
        """The tab that opened a popup, remembered for a while after the popup closed."""
        return self._openers.get(target_id)

    def pages(self) -> list[str]:
        """Target ids of the page targets known now."""
        return list(self._pages)

    def crashed(self, target_id: str) -> bool:
        """Whether the tab's renderer crashed (it stays so: close the tab)."""
        return target_id in self._crashed

    def forget_sessions(self) -> None:
        """The connection closed: its sessions, and the targets it knew, are gone with it."""
        self._pages.clear()
        self._by_session.clear()

    def track(self, method: str, params: dict[str, Any], session: str | None) -> None:
        """Keep the page targets, their sessions, openers and crashes from Target events."""
        if method in ("Target.targetCreated", "Target.targetInfoChanged", "Target.attachedToTarget"):
            self._page_seen(method, params, session)
        elif method == "Target.detachedFromTarget" and session is None:
            gone = params.get("sessionId")
            if isinstance(gone, str):
                self._detached(gone)
        elif method == "Target.targetDestroyed":
            target_id = params.get("targetId")
            if isinstance(target_id, str):
                self._destroyed(target_id)
        elif method in ("Target.targetCrashed", "Inspector.targetCrashed"):
            target_id = params.get("targetId") if session is None else self._by_session.get(session)
            if isinstance(target_id, str) and target_id in self._pages:
                self._crash(target_id)

    def _page_seen(self, method: str, params: dict[str, Any], session: str | None) -> None:
        info = params.get("targetInfo")
        if not isinstance(info, dict) or info.get("type") != "page":
            return
        target_id = info.get("targetId")
        if not isinstance(target_id, str):
            return
        self._pages.setdefault(target_id, None)
        opener = info.get("openerId")
        if isinstance(opener, str) and opener:
            self._openers[target_id] = opener
            while len(self._openers) > _OPENERS_KEPT:
                self._openers.popitem(last=False)
        new_session = params.get("sessionId")
        # Only a browser-level attach gives a tab its session; a nested one (under another
        # session) would be a page inside a page.
        if method == "Target.attachedToTarget" and session is None and isinstance(new_session, str):
            old = self._pages[target_id]
            if old is not None:
                self._by_session.pop(old, None)
            self._pages[target_id] = new_session
            self._by_session[new_session] = target_id

    def _detached(self, session: str) -> None:
        target_id = self._by_session.pop(session, None)
        if target_id is not None and self._pages.get(target_id) == session:
            self._pages[target_id] = None
        self._fail_session(session, CdpError, "the tab detached")

    def _destroyed(self, target_id: str) -> None:
        self._crashed.discard(target_id)
        session = self._pages.pop(target_id, None)
        if session is not None:
            self._by_session.pop(session, None)
            self._fail_session(session, CdpError, "the tab closed")

    def _crash(self, target_id: str) -> None:
        if target_id in self._crashed:
            return  # reported twice: by the session and by target discovery
        log.warning("tab %s crashed", target_id)
        self._crashed.add(target_id)
        session = self._pages[target_id]
        if session is not None:
            self._fail_session(session, TargetCrashed, "the tab crashed")
