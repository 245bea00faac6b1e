"""The Selenium Grid hub's own HTTP API, apart from WebDriver: what ``/status`` says of its
nodes, slots and sessions, and ending a session with ``DELETE /session/<id>``.

Every session coupad asks for carries ``coupad:instance`` (one value per state folder) and
``coupad:worker`` (:mod:`coupad.browser.remote`); Grid echoes them in ``/status``, which is how
:func:`sweep_sessions` and :class:`SessionSweeper` end the sessions a killed worker or daemon
left behind and never anybody else's. A user name and password in ``grid_url`` go to the Grid
as basic authentication and never into a log (:func:`coupad.config.redact_url`).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from coupad.config import redact_url
from coupad.errors import BrowserError

__all__ = [
    "GridStatus", "INSTANCE_CAP", "SessionSweeper", "WORKER_CAP", "bare_url",
    "delete_session", "grid_status", "keepalive_interval", "sweep_sessions",
]

log = logging.getLogger("coupad.browser")

INSTANCE_CAP = "coupad:instance"
WORKER_CAP = "coupad:worker"
KEEPALIVE_MAX = 60.0  # an idle remote browser is pinged at least this often
_STATUS_LIMIT = 8 << 20  # bytes of a /status answer read at most


@dataclass(frozen=True)
class GridStatus:
    """What the Grid's ``/status`` says, reduced to what coupad needs."""

    ready: bool
    message: str
    nodes: int  # nodes UP
    slots: int  # slots on nodes UP
    free: int  # free slots on nodes UP
    session_timeout: float | None  # the shortest node session-timeout, seconds
    sessions: tuple[tuple[str, str, str], ...]  # (session id, coupad:instance, coupad:worker)


def grid_status(grid_url: str, *, timeout: float = 5.0) -> GridStatus:
    """Read the Grid's ``/status``; BrowserError when it cannot be read."""
    shown = redact_url(grid_url)
    data = _request(grid_url, "GET", "/status", timeout=timeout)
    try:
        return _parse_status(data["value"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BrowserError(f"the Grid at {shown} answered /status with something else "
                           f"({type(exc).__name__}: {exc})") from None


def _parse_status(value: dict[str, Any]) -> GridStatus:
    nodes = [n for n in value.get("nodes", []) if n.get("availability") == "UP"]
    slots = free = 0
    sessions: list[tuple[str, str, str]] = []
    timeouts: list[float] = []
    for node in nodes:
        limit = node.get("sessionTimeout")
        if isinstance(limit, int | float) and not isinstance(limit, bool) and limit > 0:
            timeouts.append(limit / 1000)
        for slot in node.get("slots") or []:
            slots += 1
            session = slot.get("session") if isinstance(slot, dict) else None
            if not isinstance(session, dict):
                free += 1
                continue
            caps = session.get("capabilities")
            caps = caps if isinstance(caps, dict) else {}
            sessions.append((str(session.get("sessionId", "")), str(caps.get(INSTANCE_CAP, "")),
                             str(caps.get(WORKER_CAP, ""))))
    return GridStatus(ready=value.get("ready") is True, message=str(value.get("message", "")),
                      nodes=len(nodes), slots=slots, free=free,
                      session_timeout=min(timeouts) if timeouts else None,
                      sessions=tuple(sessions))


def keepalive_interval(session_timeout: float | None) -> float:
    """How often an idle remote browser is pinged so that a node's ``session-timeout`` never
    ends it: a third of the shortest time-out, at most :data:`KEEPALIVE_MAX`."""
    if session_timeout is None or session_timeout <= 0:
        return KEEPALIVE_MAX
    return max(0.5, min(KEEPALIVE_MAX, session_timeout / 3))


def sweep_sessions(grid_url: str, instance: str, *, keep: frozenset[str] = frozenset(),
                   timeout: float = 5.0) -> int:
    """End this daemon's sessions on the Grid (``coupad:instance`` = ``instance``) except those
    whose session id or ``coupad:worker`` is in ``keep`` (live workers'); return how many were
    ended. Sessions of anybody else are never touched."""
    if not instance:
        return 0
    ended = 0
    for session_id, owner, worker in grid_status(grid_url, timeout=timeout).sessions:
        if owner != instance or not session_id or session_id in keep or (worker and worker in keep):
            continue
        log.warning("ending leftover Grid session %s (worker %s)", session_id, worker or "?")
        if delete_session(grid_url, session_id, timeout=timeout):
            ended += 1
    return ended


class SessionSweeper:
    """Ends a daemon's leftover sessions on the Grid without ever blocking the daemon's loop:
    at start-up (all of ours: no worker lives yet), every ``every`` seconds (all but the live
    workers', so a killed worker's session does not wait for the node's session-timeout), each
    on a thread of its own, one at a time; and at exit (:meth:`final`, all of ours, bounded)."""

    def __init__(self, grid_url: str, instance: str, *, every: float = 30.0) -> None:
        self.grid_url = grid_url
        self.instance = instance
        self.every = every
        self._next = 0.0
        self._thread: threading.Thread | None = None

    def due(self, now: float, live: frozenset[str]) -> None:
        """Sweep now on a thread if it is time and none is running; ``live``: workers' names."""
        if now < self._next or (self._thread is not None and self._thread.is_alive()):
            return
        self._next = now + self.every
        self._thread = threading.Thread(target=self._sweep, args=(live,), name="grid-sweep",
                                        daemon=True)
        self._thread.start()

    def final(self, timeout: float = 10.0) -> int:
        """End every session of ours (the workers are gone); how many were ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            return sweep_sessions(self.grid_url, self.instance, timeout=min(5.0, timeout))
        except BrowserError as exc:
            log.warning("could not end this daemon's Grid sessions at exit: %s", exc)
            return 0

    def _sweep(self, live: frozenset[str]) -> None:
        started = time.monotonic()
        try:
            ended = sweep_sessions(self.grid_url, self.instance, keep=live)
        except BrowserError as exc:
            log.info("Grid sessions not swept: %s", exc)
            return
        if ended:
            log.info("ended %d leftover Grid session(s) in %.1f s", ended,
                     time.monotonic() - started)


def delete_session(grid_url: str, session_id: str, *, timeout: float) -> bool:
    """DELETE one session on the Grid; True when the Grid took it."""
    if not session_id.replace("-", "").isalnum():
        return False
    try:
        _request(grid_url, "DELETE", f"/session/{session_id}", timeout=timeout)
        return True
    except BrowserError as exc:
        log.info("could not end Grid session %s: %s", session_id, exc)
        return False


def _request(grid_url: str, method: str, path: str, *, timeout: float) -> Any:
    parts = urlsplit(grid_url)
    headers = {"Accept": "application/json"}
    if parts.username is not None:
        headers["Authorization"] = _basic(parts.username, parts.password)
    request = urllib.request.Request(bare_url(grid_url).rstrip("/") + path, method=method,
                                     headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    shown = redact_url(grid_url)
    try:
        with opener.open(request, timeout=timeout) as answer:
            body = answer.read(_STATUS_LIMIT + 1)
    except urllib.error.HTTPError as exc:
        raise BrowserError(f"the Grid at {shown} answered {method} {path} with HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise BrowserError(f"the Grid at {shown} did not answer {method} {path}: {exc}") from None
    if len(body) > _STATUS_LIMIT:
        raise BrowserError(f"the Grid at {shown} answered {method} {path} with too much")
    try:
        return json.loads(body) if body else None
    except (ValueError, RecursionError):
        raise BrowserError(f"the Grid at {shown} answered {method} {path} with something other "
                           "than JSON") from None


def _basic(user: str, password: str | None) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()


def bare_url(grid_url: str) -> str:
    """``grid_url`` without its user name and password."""
    parts = urlsplit(grid_url)
    if parts.username is None:
        return grid_url
    return grid_url.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1], 1)
