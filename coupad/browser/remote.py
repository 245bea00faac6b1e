"""Browsers on Selenium Grid 4: a remote session under the same engine as a local browser.

Grid does the distributed part — session queueing, node registration, routing — and coupad
only asks it for sessions. A :class:`RemoteBrowser` is a ``webdriver.Remote`` session with an
HTTP time-out on every call (``browser.grid_timeout``); the engine opens its one DevTools
connection from the session's ``se:cdp`` capability (:func:`coupad.browser.wire.browser_endpoint`),
so pages are read, tabs opened and clicks dispatched exactly as locally. What differs:

- **Files.** Linked attachments are fetched by the worker itself, with the browser's cookies
  read over the connection (``Storage.getCookies``). Click-only ones land on the node, in the
  session's managed-downloads folder (``se:downloadsEnabled``): the engine's download router
  learns the node-side path from the ``completed`` event and :meth:`RemoteBrowser.bring`
  copies the file here, into the same staging folder a local browser writes to.
- **Ownership.** Every session carries the capability ``coupad:instance`` (one value per
  state folder) and ``coupad:worker``, which Grid echoes in ``/status``:
  :func:`coupad.browser.hub.sweep_sessions` ends the sessions a killed worker or daemon left
  behind, never anybody else's.
- **No local processes.** :meth:`RemoteBrowser.pids` is empty: memory recycling reads what
  the tabs report of their heaps (:mod:`coupad.browser.heap`) instead of local PSS, and
  ``pool.recycle_after_pos`` still bounds a session.
- **Profile sign-in** (``coupa.sign_in = "profile"``, SSO): the base profile lives on this
  machine, so :func:`profile_cookies` reads its cookies in a short-lived local Chromium and
  the engine sets them in the remote browser over its connection (``Storage.setCookies``)
  before the first PO. Cookie values are never logged.
- **Session life.** A node drops a session ``session-timeout`` after its last command; DevTools
  traffic counts. :func:`coupad.browser.hub.keepalive_interval` says how often an idle engine must ping.

A user name and password in ``grid_url`` (Grid's basic authentication) are sent to the Grid
and never written to a log: :func:`coupad.config.redact_url`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import SessionNotCreatedException, WebDriverException
from selenium.webdriver.chromium.remote_connection import ChromiumRemoteConnection
from selenium.webdriver.remote.client_config import ClientConfig

from coupad.browser.cdp import Connection
from coupad.browser.downloads import DownloadRouter, _Download
from coupad.browser.hub import INSTANCE_CAP, WORKER_CAP, bare_url, delete_session
from coupad.browser.launch import Browser, BrowserSpec, chromium_options, copy_profile
from coupad.config import redact_url
from coupad.errors import BrowserError

__all__ = ["GridBusy", "GridDownloadRouter", "RemoteBrowser", "instance_id", "profile_cookies"]

log = logging.getLogger("coupad.browser")



class GridBusy(BrowserError):
    """The Grid could not give a session now (queue full or no free slot): try again later;
    no PO is at fault."""


def instance_id(state_dir: Path) -> str:
    """The value of ``coupad:instance`` for one daemon: its host and state folder, hashed."""
    text = f"{socket.gethostname()}:{Path(state_dir).resolve()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class GridDriver(webdriver.Remote):
    """``webdriver.Remote`` with Chromium's ``execute_cdp_cmd``, which Grid forwards to the node."""

    def execute_cdp_cmd(self, cmd: str, cmd_args: dict[str, Any]) -> Any:
        return self.execute("executeCdpCommand", {"cmd": cmd, "params": cmd_args})["value"]


@dataclass
class RemoteBrowser:
    """One Chromium session on Selenium Grid; quacks like :class:`coupad.browser.Browser`."""

    spec: BrowserSpec
    grid_url: str
    driver: Any = None
    session_id: str | None = None
    pgid: None = None  # nothing of it runs here
    remote: bool = field(default=True, init=False)

    @classmethod
    def start(cls, spec: BrowserSpec, grid_url: str, *, timeout: float, instance: str = "",
              worker: str = "") -> RemoteBrowser:
        """Ask the Grid for a session; :class:`GridBusy` when it has none to give now."""
        spec.download_dir.mkdir(parents=True, exist_ok=True)
        options = chromium_options(spec)
        options.enable_downloads = True
        if instance:
            options.set_capability(INSTANCE_CAP, instance)
            options.set_capability("se:name", f"coupad {instance} {worker}".strip())
        if worker:
            options.set_capability(WORKER_CAP, worker)
        executor = ChromiumRemoteConnection(
            remote_server_addr=bare_url(grid_url), vendor_prefix="goog", browser_name="chrome",
            ignore_proxy=True, client_config=_client_config(grid_url, timeout))
        shown = redact_url(grid_url)
        try:
            driver = GridDriver(command_executor=executor, options=options)
        except SessionNotCreatedException as exc:
            raise GridBusy(f"the Grid at {shown} gave no session: {_first_line(exc.msg)}") from None
        except WebDriverException as exc:
            raise BrowserError(f"no session from the Grid at {shown}: {_first_line(exc.msg)}") from None
        except (OSError, ValueError) as exc:  # refused, reset, timed out, a garbled answer
            raise BrowserError(f"the Grid at {shown} did not answer: {exc}") from None
        browser = cls(spec=spec, grid_url=grid_url, driver=driver, session_id=driver.session_id)
        try:
            driver.set_page_load_timeout(spec.page_load_timeout)
            driver.set_script_timeout(spec.script_timeout)
            if not driver.capabilities.get("se:downloadsEnabled"):
                raise BrowserError(
                    f"the Grid at {shown} gave a session without managed downloads: set "
                    "enable-managed-downloads = true in the node's [node] section")
        except BaseException:
            browser.quit()
            raise
        log.info("remote browser session %s on the Grid at %s", browser.session_id, shown)
        return browser

    def pids(self) -> list[int]:
        """No process of a remote browser runs here."""
        return []

    def bring(self, node_path: str, dest_dir: Path) -> Path:
        """Copy a finished download from the node's managed-downloads folder into
        ``dest_dir``; returns the local path (same base name)."""
        name = node_path.replace("\\", "/").rsplit("/", 1)[-1]
        if not name or name in (".", ".."):
            raise BrowserError(f"the node named no file for a download ({node_path!r})")
        self.driver.download_file(name, str(dest_dir))
        local = dest_dir / name
        if not local.is_file():
            raise BrowserError(f"the Grid did not hand over {name}")
        return local

    def quit(self) -> None:
        """End the session on the Grid; when the Grid cannot be told through WebDriver, with a
        direct DELETE of the session."""
        driver, self.driver = self.driver, None
        if driver is None:
            return
        try:
            driver.quit()
            return
        except Exception as exc:  # a dead node or hub cannot answer; try the plain DELETE
            log.debug("quitting the remote session failed: %s", exc)
        if self.session_id:
            delete_session(self.grid_url, self.session_id, timeout=5.0)


class GridDownloadRouter(DownloadRouter):
    """Click downloads of a browser on Grid. The node keeps them in the session's managed-
    downloads folder (the behaviour stays ``default``, with events); each completed one is
    brought here by name, from the path its ``completed`` event gives, and then stands at
    ``<staging>/<guid>`` as a local browser's would. Downloads that were running when the
    connection dropped cannot be followed on this machine's disk: they fail and are clicked
    again on the PO's next attempt, never guessed."""

    def __init__(self, connection: Connection, staging: Path, browser: RemoteBrowser) -> None:
        super().__init__(connection, staging)
        self._browser = browser
        self._incoming = staging / ".from-node"

    def _behavior(self) -> dict[str, Any]:
        return {"behavior": "default", "eventsEnabled": True}

    def _fetch(self, download: _Download, browser_path: str | None) -> Path:
        if not browser_path:
            raise FileNotFoundError("the node did not say where the file is")
        self._incoming.mkdir(parents=True, exist_ok=True)
        try:
            local = self._browser.bring(browser_path, self._incoming)
        except (BrowserError, WebDriverException) as exc:
            raise OSError(f"it could not be brought from the node: {exc}") from None
        path = self.staging / download.guid
        os.replace(local, path)
        return path


_COOKIE_KEYS = ("name", "value", "domain", "path", "secure", "httpOnly", "sameSite", "expires",
                "priority", "sameParty", "sourceScheme", "sourcePort", "partitionKey")


def profile_cookies(base_profile: Path, spec: BrowserSpec) -> list[dict[str, Any]]:
    """The cookies of the signed-in base profile, read in a local headless Chromium started on a
    copy of it (``spec`` names the binaries), as ``Storage.setCookies`` takes them."""
    spec.profile_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="carry-", dir=spec.profile_dir.parent))
    try:
        profile = copy_profile(base_profile, work / "profile")
        local = Browser.start(BrowserSpec(profile_dir=profile, download_dir=work / "downloads",
                                          chromium=spec.chromium, chromedriver=spec.chromedriver))
        try:
            cookies = local.driver.execute_cdp_cmd("Network.getAllCookies", {}).get("cookies", [])
        finally:
            local.quit()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    carried = []
    for cookie in cookies:
        if not isinstance(cookie, dict) or not cookie.get("name"):
            continue
        param = {k: cookie[k] for k in _COOKIE_KEYS if k in cookie}
        if cookie.get("session") or not isinstance(param.get("expires"), int | float) \
                or param["expires"] <= 0:
            param.pop("expires", None)  # a session cookie stays one
        carried.append(param)
    return carried


def _client_config(grid_url: str, timeout: float) -> ClientConfig:
    parts = urlsplit(grid_url)
    seconds = max(1, round(timeout))
    if parts.username is None:
        return ClientConfig(remote_server_addr=grid_url, timeout=seconds)
    return ClientConfig(remote_server_addr=bare_url(grid_url), timeout=seconds,
                        username=parts.username, password=parts.password or "")


def _first_line(text: str | None) -> str:
    text = (text or "").strip()
    return text.splitlines()[0] if text else "unknown error"
