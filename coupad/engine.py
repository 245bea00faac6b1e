"""The PO engine: one browser, K tabs in flight, each PO a small state machine.

One thread drives WebDriver (Selenium calls are not concurrent). :meth:`Engine.poll`
advances every tab one step and returns the POs that finished, so a worker process can
interleave heartbeats and claims between polls. A tab goes through these stages:

``OPEN`` (waits for the politeness interval, then navigates) → ``LOAD`` (looks at the page
until it is classified: sign-in, throttled or a server error at once; not found, access
denied, an unexpected page or content only on evidence, below) → ``CLICKS`` (click-only
attachments; each tab clicks one at a time, the tabs independently) → optionally ``LOAD``
again for the requisition, in the same tab → ``DOWNLOADS`` (waits for direct fetches, which
run in a thread pool, and for browser downloads) → finished: the tab is kept for the next PO,
the folder renamed once when the outcome is final, and a :class:`PoResult` returned.

**One DevTools connection per browser** (:mod:`coupad.browser.cdp`): every tab is a
flattened session on it. Pages are read by evaluations sent over a tab's session
(:mod:`coupad.browser.reader`); clicks are mouse events dispatched there; cookies for the
direct fetcher come from ``Storage.getCookies``. Click downloads land in one staging folder
owned by :class:`coupad.browser.downloads.DownloadRouter`, which attributes each to the tab
(and so the PO) whose frame started it, from the browser's download events: no download
folder is switched per click, and no tab waits for another's download. Tabs are opened,
navigated and closed over the connection too; WebDriver signs in, and stands in for a tab
that has no session yet (just after a reconnect). A connection that is lost is opened again
and re-armed once; if that fails the engine is broken and its worker replaces the browser.

**Evidence before verdict.** An attachment list seen early proves nothing: a loaded page is
read only once it is idle or its list has stopped changing (:mod:`coupad.browser.evidence`).

**Permanent is permanent.** A download problem that no retry changes (see
:class:`coupad.download.DownloadProblem`) ends the PO at once, ``PARTIAL`` when some files are
on disk, ``FAILED`` otherwise; transient problems return ``ERROR`` and are retried with backoff.

Page loads never block: the browser uses page-load strategy "none", so ``get()`` returns at
once and readiness is a condition checked by the snapshot. Chromium holds back every command
sent to a tab until that tab's pending navigation commits, and WebDriver runs one command at
a time; so a tab is looked at only once its navigation has committed, which its session tells
by answering an evaluation, or, for a tab read over WebDriver, the browser-level
``Target.getTargets`` (a fresh tab keeps the title ``about:blank`` until its first document
commits). Several tabs therefore load, settle and download at the same time.

Tabs are reused, and a spare one is blanked after a while (:mod:`coupad.browser.tabops`; the
pool's books in :mod:`coupad.browser.tabs`): if one does not turn blank within
:data:`RESET_TIMEOUT` it is closed and replaced. The records of a PO and its outcome are in
:mod:`coupad.browser.po`, clicks and their downloads in :mod:`coupad.browser.clicks`, direct
fetches in :mod:`coupad.browser.fetches`. The browser is reached only through
:class:`coupad.browser.BrowserLike`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import select
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from selenium.common.exceptions import (
    NoSuchWindowException,
    WebDriverException,
)

from coupad.browser import BrowserLike
from coupad.browser.cdp import CdpError, Connection, ConnectionLost, browser_endpoint
from coupad.browser.fetches import FetchOps
from coupad.browser.heap import HeapSampler
from coupad.browser.evidence import evidence, next_look, note_list
from coupad.browser.clicks import ClickOps, settle
from coupad.browser.downloads import DownloadRouter
from coupad.browser.po import Outcome, Planned, PoJob, PoResult, PoRun, Stage
from coupad.browser.reader import ChannelError, TabCrashed
from coupad.browser.hub import grid_status, keepalive_interval
from coupad.browser.remote import GridDownloadRouter, RemoteBrowser, profile_cookies
from coupad.browser.tabops import BLANK, LOOK_INTERVAL, SPARE_IDLE, is_web, short
from coupad.browser.tabs import TabPool, TabState
from coupad.config import Config
from coupad.download import (
    DirectFetcher,
)
from coupad.errors import BrowserError, CoupadError, StartStopped
from coupad.folders import STAGING, PoFolder
from coupad.page import (
    PageKind,
    Snapshot,
    Verdict,
    classify,
)
from coupad.signin import form_sign_in, read_password
from coupad.urls import is_sign_in_page
from coupad.throttle import free_tabs

__all__ = ["Engine", "HasFileno", "Outcome", "PoJob", "PoResult"]

log = logging.getLogger("coupad.engine")

# The commit probe: null from a retired document, the URL from any other.
COMMIT_PROBE_JS = "return window.__coupadRetired ? null : String(location.href);"
PROBE_AGAIN = 0.01  # a commit probe answered by the blank page is sent again after this
COOKIE_MAX_AGE = 10.0  # the fetcher's copy of the cookies is refreshed before use when older
RESET_TIMEOUT = 5.0  # a tab sent to about:blank must be blank within this, or it is replaced


class HasFileno(Protocol):
    """Something ``select`` can wait on (a pipe end, a socket, a multiprocessing Connection)."""

    def fileno(self) -> int: ...


class Engine(ClickOps, FetchOps):
    """One browser with up to ``tabs`` POs in flight (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        browser_factory: Callable[[], BrowserLike],
        tabs: int = 1,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        if tabs < 1:
            raise ValueError("an engine needs at least one tab")
        self.config = config
        self.base = config.coupa.require_base_url()
        self.tabs = tabs
        self.browser: BrowserLike | None = None
        self._factory = browser_factory
        self._stopping = stopping  # asked to stop: :meth:`start` ends once the browser is up
        self._runs: list[PoRun] = []
        self._home = ""
        self._current = ""
        self._fetcher: DirectFetcher | None = None
        self._user_agent: str | None = None
        self._cookies_at = 0.0  # when the direct fetcher's cookies were copied from the browser
        self._fetch_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(4, 2 * tabs), thread_name_prefix="coupad-fetch"
        )
        self._tab_pool = TabPool()  # the open tabs, busy and spare, with their readers
        self.reset_timeout = RESET_TIMEOUT
        # A direct fetch that ends wakes the engine; a socket pair, so that a fetch thread
        # ending after close() meets a closed socket, never a reused file descriptor.
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._conn: Connection | None = None  # the browser's one DevTools connection
        self._router: DownloadRouter | None = None  # click downloads, attributed by events
        self._staging: Path | None = None  # where the browser writes click downloads
        self._last_navigation = 0.0
        self._broken: str | None = None
        # How often an idle remote browser is pinged (None: a local browser needs no ping).
        self.keepalive: float | None = None
        self._last_ping = 0.0
        self._heap: HeapSampler | None = None  # a remote browser's memory, as it reports it

    # ---- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Launch the browser and, with ``sign_in = "form"``, sign in on Coupa's form."""
        self.browser = self._factory()
        if self._stopping():
            raise StartStopped("asked to stop while the browser was starting")
        self._home = self._driver.current_window_handle
        self._current = self._home
        self._user_agent = str(self._driver.execute_script("return navigator.userAgent"))
        self._connect()
        if isinstance(self.browser, RemoteBrowser):
            try:
                timeout = grid_status(self.browser.grid_url).session_timeout
            except BrowserError as exc:
                log.info("the Grid's session time-out is unknown (%s)", exc)
                timeout = None
            self.keepalive = keepalive_interval(timeout)
            self._heap = HeapSampler()
            if self.config.coupa.sign_in == "profile":
                self._carry_profile(self.browser)
        if self._stopping():
            raise StartStopped("asked to stop before signing in")
        if self.config.coupa.sign_in == "form":
            self.sign_in()
        self._open_spare_tabs()

    def _carry_profile(self, browser: RemoteBrowser) -> None:
        """Profile sign-in on Grid: the base profile is on this machine, its cookies are set in
        the remote browser (see :mod:`coupad.browser.remote`)."""
        assert self._conn is not None
        cookies = profile_cookies(self.config.paths.base_profile, browser.spec)
        if not cookies:
            log.warning("the base profile %s holds no cookies: run `coupad login`",
                        self.config.paths.base_profile)
            return
        try:
            self._conn.call("Storage.setCookies", {"cookies": cookies})
        except CdpError as exc:
            raise BrowserError(f"the base profile's sign-in could not be carried to the remote "
                               f"browser: {exc}") from None
        log.info("carried the base profile's sign-in (%d cookies) to the remote browser",
                 len(cookies))

    def _open_spare_tabs(self) -> None:
        """Open the engine's ``tabs`` tabs, blank and with their readers, before the first PO:
        the first POs of a batch then start at once instead of each waiting for its tab to be
        opened and set up on the engine's one thread."""
        now = time.monotonic()
        for _ in range(self.tabs):
            handle = self._new_tab()
            self._channel(handle)
            self._tab_pool.release(handle, now, TabState.READY)

    def close(self) -> None:
        """Quit the browser and its process group; in-flight POs are dropped."""
        self._fetch_threads.shutdown(wait=False, cancel_futures=True)
        if self._fetcher is not None:
            self._fetcher.close()
        self._runs.clear()
        self._tab_pool.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._staging is not None:
            _remove(self._staging)
        self._wakeup_r.close()
        self._wakeup_w.close()
        if self.browser is not None:
            self.browser.quit()
            self.browser = None

    def _connect(self) -> None:
        """Open the browser's one DevTools connection, attach its tabs and own its downloads.

        Without it (no endpoint known) a click download could not be attributed to its PO:
        such a browser is refused rather than used wrongly.
        """
        endpoint = browser_endpoint(self._driver)
        if endpoint is None:
            raise BrowserError("the browser's DevTools endpoint is unknown")
        try:
            self._conn = Connection(endpoint)
            self._conn.attach_tabs()
            spec = getattr(self.browser, "spec", None)
            base = Path(spec.download_dir) if spec is not None else self.config.paths.state
            self._staging = base / f"incoming-{uuid.uuid4().hex[:8]}"
            self._staging.mkdir(parents=True, exist_ok=True)
            if isinstance(self.browser, RemoteBrowser):
                self._router = GridDownloadRouter(self._conn, self._staging, self.browser)
            else:
                self._router = DownloadRouter(self._conn, self._staging)
            self._router.arm()
        except CdpError as exc:
            raise BrowserError(f"cannot open the browser's DevTools connection: {exc}") from None

    def _pump(self) -> None:
        """Read the connection; a lost one is opened again and re-armed once, else the browser
        is broken (its worker replaces it) — never a hung worker."""
        if self._conn is None or self._broken:
            return
        try:
            self._conn.pump(0)
            return
        except ConnectionLost as exc:
            log.warning("the DevTools connection was lost (%s); opening it again", exc)
        except CdpError as exc:
            log.debug("DevTools: %s", exc)
            return
        try:
            self._conn.reconnect()
        except CdpError as exc:
            self._broken = f"the DevTools connection cannot be opened again: {exc}"
            log.error("%s", self._broken)

    def sign_in(self) -> bool:
        """Sign in again (form mode) or check the profile's session; True when signed in.

        Raises :class:`coupad.signin.SignInFailed` when Coupa refuses the form sign-in.
        """
        coupa = self.config.coupa
        if coupa.sign_in == "form":
            try:
                return self._form_sign_in()
            except WebDriverException as exc:
                # A page replaced under a command is not a refusal: one more try.
                self._check_session(exc)
                if self._broken:
                    raise BrowserError(f"sign-in failed in the browser: {short(exc)}") from None
                log.warning("sign-in hit a browser error (%s); trying again", short(exc))
            try:
                return self._form_sign_in()
            except WebDriverException as exc:
                self._check_session(exc)
                raise BrowserError(f"sign-in failed in the browser: {short(exc)}") from None
        self._switch(self._home)
        self._driver.get(f"{self.base}/user/home")
        deadline = time.monotonic() + coupa.page_timeout
        while time.monotonic() < deadline:
            url = str(self._driver.current_url)
            if is_sign_in_page(url, self.base):
                return False
            if urlsplit(url).scheme in ("http", "https") and self._ready_state() == "complete":
                self._refresh_cookies(self._home)
                return True
            time.sleep(LOOK_INTERVAL)
        return False

    def _form_sign_in(self) -> bool:
        coupa = self.config.coupa
        password = read_password(coupa.password_file)
        self._switch(self._home)
        form_sign_in(self._driver, self.base, coupa.username, password, timeout=coupa.page_timeout)
        self._refresh_cookies(self._home)
        return True

    @property
    def reported_memory_mb(self) -> float | None:
        """A remote browser's memory as its tabs report it (:mod:`coupad.browser.heap`), for
        recycling; None for a local browser, whose processes the daemon measures."""
        return None if self._heap is None else self._heap.mb

    @property
    def broken(self) -> str | None:
        """Why the browser cannot be used any more (its worker replaces it), or None."""
        return self._broken

    def _keep_alive(self, now: float) -> None:
        """Ping an idle remote browser over its connection so that the node's session-timeout
        does not end it (DevTools traffic counts as activity on Grid); a session that is gone
        shows here as a lost connection, and the engine as broken, before a PO is given to it."""
        if (self.keepalive is None or self._runs or self._conn is None or self._broken
                or now - self._last_ping < self.keepalive):
            return
        self._last_ping = now
        try:
            self._conn.call("Browser.getVersion", timeout=min(10.0, self.keepalive))
        except ConnectionLost as exc:
            log.warning("the remote browser's connection was lost while idle (%s)", exc)
            self._conn.close()
        except CdpError as exc:
            log.warning("the remote browser did not answer while idle (%s)", exc)
            self._conn.close()
        if self._conn.closed:
            self._pump()  # opens it again, or marks the engine broken

    @property
    def busy(self) -> int:
        """POs in flight."""
        return len(self._runs)

    @property
    def watching(self) -> frozenset[str]:
        """Keys of the POs that only watch their loaded page for evidence (see PoRun.watching)."""
        return frozenset(t.job.key for t in self._runs if t.watching)

    @property
    def max_tabs(self) -> int:
        """POs in flight at most: ``tabs`` working, and ``pool.watching_tabs`` more watching."""
        return self.tabs + self.config.pool.watching_tabs

    @property
    def room(self) -> int:
        """How many more POs :meth:`submit` accepts now: up to ``tabs`` working at once, and
        as many more as only watch their pages, up to ``pool.watching_tabs`` of them."""
        if self.browser is None or self._broken:
            return 0
        watching = sum(1 for t in self._runs if t.watching)
        return free_tabs(self.tabs, self.config.pool.watching_tabs, len(self._runs), watching)

    def submit(self, job: PoJob) -> None:
        """Start a PO now, in a spare tab (a blank one first) or a new one."""
        if self.browser is None:
            raise BrowserError("the engine has not been started")
        if self._broken:
            raise BrowserError(f"the browser stopped working: {self._broken}")
        if len(self._runs) >= self.max_tabs:
            raise BrowserError(f"all {self.max_tabs} tabs are busy")
        now = time.monotonic()
        budget = job.deadline_s if job.deadline_s is not None else self.config.tasks.po_timeout
        url = f"{self.base}/order_headers/{job.po.digits}"
        handle, navigable, blanked_at = self._take_tab()
        tab = PoRun(job=job, handle=handle, submitted=now, deadline=now + budget, navigable=navigable,
                  blanked_at=blanked_at, url=url, expected_path=urlsplit(url).path)
        self._runs.append(tab)
        log.debug("%s: started in tab %s", job.po, handle)

    def _take_tab(self) -> tuple[str, bool, float]:
        """A tab for a new PO: (handle, whether it may navigate now, when it was released)."""
        while (spare := self._tab_pool.take()) is not None:
            if self._conn is None or not self._conn.targets.crashed(spare[0]):
                return spare
            log.info("spare tab %s crashed; closing it", spare[0])
            self._close_handle(spare[0])
        try:
            return self._new_tab(), True, time.monotonic()
        except WebDriverException as exc:
            self._check_session(exc)
            raise BrowserError(f"could not open a tab: {short(exc)}") from None

    def poll(self, max_wait: float = 0.05, wake: HasFileno | None = None) -> list[PoResult]:
        """Advance every tab; return the POs that finished, waiting up to ``max_wait``.

        While nothing is due the engine sleeps in one ``select``: on the end of a direct
        fetch, news on the browser's DevTools connection (a commit, a download event), the
        next look due, or ``wake`` becoming readable (a worker passes its pipe to the
        daemon): then the engine returns at once, so the caller sees its news. Idle, it
        waits ``max_wait``; it never spins.
        """
        until = time.monotonic() + max_wait
        while True:
            results: list[PoResult] = []
            self._pump()
            self._keep_alive(time.monotonic())
            if self._heap is not None and self._conn is not None:
                self._heap.sample(self._conn, time.monotonic())
            self._route_downloads(time.monotonic())
            self._note_commits()
            self._blank_idle(time.monotonic())
            # Tabs about to navigate go first: their server time starts when they do.
            for tab in sorted(self._runs, key=lambda t: t.stage is not Stage.OPEN):
                result = self._step(tab)
                if result is not None:
                    results.append(result)
            now = time.monotonic()
            if results or now >= until:
                return results
            due = min(until, self._next_due()) if self._runs else until
            if self._wait(due - now, wake):
                return results

    def abort_all(self, reason: str) -> list[PoResult]:
        """End every PO in flight as retryable (folders stay ``__WORK``), for shutdown."""
        results = []
        for tab in list(self._runs):
            for future in tab.fetches:
                future.cancel()
            tab.fetches.clear()
            tab.browser_downloads.clear()
            tab.clicking = None
            results.append(self._finish(tab, Outcome.ERROR, f"stopped before the end: {reason}"))
        return results

    def run(self, jobs: Iterable[PoJob]) -> Iterator[PoResult]:
        """Process ``jobs`` with every tab busy; yield results as POs finish."""
        pending = iter(jobs)
        exhausted = False
        while True:
            while not exhausted and self.room > 0:
                job = next(pending, None)
                if job is None:
                    exhausted = True
                else:
                    self.submit(job)
            if exhausted and not self._runs:
                return
            if self._broken and not self._runs:
                raise BrowserError(f"the browser stopped working: {self._broken}")
            yield from self.poll(0.05)

    # ---- one step of one tab ------------------------------------------------------------

    def _step(self, tab: PoRun) -> PoResult | None:
        now = time.monotonic()
        if self._broken:
            return self._finish(tab, Outcome.ERROR, f"the browser stopped working: {self._broken}")
        try:
            self._collect_fetches(tab)
            if now > tab.deadline:
                budget = tab.deadline - tab.submitted
                return self._finish(tab, Outcome.TIMEOUT, f"the PO took longer than {budget:.0f} s")
            if tab.stage is Stage.OPEN:
                return self._open(tab, now)
            if tab.stage is Stage.LOAD:
                return self._load(tab, now)
            if tab.stage is Stage.CLICKS:
                return self._click(tab, now)
            return self._downloads(tab, now)
        except NoSuchWindowException:
            return self._finish(tab, Outcome.ERROR, "the tab closed or crashed", close=False)
        except TabCrashed:
            log.warning("%s: the tab crashed", tab.job.po)
            try:
                self._close_handle(tab.handle)
            except WebDriverException as exc:
                self._check_session(exc)
            return self._finish(tab, Outcome.ERROR, "the tab crashed", close=False)
        except WebDriverException as exc:
            self._check_session(exc)
            if self._broken:
                return self._finish(tab, Outcome.ERROR, f"the browser stopped working: {self._broken}")
            log.warning("%s: browser error: %s", tab.job.po, short(exc))
            return self._finish(tab, Outcome.ERROR, f"browser error: {short(exc)}")
        except (CoupadError, OSError) as exc:
            log.warning("%s: %s", tab.job.po, exc)
            return self._finish(tab, Outcome.ERROR, str(exc))

    def _open(self, tab: PoRun, now: float) -> PoResult | None:
        if not tab.navigable:
            if now - tab.blanked_at > self.reset_timeout:
                log.info("%s: tab %s did not turn blank within %.0f s; using a new tab",
                         tab.job.po, tab.handle, self.reset_timeout)
                old = tab.handle
                tab.handle = self._new_tab()
                tab.navigable = True
                self._close_handle(old)
            return None
        interval = self.config.coupa.min_request_interval
        if interval and now - self._last_navigation < interval:
            return None
        self._navigate(tab, tab.url, tab.target, now)
        return None

    def _navigate(self, tab: PoRun, url: str, target: str, now: float) -> None:
        """Load ``url`` in the tab, which must be navigable (see the module docstring)."""
        channel = self._tab_pool.reader(tab.handle)
        if channel is not None:
            channel.forget()  # nothing read before this navigation may stand for its page
        tab.navigable = False
        tab.target = target
        tab.url = url
        tab.expected_path = urlsplit(url).path
        tab.nav_at = now
        tab.committed = False
        tab.ready_at = None
        tab.list_sig = None
        tab.list_changed_at = 0.0
        tab.look_at = 0.0
        tab.stage = Stage.LOAD
        self._last_navigation = now
        self._go(tab.handle, url)
        self._commit_answered(tab, now)  # sends the probe now, so its answer wakes the engine

    def _commit_answered(self, tab: PoRun, now: float) -> None:
        """Ask the tab's DevTools socket for its URL (Chromium answers once the navigation has
        committed, which wakes the engine then) and mark the tab committed once the answer is
        a URL other than a blank or retired document's; a probe answered before the
        navigation began is sent again."""
        channel = self._channel(tab.handle)
        if channel is None:
            return
        try:
            if channel.pending is None:
                if now < tab.look_at:
                    return
                channel.send(COMMIT_PROBE_JS)
            answered, url = channel.collect()
        except TabCrashed:
            raise
        except ChannelError as exc:
            self._drop_channel(tab.handle, exc)
            return
        if not answered:
            return
        if url is not None and url != BLANK:
            tab.committed = True
            tab.look_at = 0.0
        else:
            tab.look_at = now + PROBE_AGAIN

    def _to_requisition(self, tab: PoRun, now: float) -> None:
        """Continue in the same tab on the requisition, once it is navigable; downloads already
        started go on (they belong to the browser, not to the page)."""
        tab.navigable = self._retire(tab.handle)
        if not tab.navigable:
            self._blank_tab(tab.handle)
        tab.blanked_at = now
        tab.target = "requisition"
        tab.url = f"{self.base}/requisition_headers/{tab.requisition_id}"
        tab.expected_path = urlsplit(tab.url).path
        tab.stage = Stage.OPEN

    def _load(self, tab: PoRun, now: float) -> PoResult | None:
        if not tab.committed:
            self._commit_answered(tab, now)
        if not tab.committed or now < tab.look_at:
            return self._load_timeouts(tab, now)
        snap = self._look(tab, full=False)
        if snap is None:
            tab.look_at = now + self._look_interval(tab)
            return self._load_timeouts(tab, now)
        on_po = tab.target == "po"
        tab.page_requests = snap.hook is None or snap.hook.inflight > 0
        if snap.ready_state == "complete" and tab.ready_at is None and is_web(snap.url):
            tab.ready_at = now
            if on_po:
                tab.time("page", now - tab.nav_at)
        note_list(tab, snap, now)
        verdict = classify(snap, self.base, tab.expected_path, settled=False)
        if verdict.kind is not PageKind.LOADING:
            return self._on_verdict(tab, snap, verdict)  # decisive at once: sign-in, 429, 5xx
        if tab.ready_at is None:
            tab.look_at = now + self._look_interval(tab)
            return self._load_timeouts(tab, now)
        coupa = self.config.coupa
        settle_timeout = coupa.settle_timeout
        why = evidence(tab, snap, now, window=coupa.late_list_window, settle_timeout=settle_timeout)
        if why is None:
            if now - tab.ready_at > settle_timeout:
                return self._stop(tab, Outcome.ERROR, (
                    f"the {'requisition' if not on_po else 'PO'} page's attachment list was "
                    f"still changing {settle_timeout:.0f} s after the page loaded"))
            tab.look_at = now + next_look(tab, snap, now, window=coupa.late_list_window,
                                          look_interval=self._look_interval(tab))
            return None
        started = time.monotonic()
        full = self._look(tab, full=True)
        if full is None:
            return None
        if full.list_sig != tab.list_sig:
            note_list(tab, full, now)  # it changed under the look: watch on
            tab.look_at = now + self._look_interval(tab)
            return None
        if on_po:
            tab.time("settle", now - tab.ready_at)
            tab.time("discovery", time.monotonic() - started)
        log.debug("%s: %s page read (%s) %.2f s after load with %d attachments", tab.job.po,
                  tab.target, why, now - tab.ready_at, len(full.attachments))
        hook = full.hook
        if hook is not None and hook.failed:
            # Part of the page did not load: what it shows is no evidence of what it has.
            outcome = Outcome.THROTTLED if hook.failure.startswith("HTTP 429") else Outcome.SERVER_ERROR
            return self._stop(tab, outcome, f"the page could not load part of itself ({hook.failure})")
        verdict = classify(full, self.base, tab.expected_path, settled=True)
        if verdict.kind is PageKind.LOADING:
            tab.look_at = now + self._look_interval(tab)
            return self._load_timeouts(tab, now)
        result = self._on_verdict(tab, full, verdict)
        if result is None and tab.stage is Stage.CLICKS:
            return self._click(tab, now)  # go on at once: no poll round between the stages
        return result

    def _load_timeouts(self, tab: PoRun, now: float) -> PoResult | None:
        if tab.ready_at is None and now - tab.nav_at > self.config.coupa.page_timeout:
            what = "the requisition page" if tab.target == "requisition" else "the PO page"
            return self._finish(
                tab, Outcome.TIMEOUT,
                f"{what} did not load within {self.config.coupa.page_timeout:.0f} s",
            )
        return None

    def _on_verdict(self, tab: PoRun, snap: Snapshot, verdict: Verdict) -> PoResult | None:
        kind = verdict.kind
        on_requisition = tab.target == "requisition"
        prefix = f"requisition {tab.requisition_id}: " if on_requisition else ""
        if kind is PageKind.SIGNED_OUT:
            return self._stop(tab, Outcome.SIGNED_OUT, prefix + verdict.reason)
        if kind in (PageKind.THROTTLED, PageKind.SERVER_ERROR, PageKind.UNEXPECTED):
            outcome = {PageKind.THROTTLED: Outcome.THROTTLED,
                       PageKind.SERVER_ERROR: Outcome.SERVER_ERROR}.get(kind, Outcome.ERROR)
            return self._stop(tab, outcome, prefix + verdict.reason)
        if kind in (PageKind.NOT_FOUND, PageKind.ACCESS_DENIED):
            if on_requisition:
                # The PO's own files stand; a requisition the user cannot see adds nothing.
                tab.notes.append(prefix + verdict.reason)
                tab.time("requisition", time.monotonic() - tab.nav_at)
                tab.stage = Stage.DOWNLOADS
                return None
            outcome = Outcome.NOT_FOUND if kind is PageKind.NOT_FOUND else Outcome.ACCESS_DENIED
            return self._finish(tab, outcome, verdict.reason)
        return self._on_content(tab, snap)

    def _on_content(self, tab: PoRun, snap: Snapshot) -> PoResult | None:
        if any(a.url for a in snap.attachments) and (
            time.monotonic() - self._cookies_at > COOKIE_MAX_AGE
        ):
            self._refresh_cookies(tab.handle)  # a fetch refused as signed out refreshes too
        if tab.target == "po":
            tab.supplier = snap.supplier
            tab.folder = PoFolder.open(self.config.paths.downloads, tab.job.po, self._group(tab))
            mode = self.config.coupa.requisition_attachments
            wanted = mode == "always" or (mode == "when_po_has_none" and not snap.attachments)
            if wanted and snap.requisitions:
                tab.requisition_id = snap.requisitions[0]
        else:
            tab.time("requisition", time.monotonic() - tab.nav_at)
        source = tab.target
        for attachment in snap.attachments:
            planned = Planned(attachment, source)
            tab.planned.append(planned)
            if tab.folder is not None and tab.folder.entry_for(planned.key) is not None:
                continue  # on disk from an earlier attempt
            if attachment.url:
                self._start_fetch(tab, planned)
            else:
                tab.clicks.append(planned)
        tab.stage = Stage.CLICKS
        log.debug("%s: %s page has %d attachments", tab.job.po, source, len(snap.attachments))
        return None

    def _group(self, tab: PoRun) -> str | None:
        if self.config.downloads.group_by == "supplier":
            return tab.supplier
        return None

    # ---- clicks and downloads -----------------------------------------------------------

    def _click(self, tab: PoRun, now: float) -> PoResult | None:
        # One click at a time per tab awaits its download's start, so the browser's events
        # say which attachment each download is; the tabs click independently.
        if tab.clicking is not None:
            return self._await_click_start(tab, now)
        while tab.clicks:
            planned = tab.clicks.popleft()
            if tab.folder is not None and tab.folder.entry_for(planned.key) is not None:
                continue
            self._start_click(tab, planned, now)
            return None
        if tab.target == "po" and tab.requisition_id is not None and tab.signed_out is None:
            self._to_requisition(tab, now)
            return None
        tab.stage = Stage.DOWNLOADS
        return self._downloads(tab, now)

    def _downloads(self, tab: PoRun, now: float) -> PoResult | None:
        cancel = self._router.cancel if self._router is not None else None
        settle(tab, now, self.config.coupa.download_timeout, cancel)
        return self._finish_when_idle(tab)

    # ---- the end of a PO ----------------------------------------------------------------

    def _stop(self, tab: PoRun, outcome: Outcome, reason: str) -> PoResult | None:
        """A page ended the PO: start nothing more, finish once running downloads end."""
        tab.clicks.clear()
        tab.requisition_id = None
        tab.stage = Stage.DOWNLOADS
        if outcome is Outcome.SIGNED_OUT:
            tab.signed_out = reason
        else:
            tab.page_outcome = outcome
            tab.page_reason = reason
        return self._finish_when_idle(tab)

    def _finish_when_idle(self, tab: PoRun) -> PoResult | None:
        """Finish the PO once nothing of it is still clicking or downloading."""
        if not tab.idle:
            return None
        if tab.downloads_started is not None:
            tab.time("downloads", time.monotonic() - tab.downloads_started)
        outcome, reason = tab.ending()
        return self._finish(tab, outcome, reason)

    def _finish(self, tab: PoRun, outcome: Outcome, reason: str, *, close: bool = True) -> PoResult:
        if tab in self._runs:
            self._runs.remove(tab)
        if self._router is not None:
            self._router.forget(tab.handle)  # cancels what it still had running
        final_url = tab.last_url or tab.url
        if close and not self._broken:
            self._release_tab(tab)
        folder_path: Path | None = tab.folder.path if tab.folder is not None else None
        for download in tab.browser_downloads:
            if download.done_path is not None:
                download.done_path.unlink(missing_ok=True)
        if tab.folder is not None and not outcome.final:
            _remove_if_empty(tab.folder.path / STAGING)
        if outcome.final:
            started = time.monotonic()
            folder = tab.folder or PoFolder.open(self.config.paths.downloads, tab.job.po)
            folder_path = folder.finalize(outcome.value)
            tab.time("finalize", time.monotonic() - started)
        tab.time("total", time.monotonic() - tab.submitted)
        result = tab.result(outcome, reason, folder_path, final_url)
        log.info("%s %s: %d/%d files in %.1f s%s", tab.job.po, outcome.value, result.downloaded,
                 len(tab.planned), tab.timings["total"], f" ({reason})" if reason else "")
        return result

    def _next_due(self) -> float:
        due = [t.look_at for t in self._runs if t.stage is Stage.LOAD and (t.committed or (
            (channel := self._tab_pool.reader(t.handle)) is not None and channel.pending is None))]
        # A tab waiting to turn blank is asked about often: the next PO waits for it.
        due += [time.monotonic() + PROBE_AGAIN for t in self._runs if t.stage is Stage.OPEN and not t.navigable]
        due += [t.released + SPARE_IDLE for t in self._tab_pool.in_state(TabState.RETIRED)]
        return min(due) if due else time.monotonic() + LOOK_INTERVAL

    def _wait(self, seconds: float, wake: HasFileno | None) -> bool:
        """Wait up to ``seconds`` (see :meth:`poll`); True when ``wake`` has news."""
        if seconds <= 0:
            return False
        fds: list[Any] = [self._wakeup_r] if self._wakeup_r.fileno() >= 0 else []
        if self._conn is not None and not self._conn.closed:
            # Answers (a commit, a look) and download events wake the engine.
            try:
                fds.append(self._conn.fileno())
            except CdpError:
                pass  # the next pump reconnects
        news = wake.fileno() if wake is not None else None
        if news is not None:
            fds.append(news)
        ready, _, _ = select.select(fds, [], [], seconds)
        if self._wakeup_r in ready:
            try:
                self._wakeup_r.recv(4096)
            except OSError:
                pass
        return news is not None and news in ready


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # absent, or a download thread still owns a staging folder: the next open sweeps it
