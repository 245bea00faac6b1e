"""What the engine does to its tabs in the browser: open, switch, look, retire, blank, close.

**Every tab is visible.** A headless Chromium runs animation frames only for the tab in front
of its window and tells every other tab it is hidden, and pages pause there: a list rendered
in an animation frame never appears, a page that fetches its list once it is seen never
fetches it, and the engine would read an empty list where a person sees files. Each tab is
therefore opened with focus emulation (``Emulation.setFocusEmulationEnabled``), under which
Chromium treats a background tab as visible and focused and runs its frames. A window of its
own per tab does the same, but a visible headless window draws frames all the time, idle or
not (the README has the measurement).

Tabs are opened, navigated and closed over the connection, without waiting (a navigation's
commit is learned from the tab's answer, below); a tab's DevTools session (its
:class:`coupad.browser.reader.TabReader`) reads it without WebDriver's queue. WebDriver is
the fallback for a tab whose session cannot be used, and drives the home tab (sign-in). A finished PO's
tab is kept for the next PO (:class:`coupad.browser.tabs.TabPool` keeps the books): its
document is *retired* — marked over its session, so that the commit probe of the next
navigation cannot take it for the new page — and the next PO navigates it straight away; after
``pool.pos_per_tab`` POs it is closed, because a reused renderer keeps growing for a while. A
tab left spare for :data:`SPARE_IDLE` seconds is navigated to ``about:blank``, which drops the
page and everything it held. A tab read over WebDriver is blanked at once instead, and navigated
again once the browser reports it blank (``Target.getTargets``).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from selenium.common.exceptions import InvalidSessionIdException, NoSuchWindowException, WebDriverException

from coupad.browser.cdp import CdpError, Connection
from coupad.browser.launch import BrowserLike
from coupad.browser.po import PoRun, Stage
from coupad.browser.reader import ChannelError, TabCrashed, TabReader
from coupad.browser.tabs import TabPool, TabState
from coupad.config import Config
from coupad.errors import BrowserError
from coupad.page import HOOK_JS, SNAPSHOT_JS, Snapshot

log = logging.getLogger("coupad.engine")

LOOK_INTERVAL = 0.05  # seconds between two snapshots of one tab read over WebDriver
SOCKET_LOOK_INTERVAL = 0.025  # the same over the tab's DevTools session (no WebDriver queue)
RETIRE_JS = "window.__coupadRetired = true; return true;"
LOOK_WAIT = 0.1  # how long a snapshot over a tab's DevTools socket is waited for in one step
BLANK = "about:blank"  # a blank tab's URL, and its title until its next document commits
SPARE_IDLE = 1.0  # a spare tab still showing a finished PO's page is blanked after this
_DEAD_SESSION = ("invalid session id", "chrome not reachable", "disconnected", "session deleted",
                 # Selenium Grid: the node is gone, or it ended an idle session
                 "unable to execute request for an existing session", "session timed out",
                 "unable to find session")


class TabOps:
    """The engine's tab operations, as a base class of :class:`coupad.engine.Engine`."""

    config: Config
    browser: BrowserLike | None
    _runs: list[PoRun]  # the POs in flight
    _tab_pool: TabPool
    _conn: Connection | None  # the browser's one DevTools connection
    _home: str  # the first tab's handle
    _current: str  # the tab WebDriver is switched to
    _broken: str | None  # why the browser stopped working

    def _release_tab(self, tab: PoRun) -> None:
        """Keep the finished PO's tab for the next PO (see the module docstring), or close it
        once it has served ``pool.pos_per_tab`` POs: a reused renderer grows for a while."""
        now = time.monotonic()
        if self._tab_pool.served_out(tab.handle, self.config.pool.pos_per_tab):
            try:
                self._close_handle(tab.handle)
            except WebDriverException as exc:
                self._check_session(exc)
            return
        if self._retire(tab.handle):
            self._tab_pool.release(tab.handle, now, TabState.RETIRED)
            return
        try:
            self._blank_tab(tab.handle)
            self._tab_pool.release(tab.handle, now, TabState.BLANKING)
        except NoSuchWindowException:
            pass
        except WebDriverException as exc:
            self._check_session(exc)
            if not self._broken:
                try:
                    self._close_handle(tab.handle)
                except WebDriverException as again:
                    self._check_session(again)

    def _blank_tab(self, handle: str) -> None:
        self._go(handle, BLANK)

    def _go(self, handle: str, url: str) -> None:
        """Start loading ``url`` in the tab over its session, without waiting; over WebDriver
        when it has none. A navigation that fails shows the browser's error page, which the
        engine reads and judges like any page."""
        channel = self._channel(handle)
        if channel is not None and self._conn is not None:
            def navigated(answer: Any) -> None:
                error = answer if isinstance(answer, CdpError) else (answer or {}).get("errorText")
                if error:
                    log.debug("tab %s: navigating to %s: %s", handle, url, error)

            try:
                self._conn.send("Page.navigate", {"url": url}, session=channel.session,
                                then=navigated)
                return
            except CdpError as exc:
                self._drop_channel(handle, ChannelError(str(exc)))
        self._switch(handle)
        self._driver.get(url)

    def _retire(self, handle: str) -> bool:
        """Mark the tab's document as done over its DevTools socket, so that the commit probe
        of the next navigation cannot take it for the new page; False: it could not be
        marked (no socket, or the document is itself being replaced), blank the tab instead."""
        channel = self._channel(handle)
        if channel is None:
            return False
        try:
            answered, value = channel.evaluate(RETIRE_JS, wait=LOOK_WAIT)
        except ChannelError as exc:
            self._drop_channel(handle, exc)
            return False
        return answered and value is True

    def _blank_idle(self, now: float) -> None:
        """Blank the spare tabs that have shown a finished PO's page for SPARE_IDLE seconds."""
        for handle in self._tab_pool.due_blank(now, SPARE_IDLE):
            try:
                self._blank_tab(handle)
            except WebDriverException as exc:
                self._check_session(exc)
                self._tab_pool.forget(handle)

    def _new_tab(self) -> str:
        """Open a blank tab in the background, visible (see the module docstring) and with the
        page hook installed before any page of it runs; return its handle (its target id).

        The hook and the emulation are set over WebDriver's own session of the tab, which
        outlives a reconnection of the engine's DevTools connection (a session's scripts and
        emulations end with it)."""
        handle = None
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                self._close_crashed(conn)
            except CdpError as exc:  # a lost connection: the engine's next poll reopens it
                log.info("looking for crashed tabs over DevTools failed (%s)", exc)
            try:
                handle = str(conn.call("Target.createTarget",
                                       {"url": BLANK, "background": True})["targetId"])
            except CdpError as exc:
                log.info("opening a tab over DevTools failed (%s); opening it over WebDriver", exc)
        if handle is None:
            self._driver.switch_to.new_window("tab")
            handle = str(self._driver.current_window_handle)
            self._current = handle
        else:
            self._switch(handle)
        self._tab_pool.opened(handle)
        self._driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOK_JS})
        self._driver.execute_cdp_cmd("Emulation.setFocusEmulationEnabled", {"enabled": True})
        return handle

    def _close_crashed(self, conn: Connection) -> None:
        """Close, over DevTools, the crashed tabs no PO holds before WebDriver switches tabs:
        chromedriver can wait without end on a browser that still holds a crashed tab. A
        crashed first tab (the engine's home, where it signs in) is replaced by a blank one."""
        conn.pump()
        held = {t.handle for t in self._runs}
        for target in conn.targets.pages():
            if target in held or not conn.targets.crashed(target):
                continue
            log.info("tab %s crashed; closing it", target)
            if target == self._home:
                self._home = str(conn.call("Target.createTarget",
                                           {"url": BLANK, "background": True})["targetId"])
            self._close_handle(target)

    def _close_handle(self, handle: str) -> None:
        closed = self._tab_pool.forget(handle)
        if closed is not None and closed.reader is not None:
            closed.reader.close()
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.send("Target.closeTarget", {"targetId": handle}, then=_ignore)
                if self._current == handle:
                    self._current = ""  # WebDriver switches again before its next command
                return
            except CdpError as exc:
                log.debug("closing tab %s over DevTools failed (%s); closing it over WebDriver",
                          handle, exc)
        try:
            self._switch(handle)
            self._driver.close()
        except NoSuchWindowException:
            pass
        self._current = ""
        self._switch(self._home)

    def _note_commits(self) -> None:
        """Mark tabs whose navigation has committed and tabs that turned blank, asking the
        browser, not the tabs (see the module docstring)."""
        waiting = {t.handle: t for t in self._runs if t.stage is Stage.LOAD and not t.committed
                   and self._tab_pool.reader(t.handle) is None}
        blanking = {t.handle: t for t in self._runs if t.stage is Stage.OPEN and not t.navigable}
        spare = [t.handle for t in self._tab_pool.in_state(TabState.BLANKING)]
        if not (waiting or blanking or spare) or self.browser is None or self._broken:
            return
        try:
            infos = self._driver.execute_cdp_cmd("Target.getTargets", {})["targetInfos"]
        except WebDriverException as exc:
            self._check_session(exc)
            return
        for info in infos:
            handle = info.get("targetId", "")
            blank = info.get("title") == BLANK and info.get("url") == BLANK
            tab = waiting.get(handle)
            if tab is not None and info.get("title") != BLANK:
                tab.committed = True
            tab = blanking.get(handle)
            if tab is not None and blank:
                tab.navigable = True
            if blank:
                self._tab_pool.turned_blank(handle)

    @property
    def _driver(self) -> Any:
        if self.browser is None:
            raise BrowserError("the engine has not been started")
        return self.browser.driver

    def _switch(self, handle: str) -> None:
        if handle != self._current:
            self._driver.switch_to.window(handle)
            self._current = handle

    def _look(self, tab: PoRun, *, full: bool) -> Snapshot | None:
        """One snapshot of the tab, or None while its document is being replaced."""
        channel = self._channel(tab.handle)
        if channel is not None:
            try:
                answered, raw = channel.evaluate(SNAPSHOT_JS, full, wait=LOOK_WAIT)
            except TabCrashed:
                raise
            except ChannelError as exc:
                self._drop_channel(tab.handle, exc)
            else:
                return self._snapshot(tab, raw) if answered else None
        self._switch(tab.handle)
        try:
            raw = self._driver.execute_script(SNAPSHOT_JS, full)
        except NoSuchWindowException:
            raise
        except WebDriverException as exc:
            self._check_session(exc)
            if self._broken:
                raise
            log.debug("%s: snapshot failed (%s); trying again", tab.job.po, short(exc))
            return None
        return self._snapshot(tab, raw)

    def _snapshot(self, tab: PoRun, raw: Any) -> Snapshot:
        snap = Snapshot.from_js(raw)
        if is_web(snap.url):
            tab.last_url = snap.url
        return snap

    def _look_interval(self, tab: PoRun) -> float:
        return SOCKET_LOOK_INTERVAL if self._tab_pool.reader(tab.handle) else LOOK_INTERVAL

    def _drop_channel(self, handle: str, exc: ChannelError) -> None:
        """Read this tab over WebDriver from now on (commits through Target.getTargets); when
        the whole connection went down, only until it is open again."""
        self._tab_pool.drop_reader(handle, exc, retry=self._conn is not None and self._conn.closed)

    def _channel(self, handle: str) -> TabReader | None:
        """The tab's reader over its DevTools session, or None: read it over WebDriver."""
        if self._conn is None or self._conn.closed:
            return None
        return self._tab_pool.open_reader(handle, self._conn, self.config.coupa.page_timeout)

    def _ready_state(self) -> str:
        try:
            return str(self._driver.execute_script("return document.readyState"))
        except WebDriverException:
            return "loading"

    def _check_session(self, exc: WebDriverException) -> None:
        text = (exc.msg or str(exc)).lower()
        if isinstance(exc, InvalidSessionIdException) or any(m in text for m in _DEAD_SESSION):
            if not self._broken:
                log.error("the browser stopped working: %s", short(exc))
            self._broken = short(exc)


def _ignore(_answer: Any) -> None:
    pass


def is_web(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def short(exc: BaseException) -> str:
    """The first line of an error's message, at most 200 characters."""
    text = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
