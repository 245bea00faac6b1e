"""Coupa sign-in: recognising the sign-in page or an identity provider, and the native form.

Every page visit of the engine asks :func:`coupad.urls.is_sign_in_page` whether Coupa sent
the browser to its sign-in page (``/sessions/new``, ``/login``, ``/sso``, ...) or to another
origin (an identity provider such as Okta or Azure AD). The form sign-in fills Coupa's native
``#user_email`` / ``#user_password`` form; a tenant that redirects ``/sessions/new`` to an
identity provider cannot be signed in this way, and :class:`SignInFailed` says so. The
password is never logged and never part of an error message.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By

from coupad.errors import ConfigError, CoupadError
from coupad.urls import DEFAULT_PORTS, is_sign_in_page, origin, show_url

log = logging.getLogger("coupad.signin")

LANDING_MARKERS = ("dashboard", "home")
_REFUSED_PHRASES = ("invalid", "incorrect", "wrong", "ungültig", "falsch", "inválid", "ongeldig")


class SignInFailed(CoupadError):
    """The form sign-in did not succeed (wrong password, SSO tenant, unexpected page)."""


def is_landing_url(url: str, base: str) -> bool:
    """Whether a URL is where Coupa lands after a successful sign-in (dashboard or home)."""
    if origin(url) != origin(base):
        return False
    path = urlsplit(url).path.lower()
    return any(marker in path for marker in LANDING_MARKERS)


def read_password(path: str | Path) -> str:
    """The password from its file (first line, without the line break)."""
    if not str(path):
        raise ConfigError("coupa.password_file is not set")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"coupa.password_file {path} cannot be read: {exc.strerror}") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"coupa.password_file {path} is empty")
    return password


def form_sign_in(driver: Any, base: str, username: str, password: str, timeout: float = 30.0) -> str:
    """Sign in on Coupa's native form in the current tab; return the landing URL.

    Raises :class:`SignInFailed` when Coupa refuses the credentials, when the tenant sends
    the browser to an identity provider (form sign-in is impossible there), or when no
    landing page appears within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    driver.get(f"{base}/sessions/new")
    form_field = _wait(deadline, lambda: _sign_in_field_or_landing(driver, base), "the sign-in form")
    if form_field == "landed":
        return str(driver.current_url)  # the profile was still signed in
    email = driver.find_element(By.CSS_SELECTOR, "#user_email")
    secret = driver.find_element(By.CSS_SELECTOR, "#user_password")
    email.clear()
    email.send_keys(username)
    secret.clear()
    secret.send_keys(password)
    old_document = driver.find_element(By.TAG_NAME, "html")
    _submit(driver, secret)
    # browser-facts.md: wait for the old page to go stale and the new one to load before the
    # next navigation, or that navigation can be lost.
    _wait(deadline, lambda: _is_stale(old_document), "the sign-in form to be submitted")
    _wait(deadline, lambda: _ready(driver), "the page after sign-in to load")
    landing = str(driver.current_url)
    if is_landing_url(landing, base):
        log.info("signed in on the native form as %s", username)
        return landing
    if is_sign_in_page(landing, base):
        page_text = _text(driver).lower()
        if any(phrase in page_text for phrase in _REFUSED_PHRASES):
            raise SignInFailed(
                f"Coupa refused the sign-in for {username}: check coupa.username and the "
                "password in coupa.password_file"
            )
        if origin(landing) != origin(base):
            raise _sso_error(landing)
        raise SignInFailed(f"sign-in did not complete: Coupa stayed on {urlsplit(landing).path}")
    raise SignInFailed(
        f"sign-in landed on {urlsplit(landing).path} instead of the dashboard or home page"
    )


def _sign_in_field_or_landing(driver: Any, base: str) -> str | None:
    url = str(driver.current_url)
    if urlsplit(url).scheme.lower() in DEFAULT_PORTS and origin(url) != origin(base):
        raise _sso_error(url)
    if not _ready(driver):
        return None
    if is_landing_url(url, base):
        return "landed"
    try:
        driver.find_element(By.CSS_SELECTOR, "#user_email")
        driver.find_element(By.CSS_SELECTOR, "#user_password")
    except NoSuchElementException:
        return None
    return "form"


def _sso_error(url: str) -> SignInFailed:
    return SignInFailed(
        f"this tenant signs in through an identity provider ({origin(url) or show_url(url)}), so the native "
        "form cannot be used: set coupa.sign_in = \"profile\" and run `coupad login`"
    )


def _submit(driver: Any, field: Any) -> None:
    buttons = driver.find_elements(
        By.CSS_SELECTOR, "form input[type=submit], form button[type=submit], form button"
    )
    if buttons:
        buttons[0].click()
    else:
        field.submit()


def _is_stale(element: Any) -> bool:
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException:
        return True  # "cannot find context": the old document is already being replaced
    return False


def _ready(driver: Any) -> bool:
    try:
        return driver.execute_script("return document.readyState") == "complete"
    except WebDriverException:
        return False  # the document is being replaced


def _text(driver: Any) -> str:
    try:
        return str(driver.execute_script("return document.body ? document.body.innerText : ''"))
    except WebDriverException:
        return ""


def _wait(deadline: float, condition: Any, what: str) -> Any:
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SignInFailed(f"sign-in timed out waiting for {what}")
        time.sleep(0.05)
