"""Getting attachment bytes onto disk: direct HTTP fetches and browser-download staging.

Two ways, as the page allows:

- **Direct fetch** (:class:`DirectFetcher`) where the page exposes the attachment's URL: the
  browser's session cookies go into a plain HTTP client, which is many times faster than a
  browser download (browser-facts.md). The cookies are sent to the Coupa origin only: URLs on
  other origins are refused before any request, redirects are never followed blindly (only
  same-origin ones, by hand), and a redirect to a sign-in page or an identity provider means
  the session expired (:class:`~coupad.errors.SignInRequired`), not that the file is missing.
  The body streams to a temporary name while it is hashed, and its length is checked against
  the declared ``Content-Length`` in both directions.
- **Browser download** where only a click starts it: :func:`set_browser_download_dir` points
  Chromium at a per-PO staging folder before the click, and :func:`browser_download_state`
  reads completion from the file system — a click is never counted as a download.
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
import urllib3.exceptions
from urllib3.util import parse_url

from coupad.errors import CoupadError, SignInRequired
from coupad.names import filename_from_content_disposition

log = logging.getLogger("coupad.download")

DEFAULT_MAX_SIZE = 4 << 30  # far above any real attachment; a runaway body stops here
_CHUNK = 256 << 10
_HEAD = 64 << 10  # enough of an HTML body to recognise a sign-in form
# How long to wait, after the declared length has arrived, for the end of the connection that
# shows whether the server sent more than it declared. Servers close at once after
# "Connection: close"; one that keeps the connection open costs this much, then counts as done.
_EOF_GRACE = 1.0
# On another site (an identity provider) any of these in the host or path means sign-in; on
# Coupa's own site only a first path segment does, so "/attachments/login-guide.pdf" is a file.
_SIGN_IN_MARKERS = ("session", "login", "logon", "signin", "sign_in", "sign-in", "sso", "saml",
                    "oauth", "authorize", "adfs")
_SIGN_IN_SEGMENTS = frozenset({"sessions", "session", "login", "logon", "signin", "sign_in",
                               "sign-in", "sso", "saml", "oauth", "oauth2", "adfs", "auth", "users"})
_PASSWORD_FIELD = re.compile(rb"""type\s*=\s*["']?password|user_password""", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DownloadProblem(enum.Enum):
    """Why a direct fetch failed, so the engine can choose: retry, click instead, or give up."""

    OFF_ORIGIN = "off_origin"  # the URL is not on the Coupa origin; nothing was requested
    REDIRECTED_AWAY = "redirected_away"  # a redirect to another site; not followed
    TOO_MANY_REDIRECTS = "too_many_redirects"
    ACCESS_DENIED = "access_denied"  # 401/403
    NOT_FOUND = "not_found"  # 404/410
    THROTTLED = "throttled"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    HTTP_ERROR = "http_error"  # any other unexpected status
    LENGTH_MISMATCH = "length_mismatch"  # body shorter or longer than Content-Length
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    NETWORK = "network"  # connection refused, reset, broken mid-body


class DownloadError(CoupadError):
    """A direct fetch failed; the message says why in plain words."""

    def __init__(
        self,
        message: str,
        *,
        problem: DownloadProblem,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


@dataclass(frozen=True)
class Fetched:
    """A complete, verified download in a staging folder, ready for PoFolder.add_file."""

    path: Path
    size: int
    sha256: str
    filename: str | None  # from Content-Disposition, not yet made safe
    content_type: str
    url: str  # the URL the bytes came from (after same-origin redirects)


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


class DirectFetcher:
    """Fetches attachment URLs on the Coupa origin with the browser's session cookies.

    Thread-safe: each thread gets its own ``requests.Session`` (sessions are not safe to
    share), and :meth:`update_cookies` swaps one immutable tuple that every request reads, so
    a ThreadPoolExecutor may run many :meth:`fetch` calls at once. requests' own cookie jar is
    disabled; the Cookie header is built per request and only for the base origin, so neither
    a redirect nor a URL on another host can ever carry the session away. Cookies a response
    sets are ignored: the browser stays the one source of the session (call
    :meth:`update_cookies` after it signs in again).
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
        origin = _origin(base_url)
        if origin is None:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        self.base_url = base_url
        self.origin = origin
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
        host = self.origin[1]
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

        ``deadline`` is a ``time.monotonic()`` value; past it the fetch fails as a retryable
        timeout. Raises DownloadError or SignInRequired; a failed fetch leaves no file behind.
        """
        current = self._check_url(urljoin(self.base_url, url))
        redirects = 0
        while True:
            response = self._get(current, deadline)
            try:
                if response.status_code in (301, 302, 303, 307, 308):
                    target = self._judge_redirect(current, response.headers.get("Location"))
                    redirects += 1
                    if redirects > self.max_redirects:
                        raise DownloadError(
                            f"more than {self.max_redirects} redirects from {url}",
                            problem=DownloadProblem.TOO_MANY_REDIRECTS,
                            retryable=False,
                        )
                    log.debug("following a same-site redirect to %s", _show_url(target))
                    current = target
                    continue
                _check_status(response)
                fetched = self._save(response, current, Path(dest_dir), deadline, redirects > 0)
                log.debug("fetched %s: %d bytes", _show_url(current), fetched.size)
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
            session = requests.Session()
            session.cookies.set_policy(_RefuseAll())
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _check_url(self, url: str) -> str:
        """Return ``url`` without its fragment if it is on the base origin, else refuse it."""
        if _has_control(url) or "\\" in url:
            raise DownloadError(
                f"refusing a malformed attachment URL {url[:200]!r}",
                problem=DownloadProblem.OFF_ORIGIN,
                retryable=False,
            )
        origin = _origin(url)
        if origin != self.origin:
            shown = _show_origin(origin) if origin else repr(url[:200])
            raise DownloadError(
                f"refusing to fetch from {shown}: not the Coupa site {_show_origin(self.origin)}",
                problem=DownloadProblem.OFF_ORIGIN,
                retryable=False,
            )
        return url.split("#", 1)[0]

    def _judge_redirect(self, current: str, location: str | None) -> str:
        """Return the same-origin redirect target, or raise for sign-in or another site."""
        if not location:
            raise DownloadError(
                f"a redirect without a target from {_show_url(current)}",
                problem=DownloadProblem.HTTP_ERROR,
                retryable=False,
            )
        target = urljoin(current, location.strip())
        origin = _origin(target)
        if _looks_like_sign_in(target, same_site=origin == self.origin):
            raise SignInRequired(
                f"Coupa asked to sign in again (an attachment redirected to {_show_url(target)})"
            )
        if origin != self.origin:
            shown = _show_origin(origin) if origin else repr(location[:200])
            raise DownloadError(
                f"redirected to another site {shown}; not followed",
                problem=DownloadProblem.REDIRECTED_AWAY,
                retryable=False,
            )
        return self._check_url(target)

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
        except requests.RequestException as exc:
            raise DownloadError(
                f"could not reach {_show_url(url)}: {_short(exc)}",
                problem=DownloadProblem.NETWORK,
                retryable=True,
            ) from None

    def _cookie_header(self, url: str) -> str:
        """The Cookie header for ``url``: base-origin cookies whose path matches, or ""."""
        if _origin(url) != self.origin:
            return ""
        path = urlsplit(url).path or "/"
        https = self.origin[0] == "https"
        return "; ".join(
            f"{c.name}={c.value}"
            for c in self._cookies
            if _path_matches(path, c.path) and (https or not c.secure)
        )

    def _save(
        self,
        response: requests.Response,
        url: str,
        dest_dir: Path,
        deadline: float | None,
        redirected: bool,
    ) -> Fetched:
        """Stream the body to a temporary file, checking length, size and deadline."""
        declared = _declared_length(response)
        if declared is not None and declared > self.max_size:
            raise DownloadError(
                f"{_show_url(url)} is {declared} bytes, more than the {self.max_size} allowed",
                problem=DownloadProblem.TOO_LARGE,
                retryable=False,
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
                raise SignInRequired(
                    f"Coupa answered {_show_url(url)} with its sign-in page instead of the file"
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
            url=url,
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
                    f"the connection broke after {raw.tell()} bytes of {_show_url(url)}"
                    f"{_of_declared(declared)}: {_short(exc)}",
                    problem=DownloadProblem.NETWORK,
                    retryable=True,
                ) from None
            if not chunk:
                break
            if declared is not None and raw.tell() > declared:
                raise DownloadError(
                    f"{_show_url(url)} declared {declared} bytes but sent more "
                    f"({raw.tell()} bytes so far)",
                    problem=DownloadProblem.LENGTH_MISMATCH,
                    retryable=True,
                )
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if len(head) < _HEAD:
                head += chunk[: _HEAD - len(head)]
            if size > self.max_size:
                raise DownloadError(
                    f"{_show_url(url)} is larger than the {self.max_size} bytes allowed",
                    problem=DownloadProblem.TOO_LARGE,
                    retryable=False,
                )
            if deadline is not None and time.monotonic() > deadline:
                raise _timeout(url, None)
        if declared is not None and raw.tell() < declared:
            raise DownloadError(
                f"{_show_url(url)} declared {declared} bytes but sent only {raw.tell()}",
                problem=DownloadProblem.LENGTH_MISMATCH,
                retryable=True,
            )
        return size, digest.hexdigest(), head


@dataclass
class BrowserDownloadState:
    """What one browser download's staging folder shows."""

    started: bool  # a partial (*.crdownload) or complete file is present
    done_path: Path | None  # the one complete file, once no partial file is left
    partial_bytes: int  # bytes in *.crdownload files so far, to tell progress from a stall


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


def set_browser_download_dir(driver: Any, path: Path, *, browser_names: bool = False) -> None:
    """Send the browser's next downloads into ``path``.

    ``Browser.setDownloadBehavior`` is browser-wide, not per tab: the engine must serialise
    "set folder → click → download started" across tabs. A download that has started keeps
    writing into the folder it started in when the folder is switched for the next click
    (tests/test_download.py checks this with real Chromium).

    By default files land under generated (GUID) names ("allowAndName"): with
    ``browser_names`` ("allow") Chromium names the file itself and silently drops a download
    whose name the file system refuses, such as a 300-character one. Both go through
    ``.crdownload`` first, so completion reads the same; the attachment's name then comes from
    the page, which is the name Coupa shows.
    """
    path.mkdir(parents=True, exist_ok=True)
    behavior = "allow" if browser_names else "allowAndName"
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior",
        {"behavior": behavior, "downloadPath": str(path), "eventsEnabled": False},
    )


def browser_download_state(staging: Path) -> BrowserDownloadState:
    """Read a browser download's progress from its staging folder.

    Chromium writes a download as ``<name>.crdownload`` (or ``Unconfirmed N.crdownload``) and
    renames it to its final name only when every byte is on disk, so a file with a final
    name means a complete download. Its ``.org.chromium.*`` scratch files and other hidden
    files are ignored.
    """
    partial_bytes = 0
    partials = 0
    complete: list[Path] = []
    try:
        children = list(staging.iterdir())
    except FileNotFoundError:
        return BrowserDownloadState(started=False, done_path=None, partial_bytes=0)
    for child in children:
        if child.name.startswith("."):
            continue
        try:
            info = child.lstat()
        except FileNotFoundError:
            continue  # renamed between listing and stat: seen complete on the next poll
        if child.name.endswith(".crdownload"):
            partials += 1
            partial_bytes += info.st_size
        elif child.is_file() and not child.is_symlink():
            complete.append(child)
    done = complete[0] if len(complete) == 1 and partials == 0 else None
    return BrowserDownloadState(
        started=bool(partials or complete), done_path=done, partial_bytes=partial_bytes
    )


def _check_status(response: requests.Response) -> None:
    """Raise the DownloadError that an unsuccessful status means."""
    status = response.status_code
    if 200 <= status < 300:
        return
    where = _show_url(response.url)
    if status in (401, 403):
        raise DownloadError(
            f"access denied to {where} (HTTP {status})",
            problem=DownloadProblem.ACCESS_DENIED, retryable=False, status=status,
        )
    if status in (404, 410):
        raise DownloadError(
            f"{where} does not exist (HTTP {status})",
            problem=DownloadProblem.NOT_FOUND, retryable=False, status=status,
        )
    retry_after = _retry_after(response.headers.get("Retry-After"))
    if status == 429:
        raise DownloadError(
            f"Coupa is throttling requests (HTTP 429 for {where})",
            problem=DownloadProblem.THROTTLED, retryable=True, retry_after=retry_after,
            status=status,
        )
    if status >= 500:
        raise DownloadError(
            f"Coupa failed to serve {where} (HTTP {status})",
            problem=DownloadProblem.SERVER_ERROR, retryable=True, retry_after=retry_after,
            status=status,
        )
    raise DownloadError(
        f"unexpected answer HTTP {status} for {where}",
        problem=DownloadProblem.HTTP_ERROR, retryable=False, status=status,
    )


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, or None; two parsers must agree on the host."""
    try:
        parts = urlsplit(url)
        port = parts.port
        checked = parse_url(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if (checked.host or "").lower().strip("[]") != host or (checked.scheme or "") != scheme:
        return None  # parser confusion is how URLs smuggle another host past a check
    return scheme, host, port or _DEFAULT_PORTS[scheme]


def _show_origin(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    return f"{scheme}://{host}" + ("" if _DEFAULT_PORTS[scheme] == port else f":{port}")


def _show_url(url: str) -> str:
    """A URL for messages: origin and path, never the query (it may carry tokens)."""
    origin = _origin(url)
    path = urlsplit(url).path if origin else ""
    return (_show_origin(origin) if origin else "an invalid URL") + path[:200]


def _looks_like_sign_in(url: str, same_site: bool) -> bool:
    parts = urlsplit(url)
    path = parts.path.lower()
    if same_site:
        return path.strip("/").split("/", 1)[0] in _SIGN_IN_SEGMENTS
    text = f"{(parts.hostname or '').lower()}{path}"
    return any(marker in text for marker in _SIGN_IN_MARKERS)


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
        f"timed out{after} waiting for {_show_url(url)}",
        problem=DownloadProblem.TIMEOUT,
        retryable=True,
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
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
