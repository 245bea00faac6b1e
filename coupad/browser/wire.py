"""The DevTools socket: one WebSocket to a browser's endpoint, carrying JSON objects.

Besides the socket itself (:class:`Wire`), this is where the browser-level endpoint of a
WebDriver session is found (:func:`browser_endpoint`) and where the errors of a DevTools
connection are defined. The commands, deadlines and tabs on top of it are
:class:`coupad.browser.cdp.Connection`'s.

The browser-level endpoint (``ws://…/devtools/browser/<id>``) is the only one Selenium Grid
exposes (capability ``se:cdp``), and one socket serves every tab.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import ssl
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import websocket

from coupad.errors import CoupadError

# The socket is a part of the DevTools connection, and logs as it.
log = logging.getLogger("coupad.browser.cdp")

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class CdpError(CoupadError):
    """The browser's DevTools connection failed, or the browser refused a command."""


class CdpTimeout(CdpError):
    """A command got no answer by its deadline."""


class ConnectionLost(CdpError):
    """The socket closed, broke or went silent; :meth:`Connection.reconnect` opens a new one."""


class TargetCrashed(CdpError):
    """The tab a command was sent to crashed: its renderer is gone and will never answer."""


def browser_endpoint(driver: Any, *, timeout: float = 2.0) -> str | None:
    """The browser-level DevTools WebSocket URL of a WebDriver session, if it has one.

    On Selenium Grid that is the ``se:cdp`` capability (its ``debuggerAddress`` names a port
    on the node, not here, so it is never used when ``se:cdp`` is present). Locally it is
    ``webSocketDebuggerUrl`` from ``http://<debuggerAddress>/json/version``, for a loopback
    address only.
    """
    try:
        capabilities = driver.capabilities
    except Exception:  # a driver without capabilities: no DevTools, WebDriver does it all
        return None
    if not isinstance(capabilities, dict):
        return None
    remote = capabilities.get("se:cdp")
    if remote is not None:
        if isinstance(remote, str) and urlsplit(remote).scheme in ("ws", "wss"):
            return remote
        return None
    options = capabilities.get("goog:chromeOptions")
    address = options.get("debuggerAddress") if isinstance(options, dict) else None
    if not isinstance(address, str) or address.rsplit(":", 1)[0].strip("[]") not in _LOOPBACK:
        return None
    # No proxy: a loopback address behind an http_proxy setting would be somebody else's.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}/json/version", timeout=timeout) as answer:
            version = json.loads(answer.read(1 << 16))
    except (OSError, ValueError) as exc:
        log.debug("no DevTools version answer from %s: %s", address, exc)
        return None
    url = version.get("webSocketDebuggerUrl") if isinstance(version, dict) else None
    if not isinstance(url, str) or urlsplit(url).scheme != "ws":
        return None
    return url


class Wire:
    """An open WebSocket to a DevTools endpoint; every failure is a ConnectionLost."""

    def __init__(self, endpoint: str, *, timeout: float) -> None:
        try:
            self._ws = websocket.create_connection(
                endpoint,
                timeout=timeout,
                suppress_origin=True,  # Chromium refuses an Origin it was not told to allow
                enable_multithread=False,
                skip_utf8_validation=True,  # a bad frame is dropped here, not fatal there
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionLost(f"cannot reach the browser's DevTools: {error_text(exc)}") from None
        self.last_heard = time.monotonic()  # when a frame last arrived, of any kind

    def socket(self) -> socket.socket:
        """The underlying socket, for ``select``."""
        sock = self._ws.sock
        if sock is None:
            raise ConnectionLost("the DevTools connection is closed")
        return sock

    def readable(self, wait: float) -> bool:
        """Whether a frame can be read now, waiting up to ``wait`` seconds for one."""
        sock = self.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # decrypted bytes already buffered: select would not see them
        try:
            ready, _, _ = select.select([sock], [], [], max(wait, 0.0))
        except (OSError, ValueError) as exc:
            raise ConnectionLost(f"the socket failed: {error_text(exc)}") from None
        return bool(ready)

    def close(self) -> None:
        """Close the socket, quietly."""
        try:
            self._ws.close(timeout=0.1)
        except (OSError, websocket.WebSocketException):
            pass

    def send(self, message: dict[str, Any]) -> None:
        """Write one command (a dict with its ``method``) as a JSON text frame."""
        try:
            self._ws.send(json.dumps(message))
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionLost(f"sending {message['method']} failed: {error_text(exc)}") from None

    def receive(self) -> dict[str, Any] | None:
        """Read one frame (blocking): its JSON object, or None for anything else.

        A ping or pong is None (the library answers it, and it is proof of life), and so is a
        frame that is not a JSON object (logged and dropped). The browser closing the socket,
        or a failed read, raises ConnectionLost.
        """
        try:
            opcode, frame = self._ws.recv_data_frame(True)
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionLost(f"reading failed: {error_text(exc)}") from None
        self.last_heard = time.monotonic()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionLost("the browser closed the connection")
        if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            return None
        data = frame.data
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            log.warning("dropped a DevTools frame that is not JSON (%d bytes)", len(data))
            return None
        if not isinstance(message, dict):
            log.warning("dropped a DevTools frame that is not an object (%d bytes)", len(data))
            return None
        return message


def error_text(exc: BaseException) -> str:
    """The first line of an exception's message (or its type), at most 200 characters."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
