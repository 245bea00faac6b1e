"""Headless Chromium under Selenium: launch, isolated profiles, process groups, clean-up.

Every browser coupad starts runs from a profile directory under one profile root (by default
``<state>/profiles``), with chromedriver started in a new session so that chromedriver and
all of its Chromium children form one process group that coupad can kill as a whole. Each of
them also carries its profile directory in the environment variable ``COUPAD_BROWSER``, set
before chromedriver starts, so a browser can be found and killed from outside whatever state
its worker died in — before its process group was known, or after Chromium started a helper
outside that group (:func:`kill_browser`). The start-up sweep (:func:`sweep_leftovers`) kills
only browsers marked with a profile below that root, by that variable or by a
``--user-data-dir`` on their command line: other people's browsers are never touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

import psutil
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

from coupad.config import Config
from coupad.errors import BrowserError
from coupad.processes import group_members, kill_group

log = logging.getLogger("coupad.browser")

# The environment variable that marks every process of a browser with its profile directory.
BROWSER_MARK = "COUPAD_BROWSER"

# Flags measured in shared/browser-facts.md. Headless and no-sandbox are mandatory here (no
# display, running as root); the background-networking family keeps Chromium from dialling
# hosts this machine cannot reach; the backgrounding family keeps timers in background tabs
# at full speed, since several POs render at once in tabs that are not in front; the
# back-forward cache is off because the engine reuses tabs and nothing should stay for "back".
# QUIET_FLAGS are the part every coupad Chromium starts with, the mail renderer's included.
QUIET_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
)
CHROMIUM_FLAGS = (
    *QUIET_FLAGS,
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--disable-features=Translate,MediaRouter,OptimizationHints,DownloadBubble,DownloadBubbleV2,"
    "BackForwardCache",
    # A fixed cookie-encryption key, so that a profile copied to a worker keeps its sign-in.
    "--password-store=basic",
    "--window-size=1366,900",
)

# Files and folders of a profile that a worker copy must not inherit: locks held by a running
# browser, tabs to restore, and caches that only cost disk.
PROFILE_SKIP = {
    "SingletonLock",
    "SingletonSocket",
    "SingletonCookie",
    "lockfile",
    "Sessions",
    "Current Session",
    "Current Tabs",
    "Last Session",
    "Last Tabs",
    "Cache",
    "Code Cache",
    "GPUCache",
    "GrShaderCache",
    "ShaderCache",
    "GraphiteDawnCache",
    "Crashpad",
    "BrowserMetrics",
    "Service Worker",
    "DawnCache",
    "DawnGraphiteCache",
}


def chromium_prefs(download_dir: Path) -> dict[str, Any]:
    """Profile preferences that make downloads silent and the first page load fast."""
    return {
        "download.default_directory": str(download_dir),
        "download.prompt_for_download": False,
        "download.directory_upgrade": True,
        "safebrowsing.enabled": False,
        "profile.default_content_setting_values.automatic_downloads": 1,
        "plugins.always_open_pdf_externally": True,
        "session.restore_on_startup": 4,
        "session.startup_urls": ["about:blank"],
        "credentials_enable_service": False,
        "profile.password_manager_enabled": False,
    }


@dataclass(frozen=True)
class BrowserSpec:
    """What a worker needs to start its browser; plain data, so it crosses process boundaries."""

    profile_dir: Path
    download_dir: Path
    chromium: Path = Path("/usr/bin/chromium")
    chromedriver: Path = Path("/usr/bin/chromedriver")
    headless: bool = True
    extra_args: tuple[str, ...] = ()
    page_load_strategy: str = "none"
    page_load_timeout: float = 60.0
    script_timeout: float = 30.0

    @classmethod
    def of(cls, config: Config, profile_dir: Path, download_dir: Path, **changes: Any) -> BrowserSpec:
        """The spec the configuration asks for (``[browser]``, ``coupa.page_timeout``), with
        ``changes`` on top (a visible browser for `coupad login`, a normal page-load strategy)."""
        browser = config.browser
        values: dict[str, Any] = {
            "chromium": browser.chromium, "chromedriver": browser.chromedriver,
            "headless": browser.headless, "extra_args": browser.extra_args,
            "page_load_timeout": config.coupa.page_timeout, **changes,
        }
        return cls(profile_dir=profile_dir, download_dir=download_dir, **values)


class BrowserLike(Protocol):
    """The part of a browser the PO engine uses; a Grid-backed browser can provide it too."""

    driver: Any

    def quit(self) -> None: ...

    def pids(self) -> list[int]: ...


def chromium_options(spec: BrowserSpec) -> webdriver.ChromeOptions:
    """The options every coupad browser starts with, here or on Selenium Grid: the binary,
    headless, :data:`CHROMIUM_FLAGS` and the spec's own, no automation banner, and the
    page-load strategy."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(spec.chromium)
    if spec.headless:
        options.add_argument("--headless=new")
    for flag in CHROMIUM_FLAGS + spec.extra_args:
        options.add_argument(flag)
    options.add_experimental_option("excludeSwitches", ["enable-automation", "enable-logging"])
    options.page_load_strategy = spec.page_load_strategy
    return options


@dataclass
class Browser:
    """One Chromium with its chromedriver, in a process group of its own."""

    spec: BrowserSpec
    driver: Any = None
    pgid: int | None = None
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, spec: BrowserSpec) -> Browser:
        for binary in (spec.chromium, spec.chromedriver):
            if not os.access(binary, os.X_OK):
                raise BrowserError(
                    f"{binary} is missing or not executable: install Debian's packages with "
                    "`apt-get install chromium chromium-driver`"
                )
        spec.profile_dir.mkdir(parents=True, exist_ok=True)
        spec.download_dir.mkdir(parents=True, exist_ok=True)
        options = chromium_options(spec)
        options.add_argument(f"--user-data-dir={spec.profile_dir}")
        options.add_experimental_option("prefs", chromium_prefs(spec.download_dir))
        service = Service(
            executable_path=str(spec.chromedriver),
            log_output=os.devnull,
            # Own session => own process group, which holds chromedriver and every Chromium
            # process it starts, so one killpg() reaches them all (browser-facts.md).
            popen_kw={"start_new_session": True},
            # Selenium Manager must never reach for the internet.
            env={**os.environ, "SE_OFFLINE": "true", BROWSER_MARK: str(spec.profile_dir)},
        )
        os.environ.setdefault("SE_OFFLINE", "true")
        browser = cls(spec=spec)
        try:
            browser.driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as exc:
            pid = service.process.pid if getattr(service, "process", None) else None
            if pid:
                kill_group(pid, grace=5.0)
            raise BrowserError(f"Chromium did not start: {_first_line(exc.msg or str(exc))}") from None
        browser.pgid = service.process.pid
        browser.driver.set_page_load_timeout(spec.page_load_timeout)
        browser.driver.set_script_timeout(spec.script_timeout)
        log.debug("browser started pgid=%s profile=%s", browser.pgid, spec.profile_dir)
        return browser

    def pids(self) -> list[int]:
        """Every live process of this browser's group (chromedriver and Chromium)."""
        if self.pgid is None:
            return []
        return [p.pid for p in group_members(self.pgid)]

    def quit(self, grace: float = 5.0) -> None:
        """Quit through WebDriver, then make sure nothing of the group survives."""
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception as exc:  # a dead browser cannot answer; the kill below still runs
                log.debug("driver.quit failed: %s", exc)
            self.driver = None
        if self.pgid is not None:
            kill_group(self.pgid, grace=grace)
            self.pgid = None


def keep_session_cookies(driver: Any, ttl: float = 12 * 3600) -> int:
    """Give the browser's session cookies an expiry so that they survive its restart.

    Chromium drops cookies without an expiry when it closes, so a profile signed in by hand
    would come back signed out in every worker's copy. The server still decides how long the
    session is valid; this only keeps the browser from forgetting it first.
    """
    cookies = driver.execute_cdp_cmd("Network.getAllCookies", {}).get("cookies", [])
    kept = 0
    for cookie in cookies:
        if not cookie.get("session"):
            continue
        params = {k: cookie[k] for k in ("name", "value", "domain", "path", "secure",
                                         "httpOnly") if k in cookie}
        if cookie.get("sameSite"):
            params["sameSite"] = cookie["sameSite"]
        params["expires"] = time.time() + ttl
        driver.execute_cdp_cmd("Network.setCookie", params)
        kept += 1
    return kept


def copy_profile(base: Path, dest: Path) -> Path:
    """Copy a signed-in base profile into a fresh worker profile, without locks and caches."""
    if dest.exists():
        shutil.rmtree(dest, ignore_errors=True)
    if base.is_dir():
        shutil.copytree(
            base,
            dest,
            ignore=lambda _dir, names: [n for n in names if n in PROFILE_SKIP],
            symlinks=True,
            ignore_dangling_symlinks=True,
        )
    else:
        dest.mkdir(parents=True)
    return dest


def new_profile_dir(profile_root: Path, label: str) -> Path:
    """A fresh, unique profile path below the profile root."""
    return profile_root / f"{label}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def sweep_leftovers(profile_root: Path, *, exclude_pgids: frozenset[int] = frozenset()) -> int:
    """Kill process groups of browsers left behind below ``profile_root``; return how many.

    Only processes marked with a profile below that root (see the module's docstring) are
    considered, so browsers of other programs and users are never touched.
    """
    roots = (f"{Path(profile_root)}/", f"{Path(profile_root).resolve()}/")
    groups = _browser_groups(lambda profile: profile.startswith(roots)) - exclude_pgids
    for pgid in groups:
        log.warning("killing leftover browser process group %s", pgid)
        kill_group(pgid, grace=2.0)
    return len(groups)


def kill_browser(profile_dir: Path) -> int:
    """SIGKILL every process of the browser that runs from ``profile_dir``, and their process
    groups, at once; return how many processes were found. For a worker that is gone or
    being killed: nothing of its browser is asked to shut down in order."""
    wanted = str(profile_dir)
    found = _marked(lambda profile: profile == wanted)
    for pgid in {pgid for _proc, pgid in found} - {os.getpgrp()}:
        kill_group(pgid)
    for proc, _pgid in found:  # helpers that left the group
        try:
            proc.kill()
        except psutil.Error:
            pass
    if found:
        log.info("killed %d process(es) of the browser of %s", len(found), profile_dir)
    return len(found)


def _browser_groups(match: Callable[[str], bool]) -> set[int]:
    """Process groups holding a browser process whose profile ``match`` accepts (never ours)."""
    return {pgid for _proc, pgid in _marked(match)} - {os.getpgrp()}


def _marked(match: Callable[[str], bool]) -> list[tuple[psutil.Process, int]]:
    """Live processes (with their process group) of browsers whose profile ``match`` accepts,
    by the environment variable or, for browsers started before it existed, the command line."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["pid"] == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            profiles = [arg.removeprefix(_USER_DATA_DIR) for arg in proc.info["cmdline"] or ()
                        if arg.startswith(_USER_DATA_DIR)]
            if not any(match(p) for p in profiles):
                marked = proc.environ().get(BROWSER_MARK)
                if marked is None or not match(marked):
                    continue
            found.append((proc, os.getpgid(proc.info["pid"])))
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return found


_USER_DATA_DIR = "--user-data-dir="


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
