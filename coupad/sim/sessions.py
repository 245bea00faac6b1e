"""Sign-in state of the simulated tenant and identity provider: session tokens and targets."""

from __future__ import annotations

import enum
import secrets
import time

SESSION_COOKIE = "_coupa_session"
IDP_COOKIE = "idp_session"
HOME = "/user/home"


class SignInMode(enum.StrEnum):
    """How the tenant signs users in."""

    FORM = "form"  # Coupa's native form at /sessions/new
    SSO = "sso"  # /sessions/new redirects to the identity provider


class Sessions:
    """Bearer tokens of signed-in browsers, with optional expiry."""

    def __init__(self, lifetime: float | None) -> None:
        self.lifetime = lifetime
        self._expiry: dict[str, float | None] = {}

    def create(self) -> str:
        token = secrets.token_urlsafe(24)
        self._expiry[token] = None if self.lifetime is None else time.monotonic() + self.lifetime
        return token

    def valid(self, token: str | None) -> bool:
        if token is None or token not in self._expiry:
            return False
        expiry = self._expiry[token]
        if expiry is not None and time.monotonic() >= expiry:
            del self._expiry[token]
            return False
        return True

    def clear(self) -> None:
        self._expiry.clear()


def safe_return_to(target: str | None) -> str:
    """A local path to return to after sign-in; anything else (other hosts, junk) means home."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return HOME
    if not target.isprintable() or target.startswith(("/sessions", "/sso")):
        return HOME
    return target
