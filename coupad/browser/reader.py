"""Reading a tab over the browser's one DevTools connection, without WebDriver's queue.

WebDriver runs one command at a time per browser and must switch to a tab before reading it.
The engine reads a loading page many times, in several tabs at once, so those reads are
evaluations sent over the tab's session on :class:`coupad.browser.cdp.Connection`. A read is
*sent* at once and its answer *collected* later: Chromium holds an evaluation sent during a
pending navigation until the new document has committed, so an unanswered read simply means
"not there yet", and no tab ever waits for another.
"""

from __future__ import annotations

import time
from typing import Any

from coupad.browser.cdp import CdpError, CdpTimeout, Connection, TargetCrashed
from coupad.errors import CoupadError

SESSION_WAIT = 2.0  # a tab just opened gets its session within this, or is read over WebDriver


class ChannelError(CoupadError):
    """The tab's session failed or answered with an error; read it over WebDriver instead."""


class TabCrashed(ChannelError):
    """Chromium reported the tab's renderer gone."""


class TabReader:
    """One tab's evaluations over the shared connection: send one, collect its value later."""

    def __init__(self, connection: Connection, handle: str, *, hold: float) -> None:
        """``hold``: how long an evaluation may wait for a navigation to commit."""
        self._conn = connection
        self.handle = handle
        self.hold = hold
        try:
            self._session = connection.targets.session_for(handle) or connection.wait_session(
                handle, timeout=SESSION_WAIT)
        except CdpError as exc:
            raise ChannelError(f"the tab has no DevTools session: {exc}") from None
        self.pending: int | None = None  # the evaluation sent and not yet answered

    def fileno(self) -> int:
        """The connection's socket, for ``select``."""
        try:
            return self._conn.fileno()
        except CdpError as exc:
            raise ChannelError(str(exc)) from None

    @property
    def session(self) -> str:
        """The tab's session id now: after a reconnect the tab is attached again under a new
        one, and a command sent under the old one finds no session."""
        self._session = self._conn.targets.session_for(self.handle) or self._session
        return self._session

    def send(self, script: str, *args: Any) -> None:
        """Evaluate ``script`` (``arguments[i]``, ``return``); an earlier unanswered one is dropped."""
        self.forget()
        try:
            self.pending = self._conn.evaluate(self.session, script, *args, timeout=self.hold)
        except TargetCrashed:
            raise TabCrashed("the tab crashed") from None
        except CdpError as exc:
            raise ChannelError(str(exc)) from None

    def collect(self) -> tuple[bool, Any]:
        """``(True, value)`` once the pending evaluation has answered, else ``(False, None)``."""
        if self.pending is None:
            return False, None
        try:
            self._conn.pump(0)
            done, value = self._conn.evaluation(self.pending)
        except TargetCrashed:
            self.pending = None
            raise TabCrashed("the tab crashed") from None
        except CdpTimeout as exc:
            self.pending = None
            raise ChannelError(f"no answer: {exc}") from None
        except CdpError as exc:
            self.pending = None
            raise ChannelError(str(exc)) from None
        if done:
            self.pending = None
        return done, value

    def evaluate(self, script: str, *args: Any, wait: float) -> tuple[bool, Any]:
        """Send an evaluation and wait up to ``wait`` seconds for it: ``(True, value)``, or
        ``(False, None)`` while the tab holds it; one still unanswered from before is waited
        for first, not sent twice."""
        if self.pending is not None:
            answered, _ = self.collect()
            if not answered:
                return False, None
        self.send(script, *args)
        deadline = time.monotonic() + wait
        while True:
            answered, value = self.collect()
            left = deadline - time.monotonic()
            if answered or left <= 0:
                return answered, value
            try:
                self._conn.pump(wait=left)
            except CdpError as exc:
                self.pending = None
                raise ChannelError(str(exc)) from None

    def forget(self) -> None:
        """Drop the pending evaluation: its answer, if it comes, is ignored."""
        if self.pending is not None:
            self._conn.discard(self.pending)
            self.pending = None

    def close(self) -> None:
        self.forget()
