"""Click downloads of POs in flight: the click, the browser's download events handed to it,
and running downloads judged done, failed, stalled or overdue.

Each tab clicks one attachment at a time and waits for its download to begin, so the events
the :class:`coupad.browser.downloads.DownloadRouter` attributes to a tab and an attachment key
name one :class:`coupad.browser.po.ClickDownload`. A click is a real mouse click dispatched
over the tab's DevTools session where the element is not covered, else the element's own
click; over WebDriver when the tab has no session. The books (:func:`route`, :func:`settle`)
take the time as a parameter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from selenium.common.exceptions import ElementClickInterceptedException, ElementNotInteractableException

from coupad.browser.cdp import CdpError
from coupad.browser.downloads import Began, Completed, DownloadRouter, Failed, Progress, Refused
from coupad.browser.po import ClickDownload, Planned, PoResult, PoRun
from coupad.browser.reader import ChannelError
from coupad.browser.tabops import LOOK_WAIT, TabOps
from coupad.download import is_sign_in_download
from coupad.page import CLICK_POINT_JS, CLICK_TARGET_JS, SCROLL_TO_CENTRE_JS, PageKind, classify

log = logging.getLogger("coupad.engine")

CLICK_START_TIMEOUT = 30.0  # a click must start its download within this (bounded by download_timeout)
# A click made before the DevTools connection was re-established may have begun its download
# meanwhile: that event went with the old connection (and the browser's download behaviour
# with it, so the file went elsewhere). Its start is awaited this long after the reconnect,
# then the PO is tried again, instead of the whole CLICK_START_TIMEOUT.
CLICK_START_AFTER_RECONNECT = 5.0
STALL_TIMEOUT = 120.0  # a browser download whose size does not move for this long has failed


def route(events: Iterable[object], runs: Iterable[PoRun], now: float) -> None:
    """Hand the browser's download events to the clicks they belong to."""
    by_handle = {r.handle: r for r in runs}
    for event in events:
        if isinstance(event, Refused):
            log.warning("a download no PO expected was cancelled (%s): %s",
                        event.suggested_name, event.reason)
            continue
        if not isinstance(event, (Began, Progress, Completed, Failed)):
            continue
        run = by_handle.get(event.tab_id)
        if run is None:
            continue
        download = run.click_of(event.key)
        if download is None:
            continue
        if isinstance(event, Began):
            download.guid = event.guid
            download.last_progress = now
            if run.clicking is download:
                run.clicking = None
                run.browser_downloads.append(download)
        elif isinstance(event, Progress):
            if event.received != download.last_bytes:
                download.last_bytes = event.received
                download.last_progress = now
        elif isinstance(event, Completed):
            download.done_path = event.path
            if run.clicking is download:
                run.clicking = None
                run.browser_downloads.append(download)
        elif isinstance(event, Failed):
            download.failed = event.reason
            if run.clicking is download:
                run.clicking = None
                run.browser_downloads.append(download)


def settle(run: PoRun, now: float, timeout: float, cancel: Callable[[str, str], None] | None) -> None:
    """File the run's finished browser downloads into its folder and fail the failed, stalled
    and overdue ones (``timeout``: ``coupa.download_timeout``), cancelling those in the
    browser with ``cancel(guid, why)``."""
    for download in list(run.browser_downloads):
        name = download.planned.attachment.name
        if download.done_path is not None:
            run.browser_downloads.remove(download)
            if is_sign_in_download(download.done_path, name):
                run.signed_out = f"{name or 'attachment'}: the download was a sign-in page"
                run.clicks.clear()
                download.done_path.unlink(missing_ok=True)
                continue
            assert run.folder is not None
            run.folder.add_file(
                download.done_path, name or "attachment", download.page_url,
                download.planned.source, download.planned.key,
            )
            continue
        if download.failed is not None:
            run.browser_downloads.remove(download)
            run.fail(f"{name}: the browser download failed ({download.failed})")
            continue
        stalled = now - download.last_progress > min(STALL_TIMEOUT, timeout)
        if stalled or now - download.clicked_at > timeout:
            run.browser_downloads.remove(download)
            why = "stalled" if stalled else f"took longer than {timeout:.0f} s"
            if cancel is not None and download.guid is not None:
                cancel(download.guid, why)
            run.fail(f"{name}: the browser download {why}")


class ClickOps(TabOps):
    """The engine's clicks, as a base class of :class:`coupad.engine.Engine`."""

    base: str  # the Coupa tenant's base URL
    _router: DownloadRouter | None  # click downloads, attributed by events

    def _start_click(self, tab: PoRun, planned: Planned, now: float) -> None:
        assert tab.folder is not None and planned.attachment.index is not None
        assert self._router is not None
        name = planned.attachment.name
        self._router.expect(tab.handle, planned.key)
        if not self._click_element(tab, planned):
            self._router.withdraw(tab.handle, planned.key)
            tab.fail(f"{name or 'attachment'}: it disappeared from the page before it was clicked")
            return
        if tab.downloads_started is None:
            tab.downloads_started = now
        tab.clicking = ClickDownload(planned, tab.last_url or tab.url, time.monotonic())

    def _click_element(self, tab: PoRun, planned: Planned) -> bool:
        """Click an attachment element: a real mouse click over the tab's session where the
        element is not covered (the floating toolbar), else the element's own click; over
        WebDriver when the tab has no session. False: the element is gone."""
        args = (planned.attachment.index, planned.attachment.name)
        channel = self._channel(tab.handle)
        if channel is not None and self._conn is not None:
            try:
                answered, point = channel.evaluate(CLICK_POINT_JS, *args, wait=LOOK_WAIT * 10)
            except ChannelError as exc:
                self._drop_channel(tab.handle, exc)
            else:
                if answered:
                    if not isinstance(point, dict):
                        return False
                    if "x" in point and "y" in point:
                        self._mouse_click(channel.session, float(point["x"]), float(point["y"]))
                    return True
        self._switch(tab.handle)
        element = self._driver.execute_script(CLICK_TARGET_JS, *args)
        if element is None:
            return False
        self._driver.execute_script(SCROLL_TO_CENTRE_JS, element)
        try:
            element.click()
        except (ElementClickInterceptedException, ElementNotInteractableException):
            # Something (the floating toolbar) covers the element: click it without the mouse.
            self._driver.execute_script("arguments[0].click();", element)
        return True

    def _mouse_click(self, session: str, x: float, y: float) -> None:
        assert self._conn is not None
        for kind in ("mousePressed", "mouseReleased"):
            self._conn.send("Input.dispatchMouseEvent",
                            {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
                            session=session, then=_ignore)

    def _await_click_start(self, tab: PoRun, now: float) -> PoResult | None:
        download = tab.clicking
        assert download is not None
        limit = min(CLICK_START_TIMEOUT, self.config.coupa.download_timeout)
        router = self._router
        if router is not None and router.reconnected_at > download.clicked_at:
            limit = min(limit, router.reconnected_at - download.clicked_at
                        + CLICK_START_AFTER_RECONNECT)
        if now - download.clicked_at < limit:
            return None  # its Began event moves it on (see _route_downloads)
        tab.clicking = None
        if self._router is not None:
            self._router.withdraw(tab.handle, download.planned.key)
        snap = self._look(tab, full=False)
        if snap is not None and classify(snap, self.base, tab.expected_path, settled=False).kind is PageKind.SIGNED_OUT:
            tab.signed_out = f"clicking {download.planned.attachment.name} led to the sign-in page"
            tab.clicks.clear()
        else:
            tab.fail(f"{download.planned.attachment.name}: clicking it started no download "
                     f"within {limit:.0f} s")
        return None

    def _route_downloads(self, now: float) -> None:
        """Hand the browser's download events to the clicks they belong to."""
        if self._router is None:
            return
        try:
            events = self._router.poll()
        except CdpError as exc:
            log.warning("reading download events failed: %s", exc)
            return
        route(events, self._runs, now)


def _ignore(_outcome: Any) -> None:
    """For commands whose answer does not matter (a mouse event)."""
