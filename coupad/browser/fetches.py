"""Direct fetches of a PO's attachments that have URLs, in a thread pool, with the browser's
Coupa cookies (HttpOnly included) copied into the :class:`coupad.download.DirectFetcher`.

A fetch that ends wakes the engine through its socket pair; a fetch refused as signed out is
tried once more with freshly copied cookies, since the session cookie may have been renewed.
"""

from __future__ import annotations

import concurrent.futures
import logging
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from coupad.browser.cdp import CdpError
from coupad.browser.po import Planned, PoRun
from coupad.browser.tabops import LOOK_WAIT, TabOps
from coupad.download import DirectFetcher, DownloadError, Fetched
from coupad.errors import SignInRequired

log = logging.getLogger("coupad.engine")


class FetchOps(TabOps):
    """The engine's direct fetches, as a base class of :class:`coupad.engine.Engine`."""

    base: str  # the Coupa tenant's base URL
    _fetcher: DirectFetcher | None
    _user_agent: str | None  # the browser's, sent by the fetcher too
    _cookies_at: float  # when the direct fetcher's cookies were copied from the browser
    _fetch_threads: concurrent.futures.ThreadPoolExecutor
    _wakeup_w: socket.socket  # a byte written here wakes the engine

    def _start_fetch(self, tab: PoRun, planned: Planned) -> None:
        assert tab.folder is not None and planned.attachment.url is not None
        if self._fetcher is None:
            self._refresh_cookies(tab.handle)
        fetcher = self._fetcher
        assert fetcher is not None
        if tab.downloads_started is None:
            tab.downloads_started = time.monotonic()
        staging = tab.folder.staging_dir("fetch")
        deadline = min(tab.deadline, time.monotonic() + self.config.coupa.download_timeout)
        future = self._fetch_threads.submit(fetcher.fetch, planned.attachment.url, staging, deadline)
        future.add_done_callback(self._poke)
        tab.fetches[future] = (planned, staging)

    def _collect_fetches(self, tab: PoRun) -> None:
        for future in [f for f in tab.fetches if f.done()]:
            planned, staging = tab.fetches.pop(future)
            try:
                self._store_fetch(tab, planned, future)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _store_fetch(self, tab: PoRun, planned: Planned, future: concurrent.futures.Future[Fetched]) -> None:
        name = planned.attachment.name or planned.attachment.url or "attachment"
        try:
            fetched = future.result()
        except SignInRequired as exc:
            if planned.key not in tab.refetched:
                # The session cookie may have been renewed since it was copied: once more.
                tab.refetched.add(planned.key)
                self._refresh_cookies(tab.handle)
                self._start_fetch(tab, planned)
            else:
                tab.signed_out = f"{name}: {exc}"
            return
        except DownloadError as exc:
            tab.fail(f"{name}: {exc}", exc.retry_after, permanent=not exc.retryable)
            return
        except concurrent.futures.CancelledError:
            return
        except Exception as exc:  # a worker thread must never take the PO down silently
            log.warning("%s: download of %s failed: %s", tab.job.po, name, exc)
            tab.fail(f"{name}: {exc}")
            return
        assert tab.folder is not None
        original = fetched.filename or planned.attachment.name or Path(fetched.path).name
        tab.folder.add_file(
            fetched.path, original, fetched.url, planned.source, planned.key, sha256=fetched.sha256
        )

    def _refresh_cookies(self, handle: str) -> None:
        """Copy the browser's Coupa cookies (HttpOnly included) into the direct fetcher.

        Read over the browser connection (``Storage.getCookies``: every cookie of the browser,
        whatever the tab shows), else over WebDriver from the tab; the fetcher keeps only the
        Coupa site's.
        """
        cookies: list[dict[str, Any]] | None = None
        if self._conn is not None and not self._conn.closed:
            try:
                answer = self._conn.call("Storage.getCookies", timeout=LOOK_WAIT * 20)
                found = answer.get("cookies") if isinstance(answer, dict) else None
                if isinstance(found, list):
                    cookies = [_webdriver_cookie(c) for c in found if isinstance(c, dict)]
            except CdpError as exc:
                log.debug("cookies over DevTools failed (%s); asking WebDriver", exc)
        if cookies is None:
            self._switch(handle)
            cookies = self._driver.get_cookies()
        self._cookies_at = time.monotonic()
        if self._fetcher is None:
            self._fetcher = DirectFetcher(
                self.base,
                cookies,
                timeout=min(60.0, self.config.coupa.download_timeout),
                user_agent=self._user_agent,
            )
        else:
            self._fetcher.update_cookies(cookies)

    def _poke(self, _future: Any = None) -> None:
        try:
            self._wakeup_w.send(b"x")
        except OSError:
            pass  # a byte is already waiting, or the engine is closed


def _webdriver_cookie(cookie: dict[str, Any]) -> dict[str, Any]:
    """A DevTools cookie in WebDriver's shape (what DirectFetcher.update_cookies reads)."""
    shaped = {k: cookie.get(k) for k in ("name", "value", "domain", "path", "secure")}
    expires = cookie.get("expires")
    if isinstance(expires, (int, float)) and expires > 0 and not cookie.get("session"):
        shaped["expiry"] = int(expires)
    return shaped
