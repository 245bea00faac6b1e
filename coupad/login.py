"""`coupad login`: sign the base browser profile in to Coupa, by hand, SSO included.

Opens a visible Chromium on the base profile at the tenant, waits until the person has signed
in (the landing page's URL contains ``dashboard`` or ``home``), closes the browser so the
cookies are saved, and tells a running daemon to give its workers fresh copies. Without a
display it explains the two headless ways instead.
"""

from __future__ import annotations

import argparse
import os
import time

from coupad import config as configuration
from coupad.config import Config
from coupad.errors import CoupadError, DaemonNotRunning, ExitCode

HEADLESS_HELP = """\
coupad login needs a display: it opens a browser window where you sign in (SSO included).
This machine has none (DISPLAY and WAYLAND_DISPLAY are not set). Two ways on a server:

  1. Sign in with Coupa's native login form, no browser window needed:
       [coupa]
       sign_in = "form"
       username = "you@example.com"
       password_file = "/etc/coupad/coupa-password"   # chmod 600, owned by the service user
     (under systemd: LoadCredential=coupa-password:/etc/coupad/coupa-password)

  2. Sign in on a workstation and copy the profile:
       coupad login -c coupad.toml            # on a machine with a display
       rsync -a state/profiles/base/ server:{base}/
     then `coupactl resume` (or restart) so the workers pick it up.

  Over SSH, `ssh -X` also gives this command a display.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="config file (default: the documented search order)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the sign-in (default 600)")


def has_display(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def main(args: argparse.Namespace) -> int:
    config = configuration.load(args.config)
    base = config.coupa.require_base_url()
    if not has_display():
        print(HEADLESS_HELP.format(base=config.paths.base_profile))
        return int(ExitCode.FAILURE)
    landing = sign_in_by_hand(config, base, args.timeout)
    print(f"signed in: {landing}; profile saved in {config.paths.base_profile}")
    _tell_daemon(config)
    return int(ExitCode.OK)


def sign_in_by_hand(config: Config, base: str, timeout: float) -> str:
    from coupad.browser import Browser, BrowserSpec, keep_session_cookies
    from coupad.signin import is_landing_url

    profile = config.paths.base_profile
    profile.mkdir(parents=True, exist_ok=True)
    browser = Browser.start(BrowserSpec.of(config, profile, config.paths.state / "login-downloads",
                                           headless=False, page_load_strategy="normal"))
    try:
        browser.driver.get(base + "/")
        print("sign in to Coupa in the browser window; it closes by itself when you are in")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = browser.driver.current_url
            if is_landing_url(url, base):
                keep_session_cookies(browser.driver)
                return str(url)
            time.sleep(0.5)
        raise CoupadError(f"no sign-in within {timeout:.0f} s; nothing changed")
    finally:
        browser.quit()


def _tell_daemon(config: Config) -> None:
    from coupad.control import ControlClient

    try:
        with ControlClient(config.socket_path) as client:
            client.call("profile_updated")
        print("the running daemon picks up the new sign-in")
    except DaemonNotRunning:
        print("no daemon is running; the next start uses the new sign-in")
    except CoupadError as exc:
        print(f"could not tell the daemon ({exc}); restart it to use the new sign-in")
