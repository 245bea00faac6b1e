"""A direct DevTools connection to one tab, to read pages without waiting in WebDriver's queue.

WebDriver runs one command at a time per browser and must switch to a tab before reading it
(~10 ms a switch, ~10 ms a script). The engine reads a loading page many times, in several
tabs at once, so those reads go over each tab's own DevTools WebSocket instead
(``ws://<debuggerAddress>/devtools/page/<handle>``; Chromium's window handles are its
target ids). A read is *sent* at once and its answer *collected* later: Chromium holds an
evaluation sent during a pending navigation until the new document has committed, so an
unanswered read simply means "not there yet", and no tab ever waits for another.

WebDriver still does everything that acts on a page (navigation, clicks, cookies). Without a
debugger address (a remote browser) or when a socket fails, the engine falls back to WebDriver
for that tab; nothing depends on this channel being there.

The connection sends no ``Origin`` header, which Chromium accepts without
``--remote-allow-origins``; the debugging port listens on the loopback interface only.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from typing import Any

import websocket

log = logging.getLogger("coupad.devtools")

CONNECT_TIMEOUT = 5.0


class ChannelError(Exception):
    """The tab's DevTools socket failed or answered with an error; fall back to WebDriver."""


class TabCrashed(ChannelError):
    """Chromium reported the tab's renderer gone (``Inspector.targetCrashed``)."""


class TabChannel:
    """One tab's DevTools socket: send an evaluation, collect its value when it is there."""

    def __init__(self, address: str, handle: str) -> None:
        try:
            self._ws = websocket.create_connection(
                f"ws://{address}/devtools/page/{handle}",
                timeout=CONNECT_TIMEOUT,
                suppress_origin=True,
                enable_multithread=False,
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise ChannelError(f"cannot reach the tab's DevTools socket: {exc}") from None
        self.handle = handle
        self._next_id = 0
        self.pending: int | None = None  # id of the evaluation sent and not yet answered
        # Inspector events say when the renderer crashes; an evaluation would wait forever.
        self._call("Inspector.enable")

    def fileno(self) -> int:
        """The socket, for ``select``."""
        return self._socket().fileno()

    def send(self, script: str, *args: Any) -> None:
        """Evaluate ``script`` (a WebDriver-style body: ``arguments[i]``, ``return``) with
        ``args``; the answer of an earlier unanswered evaluation is dropped."""
        expression = f"(function() {{\n{script}\n}}).apply(null, {json.dumps(list(args))})"
        self.pending = self._call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": False},
        )

    def _call(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        try:
            self._ws.send(json.dumps(message))
        except (OSError, websocket.WebSocketException) as exc:
            raise ChannelError(f"the tab's DevTools socket failed: {exc}") from None
        return self._next_id

    def evaluate(self, script: str, *args: Any, wait: float) -> tuple[bool, Any]:
        """Send an evaluation and wait up to ``wait`` seconds for it: ``(True, value)``, or
        ``(False, None)`` while the tab holds it (a navigation is pending); an evaluation
        still unanswered from before is waited for first, not sent twice."""
        if self.pending is not None:
            answered, _ = self.collect()
            if not answered:
                return False, None
        self.send(script, *args)
        deadline = time.monotonic() + wait
        while True:
            answered, value = self.collect()
            left = deadline - time.monotonic()
            if answered or left <= 0:
                return answered, value
            try:
                select.select([self._socket()], [], [], left)
            except (OSError, ValueError) as exc:
                raise ChannelError(f"the tab's DevTools socket failed: {exc}") from None

    def forget(self) -> None:
        """Drop the pending evaluation: its answer, if it comes, is ignored."""
        self.pending = None

    def collect(self) -> tuple[bool, Any]:
        """``(True, value)`` once the pending evaluation has answered, else ``(False, None)``."""
        while self.pending is not None:
            # Read only what has arrived: a frame that has begun arriving is read whole.
            try:
                readable, _, _ = select.select([self._socket()], [], [], 0)
            except (OSError, ValueError) as exc:
                raise ChannelError(f"the tab's DevTools socket failed: {exc}") from None
            if not readable:
                return False, None
            try:
                frame = self._ws.recv()
            except (OSError, websocket.WebSocketException) as exc:
                raise ChannelError(f"the tab's DevTools socket failed: {exc}") from None
            if not frame:
                raise ChannelError("the tab's DevTools socket closed")
            try:
                message = json.loads(frame)
            except ValueError:
                raise ChannelError("the tab's DevTools socket sent something that is not JSON") from None
            if not isinstance(message, dict):
                continue
            if message.get("method") == "Inspector.targetCrashed":
                raise TabCrashed("the tab crashed")
            if message.get("id") != self.pending:
                continue  # another event, or the answer to an evaluation given up on
            self.pending = None
            return True, _value(message)
        return False, None

    def _socket(self) -> socket.socket:
        sock = self._ws.sock
        if sock is None:
            raise ChannelError("the tab's DevTools socket is closed")
        return sock

    def close(self) -> None:
        try:
            self._ws.close(timeout=0.1)
        except (OSError, websocket.WebSocketException):
            pass


def _value(message: dict[str, Any]) -> Any:
    if "error" in message:
        error = message["error"]
        text = error.get("message") if isinstance(error, dict) else error
        raise ChannelError(f"DevTools refused the evaluation: {text}")
    result = message.get("result")
    if not isinstance(result, dict):
        raise ChannelError("DevTools answered without a result")
    if "exceptionDetails" in result:
        details = result["exceptionDetails"]
        text = details.get("exception", {}).get("description") or details.get("text")
        raise ChannelError(f"the page's script failed: {str(text)[:200]}")
    inner = result.get("result")
    return inner.get("value") if isinstance(inner, dict) else None


def debugger_address(driver: Any) -> str | None:
    """Where Chromium's DevTools listen for this browser (loopback only), if they are known."""
    try:
        options = driver.capabilities.get("goog:chromeOptions") or {}
    except Exception:  # a driver without capabilities: no channel, WebDriver does it all
        return None
    address = options.get("debuggerAddress") if isinstance(options, dict) else None
    if not isinstance(address, str):
        return None
    host = address.rsplit(":", 1)[0]
    return address if host in ("localhost", "127.0.0.1", "[::1]") else None
