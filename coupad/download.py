"""Getting attachment bytes onto disk: direct HTTP fetches, and what a browser download is.

Two ways, as the page allows:

- **Direct fetch** (:class:`DirectFetcher`) where the page exposes the attachment's URL: the
  browser's session cookies go into a plain HTTP client, which is many times faster than a
  browser download (browser-facts.md). A listed URL on another origin is refused before any
  request. Redirects are followed by hand, to any http(s) origin (a file store answering with
  a time-limited signed URL), but the cookies go to the Coupa origin only: no hop elsewhere
  carries a Cookie, Authorization or Referer header. A redirect to a sign-in page or an
  identity provider means the session expired (:class:`~coupad.errors.SignInRequired`), not
  that the file is missing (:func:`_looks_like_sign_in` has the rule). The body streams to a
  temporary name while it is hashed, and its length is checked against the declared
  ``Content-Length`` in both directions.
- **Browser download** where only a click starts it: the browser's download events say when
  the file is complete and which PO it is for (:mod:`coupad.browser.downloads`); here,
  :func:`is_sign_in_download` tells a sign-in page saved in its place. A click is never
  counted as a download.
"""

from __future__ import annotations

import enum
import hashlib
import http.cookiejar
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import requests
import requests.auth
import urllib3.exceptions

from coupad.errors import CoupadError, SignInRequired
from coupad.names import filename_from_content_disposition
from coupad.urls import DEFAULT_PORTS, is_sign_in_redirect, origin, show_url, without_query

log = logging.getLogger("coupad.download")

DEFAULT_MAX_SIZE = 4 << 30  # far above any real attachment; a runaway body stops here
_CHUNK = 256 << 10
_HEAD = 64 << 10  # enough of an HTML body to recognise a sign-in form
# How long to wait, after the declared length has arrived, for the end of the connection that
# shows whether the server sent more than it declared. Servers close at once after
# "Connection: close"; one that keeps the connection open costs this much, then counts as done.
_EOF_GRACE = 1.0
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Signed URLs run to a few KB (a long session token included); a Location past this is refused.
_MAX_LOCATION = 8192
# What a file store answers to an expired signature (S3 and Azure: 403, Google: 400) or to an
# object not yet replicated to the region asked (404); the next attempt gets a fresh URL.
_STORE_REFUSALS = frozenset({400, 401, 403, 404, 410})
_PASSWORD_FIELD = re.compile(rb"""type\s*=\s*["']?password|user_password""", re.IGNORECASE)


class DownloadProblem(enum.Enum):
    """Why a direct fetch failed, so the engine can choose: retry, click instead, or give up.

    Whether a new attempt may succeed follows from the problem alone ("Coupa" is the Coupa
    origin; "the file store" is any other origin a redirect led to):

    ==================  =================================================  =========
    problem             when                                               retryable
    ==================  =================================================  =========
    OFF_ORIGIN          the listed URL is malformed or not on Coupa        no
    BAD_REDIRECT        a Location that is missing, too long, malformed,   no
                        not http(s), or carries a user name or password
    INSECURE_REDIRECT   a redirect from https to plain http                no
    TOO_MANY_REDIRECTS  more than ``max_redirects`` in one chain           no
    ACCESS_DENIED       Coupa answered 401/403                             no
    NOT_FOUND           Coupa answered 404/410                             no
    STORE_REFUSED       the file store answered 400/401/403/404/410: an    yes
                        expired signature or a replication race, and the
                        next attempt gets a freshly signed URL from Coupa
    THROTTLED           429 from either                                    yes
    SERVER_ERROR        5xx from either                                    yes
    HTTP_ERROR          any other unexpected status                        no
    LENGTH_MISMATCH     body shorter or longer than its Content-Length     yes
    TOO_LARGE           more than ``max_size`` bytes                       no
    TIMEOUT             no answer in time, the deadline, or a 408          yes
    NETWORK             refused, reset or broken mid-body                  yes
    ==================  =================================================  =========

    A redirect to a sign-in page is no DownloadProblem: it raises SignInRequired.
    """

    OFF_ORIGIN = "off_origin"
    BAD_REDIRECT = "bad_redirect"
    INSECURE_REDIRECT = "insecure_redirect"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    ACCESS_DENIED = "access_denied"
    NOT_FOUND = "not_found"
    STORE_REFUSED = "store_refused"
    THROTTLED = "throttled"
    SERVER_ERROR = "server_error"
    HTTP_ERROR = "http_error"
    LENGTH_MISMATCH = "length_mismatch"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    NETWORK = "network"

    @property
    def retryable(self) -> bool:
        """Whether a new attempt may succeed (the table above)."""
        return self in _RETRYABLE_PROBLEMS


_RETRYABLE_PROBLEMS = frozenset({
    DownloadProblem.STORE_REFUSED, DownloadProblem.THROTTLED, DownloadProblem.SERVER_ERROR,
    DownloadProblem.LENGTH_MISMATCH, DownloadProblem.TIMEOUT, DownloadProblem.NETWORK,
})


class DownloadError(CoupadError):
    """A direct fetch failed; the message says why in plain words."""

    def __init__(
        self,
        message: str,
        *,
        problem: DownloadProblem,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.retry_after = retry_after
        self.status = status

    @property
    def retryable(self) -> bool:
        """Whether a new attempt may succeed; decided by the problem (DownloadProblem's table)."""
        return self.problem.retryable

    @property
    def permanent(self) -> bool:
        """Whether the same answer will come again however often the fetch is retried."""
        return not self.problem.retryable


@dataclass(frozen=True)
class Fetched:
    """A complete, verified download in a staging folder, ready for PoFolder.add_file."""

    path: Path
    size: int
    sha256: str
    filename: str | None  # from Content-Disposition, not yet made safe
    content_type: str
    url: str  # the URL the attachment was listed under: the first one requested, on Coupa
    served_from: str  # the URL the bytes came from after any redirects, without its query


@dataclass(frozen=True)
class _Cookie:
    name: str
    value: str
    path: str
    secure: bool


class _RefuseAll(http.cookiejar.DefaultCookiePolicy):
    """Keeps requests' own cookie jar empty: cookies are sent only by DirectFetcher itself."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


class _NoCredentials(requests.auth.AuthBase):
    """Sends no Authorization header; as a session's auth it also stops the ~/.netrc lookup."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


class _Session(requests.Session):
    """A requests session that leaves every redirect to DirectFetcher.

    Even with ``allow_redirects=False`` requests prepares the next request of a redirect: it
    reads the whole redirect body into memory (however long, however slow) and parses the
    Location, raising ValueError on one it cannot parse. With no redirect target it does
    neither; DirectFetcher reads the Location itself and closes the response unread.
    """

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


class DirectFetcher:
    """Fetches attachment URLs on the Coupa origin with the browser's session cookies.

    Thread-safe: each thread gets its own ``requests.Session`` (sessions are not safe to
    share), and :meth:`update_cookies` swaps one immutable tuple that every request reads, so
    a ThreadPoolExecutor may run many :meth:`fetch` calls at once. requests' own cookie jar is
    disabled; the Cookie header is built per request and only for the base origin, so neither
    a redirect nor a URL on another host can ever carry the session away. Cookies a response
    sets are ignored: the browser stays the one source of the session (call
    :meth:`update_cookies` after it signs in again).

    requests' ``trust_env`` stays on, for the operator's proxy (``HTTPS_PROXY``, ``NO_PROXY``)
    and CA bundle (``REQUESTS_CA_BUNDLE``); its one credential source, ``~/.netrc``, is shut
    by a session auth that sends no Authorization header to any host. No Referer is ever sent.
    """

    def __init__(
        self,
        base_url: str,
        cookies: Iterable[dict[str, Any]],
        *,
        timeout: float = 60,
        max_redirects: int = 5,
        user_agent: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        where = origin(base_url)
        if where is None:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        self.base_url = base_url
        self.origin = where
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.user_agent = user_agent
        self.max_size = max_size
        self._cookies: tuple[_Cookie, ...] = ()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.update_cookies(cookies)

    def update_cookies(self, cookies: Iterable[dict[str, Any]]) -> None:
        """Replace the session cookies with those (from ``driver.get_cookies()``) for Coupa."""
        host = self.origin.host
        kept = []
        now = time.time()
        for cookie in cookies:
            name, value = str(cookie.get("name", "")), str(cookie.get("value", ""))
            domain = str(cookie.get("domain") or host).lstrip(".").lower()
            if not (host == domain or host.endswith("." + domain)):
                continue  # another site's cookie: never held, so never sent
            if not name or _has_control(name + value) or ";" in name + value or "=" in name:
                continue
            expiry = cookie.get("expiry")
            if isinstance(expiry, (int, float)) and expiry < now:
                continue
            path = str(cookie.get("path") or "/")
            kept.append(_Cookie(name, value, path, bool(cookie.get("secure"))))
        # Longer paths first, as browsers order them (RFC 6265 §5.4).
        kept.sort(key=lambda c: len(c.path), reverse=True)
        self._cookies = tuple(kept)

    @property
    def cookie_names(self) -> list[str]:
        """Names of the cookies held (never their values), for logs and tests."""
        return [c.name for c in self._cookies]

    def fetch(self, url: str, dest_dir: Path, deadline: float | None = None) -> Fetched:
        """Download ``url`` into a new temporary file in ``dest_dir`` and return it verified.

        ``url`` must be on the Coupa origin; redirects from it are followed, off the Coupa
        origin too (see the class docstring). ``deadline`` is a ``time.monotonic()`` value;
        past it the fetch fails as a retryable timeout. Raises DownloadError or
        SignInRequired; a failed fetch leaves no file behind.
        """
        listed = self._check_url(urljoin(self.base_url, url))
        current = listed
        redirects = 0
        while True:
            response = self._get(current, deadline)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    target = self._judge_redirect(current, response.headers.get("Location"))
                    redirects += 1
                    if redirects > self.max_redirects:
                        raise DownloadError(
                            f"more than {self.max_redirects} redirects from {show_url(listed)}",
                            problem=DownloadProblem.TOO_MANY_REDIRECTS,
                        )
                    log.debug("following a redirect from %s to %s",
                              show_url(current), show_url(target))
                    current = target
                    continue
                _check_status(response, current, on_coupa=origin(current) == self.origin)
                fetched = self._save(
                    response, listed, current, Path(dest_dir), deadline, redirects > 0
                )
                log.debug("fetched %s from %s: %d bytes",
                          show_url(listed), fetched.served_from, fetched.size)
                return fetched
            finally:
                response.close()

    def close(self) -> None:
        """Close every thread's HTTP session."""
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    def __enter__(self) -> DirectFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _Session()
            session.cookies.set_policy(_RefuseAll())
            session.auth = _NoCredentials()  # requests reads ~/.netrc only when auth is unset
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _check_url(self, url: str) -> str:
        """Return ``url`` without its fragment if it is on the base origin, else refuse it."""
        if _has_control(url) or "\\" in url:
            raise DownloadError(
                f"refusing an attachment URL with control characters or a backslash "
                f"({show_url(url)!r})",
                problem=DownloadProblem.OFF_ORIGIN,
            )
        where = origin(url)
        if where != self.origin:
            shown = str(where) if where else "an invalid or non-http(s) URL"
            raise DownloadError(
                f"refusing to fetch from {shown}: not the Coupa site {self.origin}",
                problem=DownloadProblem.OFF_ORIGIN,
            )
        return url.split("#", 1)[0]

    def _judge_redirect(self, current: str, location: str | None) -> str:
        """Return the URL a redirect leads to, or raise for sign-in or a Location not to follow."""
        here = show_url(current)
        location = (location or "").strip(" ")
        if not location:
            raise DownloadError(
                f"a redirect without a target from {here}", problem=DownloadProblem.BAD_REDIRECT
            )
        if len(location) > _MAX_LOCATION:
            raise DownloadError(
                f"a redirect from {here} to a {len(location)}-character location, more than "
                f"the {_MAX_LOCATION} allowed; not followed",
                problem=DownloadProblem.BAD_REDIRECT,
            )
        try:  # http.client reads headers as Latin-1; servers send UTF-8 (as requests does)
            location = location.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
        if _has_control(location) or "\\" in location:
            raise DownloadError(
                f"a redirect from {here} to a location with control characters or a "
                "backslash; not followed",
                problem=DownloadProblem.BAD_REDIRECT,
            )
        try:
            target = urljoin(current, location)
            parts = urlsplit(target)
        except ValueError:
            target, parts = "", None
        if parts is None or parts.scheme.lower() not in DEFAULT_PORTS:
            scheme = parts.scheme.lower() if parts else ""
            shown = f"a {scheme}: URL" if re.fullmatch(r"[a-z][a-z0-9+.-]{0,19}", scheme) else (
                "a malformed URL"
            )
            raise DownloadError(
                f"a redirect from {here} to {shown}; only http and https are followed",
                problem=DownloadProblem.BAD_REDIRECT,
            )
        if "@" in parts.netloc:
            raise DownloadError(
                f"a redirect from {here} to a URL carrying a user name or password; not followed",
                problem=DownloadProblem.BAD_REDIRECT,
            )
        where = origin(target)
        if where is None:
            raise DownloadError(
                f"a redirect from {here} to a malformed URL; not followed",
                problem=DownloadProblem.BAD_REDIRECT,
            )
        if urlsplit(current).scheme.lower() == "https" and where.scheme == "http":
            raise DownloadError(
                f"a redirect from {here} to plain http ({where}): an https "
                "download is never continued unencrypted",
                problem=DownloadProblem.INSECURE_REDIRECT,
            )
        if is_sign_in_redirect(target, same_site=where == self.origin):
            raise SignInRequired(
                f"Coupa asked to sign in again (an attachment redirected to {show_url(target)})"
            )
        return target.split("#", 1)[0]

    def _get(self, url: str, deadline: float | None) -> requests.Response:
        timeout = _remaining(deadline, self.timeout, url)
        headers = {
            "Accept": "*/*",
            # Identity: the bytes on disk are the bytes Coupa stores, and no zip bomb.
            "Accept-Encoding": "identity",
            # The server closes after the body, which is how a longer-than-declared body shows.
            "Connection": "close",
        }
        if self.user_agent:
            headers["User-Agent"] = self.user_agent
        cookie = self._cookie_header(url)
        if cookie:
            headers["Cookie"] = cookie
        try:
            return self._session().get(
                url, headers=headers, allow_redirects=False, stream=True, timeout=timeout
            )
        except requests.Timeout:
            raise _timeout(url, timeout) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema) as exc:
            # Only a redirect target gets here (a listed URL has passed _check_url); requests'
            # message would quote the whole URL, query included.
            raise DownloadError(
                f"a redirect to {show_url(url)} that cannot be requested ({type(exc).__name__})",
                problem=DownloadProblem.BAD_REDIRECT,
            ) from None
        except requests.RequestException as exc:
            raise DownloadError(
                f"could not reach {show_url(url)}: {_short(exc)}",
                problem=DownloadProblem.NETWORK,
            ) from None

    def _cookie_header(self, url: str) -> str:
        """The Cookie header for ``url``: base-origin cookies whose path matches, or ""."""
        if origin(url) != self.origin:
            return ""
        path = urlsplit(url).path or "/"
        https = self.origin.scheme == "https"
        return "; ".join(
            f"{c.name}={c.value}"
            for c in self._cookies
            if _path_matches(path, c.path) and (https or not c.secure)
        )

    def _save(
        self,
        response: requests.Response,
        listed: str,
        url: str,
        dest_dir: Path,
        deadline: float | None,
        redirected: bool,
    ) -> Fetched:
        """Stream the body of ``url`` (reached from ``listed``) to a temporary file, checking
        length, size and deadline."""
        declared = _declared_length(response)
        if declared is not None and declared > self.max_size:
            raise DownloadError(
                f"{show_url(url)} is {declared} bytes, more than the {self.max_size} allowed",
                problem=DownloadProblem.TOO_LARGE,
            )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        disposition = response.headers.get("Content-Disposition")
        raw = response.raw
        sock = _socket_of(raw)
        if declared is not None and sock is not None:
            _read_until_close(raw)
        dest_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        part = dest_dir / f"{token}.part"
        try:
            with part.open("wb") as out:
                size, digest, head = self._copy_body(raw, sock, out, url, declared, deadline)
            if _is_sign_in_page(content_type, disposition, head, redirected):
                if origin(url) == self.origin:
                    raise SignInRequired(
                        f"Coupa answered {show_url(url)} with its sign-in page instead of "
                        "the file"
                    )
                raise SignInRequired(
                    f"an attachment led to a page at {show_url(url)} instead of the file: an "
                    "identity provider asking to sign in again"
                )
            done = dest_dir / f"{token}.download"
            part.rename(done)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return Fetched(
            path=done,
            size=size,
            sha256=digest,
            filename=filename_from_content_disposition(disposition),
            content_type=content_type,
            url=listed,
            served_from=without_query(url),
        )

    def _copy_body(
        self,
        raw: Any,
        sock: Any,
        out: BinaryIO,
        url: str,
        declared: int | None,
        deadline: float | None,
    ) -> tuple[int, str, bytes]:
        """Copy the body to ``out``; return its size, sha256 and first 64 KiB."""
        digest = hashlib.sha256()
        size = 0
        head = b""
        while True:
            at_end = declared is not None and raw.tell() >= declared
            read_timeout = _remaining(deadline, self.timeout, url)
            if sock is not None:
                sock.settimeout(min(read_timeout, _EOF_GRACE) if at_end else read_timeout)
            try:
                chunk = raw.read1(_CHUNK, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                if at_end:
                    break  # every declared byte arrived; the server just kept the line open
                raise _timeout(url, read_timeout) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise DownloadError(
                    f"the connection broke after {raw.tell()} bytes of {show_url(url)}"
                    f"{_of_declared(declared)}: {_short(exc)}",
                    problem=DownloadProblem.NETWORK,
                ) from None
            if not chunk:
                break
            if declared is not None and raw.tell() > declared:
                raise DownloadError(
                    f"{show_url(url)} declared {declared} bytes but sent more "
                    f"({raw.tell()} bytes so far)",
                    problem=DownloadProblem.LENGTH_MISMATCH,
                )
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if len(head) < _HEAD:
                head += chunk[: _HEAD - len(head)]
            if size > self.max_size:
                raise DownloadError(
                    f"{show_url(url)} is larger than the {self.max_size} bytes allowed",
                    problem=DownloadProblem.TOO_LARGE,
                )
            if deadline is not None and time.monotonic() > deadline:
                raise _timeout(url, None)
        if declared is not None and raw.tell() < declared:
            raise DownloadError(
                f"{show_url(url)} declared {declared} bytes but sent only {raw.tell()}",
                problem=DownloadProblem.LENGTH_MISMATCH,
            )
        return size, digest.hexdigest(), head


_HTML_START = re.compile(rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.IGNORECASE | re.DOTALL)
_WEB_PAGE_NAMES = (".htm", ".html", ".xhtml", ".shtml")


def is_sign_in_download(path: Path, expected_name: str | None) -> bool:
    """Whether a file the browser downloaded is a sign-in page rather than the attachment.

    A click-only attachment clicked after the session expired is redirected to Coupa's (or
    the identity provider's) sign-in page, and the browser saves that page as the download:
    an HTML document with a password field. An attachment whose own name says it is a web
    page is taken as it is, as the direct fetcher does for one served as an attachment.
    """
    if expected_name and expected_name.lower().rstrip(" .").endswith(_WEB_PAGE_NAMES):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD)
    except OSError:
        return False
    head = head.removeprefix(b"\xef\xbb\xbf")
    return bool(_HTML_START.match(head)) and bool(_PASSWORD_FIELD.search(head))


def _check_status(response: requests.Response, url: str, *, on_coupa: bool) -> None:
    """Raise the DownloadError that an unsuccessful status from ``url`` means."""
    status = response.status_code
    if 200 <= status < 300:
        return
    where = show_url(url)
    if not on_coupa and status in _STORE_REFUSALS:
        raise DownloadError(
            f"the file store refused {where} (HTTP {status}); its signed link may have "
            "expired, and a new attempt gets a fresh one from Coupa",
            problem=DownloadProblem.STORE_REFUSED, status=status,
        )
    if status in (401, 403):
        raise DownloadError(
            f"access denied to {where} (HTTP {status})",
            problem=DownloadProblem.ACCESS_DENIED, status=status,
        )
    if status in (404, 410):
        raise DownloadError(
            f"{where} does not exist (HTTP {status})",
            problem=DownloadProblem.NOT_FOUND, status=status,
        )
    retry_after = _retry_after(response.headers.get("Retry-After"))
    server = "Coupa" if on_coupa else "the file store"
    if status == 408:
        raise DownloadError(
            f"{server} timed out waiting for the request for {where} (HTTP 408)",
            problem=DownloadProblem.TIMEOUT, retry_after=retry_after, status=status,
        )
    if status == 429:
        raise DownloadError(
            f"{server} is throttling requests (HTTP 429 for {where})",
            problem=DownloadProblem.THROTTLED, retry_after=retry_after, status=status,
        )
    if status >= 500:
        raise DownloadError(
            f"{server} failed to serve {where} (HTTP {status})",
            problem=DownloadProblem.SERVER_ERROR, retry_after=retry_after, status=status,
        )
    raise DownloadError(
        f"unexpected answer HTTP {status} for {where}",
        problem=DownloadProblem.HTTP_ERROR, status=status,
    )


def _is_sign_in_page(
    content_type: str, disposition: str | None, head: bytes, redirected: bool
) -> bool:
    """An HTML page where a file was expected, after a redirect or showing a password field."""
    if content_type not in ("text/html", "application/xhtml+xml"):
        return False
    if disposition and disposition.strip().lower().startswith("attachment"):
        return False  # an .html file Coupa serves as an attachment is a real file
    return redirected or bool(_PASSWORD_FIELD.search(head))


def _path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 §5.1.4 path-match."""
    if request_path == cookie_path:
        return True
    if request_path.startswith(cookie_path):
        return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    return False


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _declared_length(response: requests.Response) -> int | None:
    if "Transfer-Encoding" in response.headers:
        return None
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


def _socket_of(raw: Any) -> Any:
    """The socket under a urllib3 response, or None if this urllib3 hides it."""
    connection = getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if hasattr(sock, "settimeout") else None


def _read_until_close(raw: Any) -> None:
    """Make urllib3 and http.client read to the end of the connection, not to Content-Length.

    Both stop silently at the declared length, so bytes beyond it would go unseen. The fetch
    counts the bytes itself (``raw.tell()``) and compares them with the declared length.
    """
    inner = getattr(raw, "_fp", None)
    if inner is not None and hasattr(inner, "length") and hasattr(raw, "length_remaining"):
        inner.length = None
        raw.length_remaining = None


def _remaining(deadline: float | None, cap: float, url: str) -> float:
    """Seconds to wait for the next answer: ``cap``, less if the deadline is nearer."""
    if deadline is None:
        return cap
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timeout(url, None)
    return min(cap, left)


def _timeout(url: str, seconds: float | None) -> DownloadError:
    after = f" after {seconds:.1f} s" if seconds else ""
    return DownloadError(
        f"timed out{after} waiting for {show_url(url)}",
        problem=DownloadProblem.TIMEOUT,
    )


def _of_declared(declared: int | None) -> str:
    return f" (of {declared} declared)" if declared is not None else ""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(exc: BaseException) -> str:
    """The first line of an error, without any query (urllib3 quotes the URL it asked for)."""
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
        exc = inner.reason  # "connection refused", not "max retries exceeded with url ..."
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"\?[^\s'\"()]*", "?…", text)[:200]
