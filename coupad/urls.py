"""URLs as coupad judges them: origins, what may be shown of a URL, and the sign-in rules.

One rule for each question, used by the page reader, the form sign-in and the direct fetcher:

- :func:`origin` — ``(scheme, host, port)`` of an http(s) URL, default ports filled in, or
  None. Two parsers must agree on the host and no user-info is allowed: parser confusion is
  how a URL smuggles another host past a check.
- :func:`is_sign_in_page` — a page the engine navigated to is a sign-in when it is on
  another origin (an identity provider: a PO page lives on Coupa) or on a Coupa sign-in path.
- :func:`is_sign_in_redirect` — a download that redirects is a sign-in when it goes to a
  Coupa sign-in path, or, off Coupa (file stores are expected there), when a sign-in word
  stands alone in the host or a folder, or the query carries a sign-in request's keys.
- :func:`is_sign_in_path` — Coupa's sign-in paths, shared by both: the first path segment
  is a sign-in word (``/sessions/new``, ``/login``, ``/sso``, ``/saml/...``), or it is
  ``users`` followed by one (Devise's ``/users/sign_in``, ``/users/auth/...``,
  ``/users/password``). A file whose name merely contains such a word
  (``/attachments/login-guide.pdf``) is not a sign-in.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from urllib3.util import parse_url

DEFAULT_PORTS = {"http": 80, "https": 443}
SIGN_IN_SEGMENTS = frozenset({
    "sessions", "session", "login", "logon", "signin", "sign_in", "sign-in", "sso", "saml",
    "oauth", "oauth2", "adfs", "auth",
})
# After "users": Devise's sign-in, password reset and OmniAuth paths.
_USERS_SIGN_IN = SIGN_IN_SEGMENTS | {"password"}
# A sign-in word standing alone between separators ("login.microsoftonline.com", "/adfs/ls",
# "/oauth2/v2.0"): as a bare substring, "sso" would find sign-in in "processor-exports".
_SIGN_IN_WORD = re.compile(
    r"(?<![a-z0-9])(?:sessions?|login|logon|sign[-_]?in|sso|saml\d*|oauth\d*|authori[sz]e|adfs"
    r"|openid)(?![a-z0-9])"
)
# Query keys only a SAML, OAuth / OpenID Connect or WS-Federation sign-in request carries.
_SIGN_IN_KEYS = frozenset({"samlrequest", "samlresponse", "relaystate", "response_type",
                           "wresult", "wtrealm"})


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{self.host}" + ("" if default else f":{self.port}")


def origin(url: str) -> Origin | None:
    """The origin of an http(s) URL, or None (another scheme, no host, user-info, or a URL
    two parsers read differently)."""
    try:
        parts = urlsplit(url)
        port = parts.port
        checked = parse_url(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if (checked.host or "").lower().strip("[]") != host or (checked.scheme or "") != scheme:
        return None
    return Origin(scheme, host, port or DEFAULT_PORTS[scheme])


def show_url(url: str) -> str:
    """A URL for messages: origin and path, never the query (it may carry tokens)."""
    where = origin(url)
    path = urlsplit(url).path if where else ""
    return (str(where) if where else "an invalid URL") + path[:200]


def without_query(url: str) -> str:
    """``url`` without query and fragment: what may be stored and logged of any URL."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def is_sign_in_path(path: str) -> bool:
    """Whether a path on Coupa's own site is a sign-in page (see the module docstring)."""
    segments = [unquote(s).lower() for s in path.strip("/").split("/")]
    if segments[0] in SIGN_IN_SEGMENTS:
        return True
    return segments[0] == "users" and len(segments) > 1 and segments[1] in _USERS_SIGN_IN


def is_sign_in_page(url: str, base: str) -> bool:
    """Whether a page the browser is on is Coupa's sign-in page or another site (an identity
    provider). Pages that are not http(s) (about:blank, data:, chrome-error:) are not."""
    if urlsplit(url).scheme.lower() not in DEFAULT_PORTS:
        return False
    if origin(url) != origin(base):
        return True
    return is_sign_in_path(urlsplit(url).path)


def is_sign_in_redirect(url: str, same_site: bool) -> bool:
    """Whether a download's redirect target is a sign-in page rather than the file (or a hop
    to it). Off Coupa the last path segment is left out, as it names the file:
    ``/po/123/login-guide.pdf`` on a file store is fetched. An identity provider that slips
    through is caught by its answer, an HTML page not served as an attachment."""
    parts = urlsplit(url)
    if same_site:
        return is_sign_in_path(parts.path)
    folders = [unquote(segment).lower() for segment in parts.path.split("/")[1:-1]]
    if any(_SIGN_IN_WORD.search(text) for text in [(parts.hostname or "").lower(), *folders]):
        return True
    query = {key.lower(): value for key, value in parse_qsl(parts.query, keep_blank_values=True)}
    return bool(
        _SIGN_IN_KEYS & query.keys()
        or {"client_id", "redirect_uri"} <= query.keys()
        or query.get("wa", "").lower().startswith("wsignin")
    )
