"""`coupad check`: is this machine ready to run coupad? One line per check, exit 0 when all pass.

Checks, in order: the configuration, the folders and their permissions, the password file
(form sign-in), Chromium and chromedriver (present, same major version), the tenant answers,
and the sign-in works (a headless browser on a copy of the base profile, or the native form).

With ``browser.grid_url`` set, the Grid is checked too: its ``/status`` (ready, nodes up, free
slots, the nodes' session-timeout) and one session created and closed there; with form
sign-in, the sign-in is tried in that remote session. Profile sign-in is still checked here,
on the base profile, whose cookies each remote browser receives.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from coupad import config as configuration
from coupad.config import Config
from coupad.errors import CoupadError, ExitCode


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="config file (default: the documented search order)")
    parser.add_argument("--no-browser", action="store_true",
                        help="skip the checks that start a browser (sign-in)")


def check_folders(config: Config) -> Check:
    problems = []
    for name in ("inbox", "outbox", "downloads", "state"):
        folder: Path = getattr(config.paths, name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(f"paths.{name} {folder}: {exc.strerror}")
            continue
        if not os.access(folder, os.W_OK | os.X_OK):
            problems.append(f"paths.{name} {folder}: not writable")
    if problems:
        return Check("folders", False, "; ".join(problems))
    return Check("folders", True, f"inbox {config.paths.inbox}, downloads {config.paths.downloads}")


def check_password_file(config: Config) -> Check | None:
    if config.coupa.sign_in != "form":
        return None
    path = Path(config.coupa.password_file)
    if not path.is_file():
        return Check("password file", False, f"coupa.password_file {path} does not exist")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return Check("password file", False,
                     f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    return Check("password file", True, f"{path} (mode {mode:o})")


def _version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return (out.stdout or out.stderr).strip()


def check_browser(config: Config) -> Check:
    chromium, driver = config.browser.chromium, config.browser.chromedriver
    missing = [str(p) for p in (chromium, driver) if not os.access(p, os.X_OK)]
    if missing:
        return Check("browser", False, f"missing: {', '.join(missing)}; install with "
                                       "`apt-get install chromium chromium-driver`")
    try:
        browser_version, driver_version = _version(chromium), _version(driver)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("browser", False, f"cannot run: {exc}")
    majors = [re.search(r"(\d+)\.\d+", v) for v in (browser_version, driver_version)]
    if not all(majors) or majors[0].group(1) != majors[1].group(1):  # type: ignore[union-attr]
        return Check("browser", False,
                     f"versions differ: {browser_version!r} vs {driver_version!r}")
    return Check("browser", True, f"{browser_version}; {driver_version.split(' (')[0]}")


def check_tenant(config: Config) -> Check:
    base = config.coupa.base
    try:
        response = requests.get(base + "/", timeout=15, allow_redirects=False)
    except requests.RequestException as exc:
        return Check("tenant", False, f"{base} does not answer: {exc.__class__.__name__}")
    if response.status_code >= 500:
        return Check("tenant", False, f"{base} answers HTTP {response.status_code}")
    return Check("tenant", True, f"{base} answers (HTTP {response.status_code})")


def check_sign_in(config: Config) -> Check:
    from coupad.browser import Browser, BrowserSpec, copy_profile
    from coupad.signin import form_sign_in, read_password
    from coupad.urls import is_sign_in_page

    workdir = Path(tempfile.mkdtemp(prefix="check-", dir=_profile_root(config)))
    try:
        profile = copy_profile(config.paths.base_profile, workdir / "profile")
        browser = Browser.start(BrowserSpec.of(config, profile, workdir / "downloads",
                                               page_load_strategy="normal"))
        try:
            base = config.coupa.base
            if config.coupa.sign_in == "form":
                landing = form_sign_in(browser.driver, base, config.coupa.username,
                                       read_password(config.coupa.password_file))
                return Check("sign-in", True, f"form sign-in landed on {landing}")
            browser.driver.get(base + "/")
            url = browser.driver.current_url
            if is_sign_in_page(url, base):
                return Check("sign-in", False,
                             f"the base profile is not signed in (landed on {url}); "
                             "run `coupad login`")
            return Check("sign-in", True, f"the base profile is signed in ({url})")
        finally:
            browser.quit()
    except CoupadError as exc:
        return Check("sign-in", False, str(exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def check_grid(config: Config) -> Check:
    from coupad.browser import BrowserSpec
    from coupad.browser.hub import grid_status
    from coupad.browser.remote import RemoteBrowser
    from coupad.config import redact_url
    from coupad.signin import form_sign_in, read_password

    url, shown = config.browser.grid_url, redact_url(config.browser.grid_url)
    try:
        status = grid_status(url, timeout=min(15.0, config.browser.grid_timeout))
    except CoupadError as exc:
        return Check("grid", False, str(exc))
    said = (f"{shown}: {status.nodes} node(s) up, {status.free} of {status.slots} slots free"
            + (f", session-timeout {status.session_timeout:.0f} s" if status.session_timeout else ""))
    if not status.ready or not status.nodes:
        return Check("grid", False, f"{said}; not ready ({status.message or 'no node up'})")
    workdir = Path(tempfile.mkdtemp(prefix="check-", dir=_profile_root(config)))
    try:
        browser = RemoteBrowser.start(
            BrowserSpec(profile_dir=workdir / "profile", download_dir=workdir / "downloads",
                        chromium=config.browser.chromium, headless=config.browser.headless),
            url, timeout=config.browser.grid_timeout, instance="coupad-check")
        try:
            if config.coupa.sign_in == "form" and config.coupa.base_url:
                landing = form_sign_in(browser.driver, config.coupa.base, config.coupa.username,
                                       read_password(config.coupa.password_file),
                                       timeout=config.coupa.page_timeout)
                said += f"; a session signed in on the form there, landed on {landing}"
            else:
                said += "; a session opened and closed"
        finally:
            browser.quit()
    except CoupadError as exc:
        return Check("grid", False, f"{said}; {exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Check("grid", True, said)


def _profile_root(config: Config) -> Path:
    root = config.paths.profiles
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_checks(config: Config, *, browser: bool = True) -> list[Check]:
    results = [Check("config", True, str(config.source or "defaults (no config file found)"))]
    if not config.coupa.base_url:
        results.append(Check("tenant", False, "coupa.base_url is not set"))
    steps: list[Callable[[Config], Check | None]] = [check_folders, check_password_file,
                                                     check_browser]
    if config.coupa.base_url:
        steps.append(check_tenant)
        if browser and not (config.browser.grid_url and config.coupa.sign_in == "form"):
            steps.append(check_sign_in)  # on Grid, form sign-in is tried in the remote session
    if config.browser.grid_url and browser:
        steps.append(check_grid)
    for step in steps:
        result = step(config)
        if result is not None:
            results.append(result)
        if result is not None and not result.ok and result.name == "tenant":
            break  # no sign-in check against a tenant that does not answer
    return results


def main(args: argparse.Namespace) -> int:
    try:
        config = configuration.load(args.config)
    except CoupadError as exc:
        print(f"FAIL config         {exc}")
        return int(ExitCode.CONFIG)
    results = run_checks(config, browser=not args.no_browser)
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'} {result.name:<14} {result.detail}")
    return int(ExitCode.OK if all(r.ok for r in results) else ExitCode.FAILURE)
