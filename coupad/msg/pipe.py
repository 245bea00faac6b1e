"""DevTools over a pipe (``--remote-debugging-pipe``): no port that anyone else could reach.

Chromium reads commands from its fd 3 and writes answers and events to its fd 4, each a JSON
object ended by a NUL byte. :class:`Pipe` is the parent's end: :meth:`Pipe.call` sends one
command and reads until its answer or its deadline, keeping the events that arrive meanwhile
for :meth:`Pipe.wait_event`. Writes and reads interleave, so a large command (a whole
document) cannot deadlock against a browser that is writing to us.
"""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Callable
from typing import Any

from coupad.errors import CoupadError

Event = tuple[str, dict[str, Any], str | None]  # method, params, session id
TICK = 0.25  # seconds between calls of a waiting caller's tick


class PipeError(CoupadError):
    """The browser refused a command, or the pipe broke."""


class PipeTimeout(PipeError):
    """No answer (or no awaited event) by the deadline."""


class Pipe:
    """The parent's end of a DevTools pipe: write to ``send_fd``, read from ``receive_fd``."""

    def __init__(self, send_fd: int, receive_fd: int) -> None:
        self._send_fd = send_fd
        self._receive_fd = receive_fd
        os.set_blocking(send_fd, False)
        self._buffer = bytearray()
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[Event] = []

    def close(self) -> None:
        for fd in (self._send_fd, self._receive_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        deadline: float,
        tick: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Send a command and return its result; PipeError/PipeTimeout otherwise.

        ``tick`` is called every :data:`TICK` seconds while waiting (it may raise to give up).
        """
        self._next_id += 1
        cid = self._next_id
        message: dict[str, Any] = {"id": cid, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        out = memoryview(json.dumps(message).encode() + b"\0")
        while out:
            ready_in, ready_out = self._wait(deadline, method, writing=True, tick=tick)
            if ready_out:
                try:
                    written = os.write(self._send_fd, out)
                except BlockingIOError:
                    written = 0
                except OSError as exc:
                    raise PipeError(f"{method}: the browser's pipe is closed ({exc})") from None
                out = out[written:]
            if ready_in:
                self._read()
        while cid not in self._answers:
            if self._wait(deadline, method, writing=False, tick=tick)[0]:
                self._read()
        answer = self._answers.pop(cid)
        if "error" in answer:
            error = answer["error"]
            text = error.get("message") if isinstance(error, dict) else error
            raise PipeError(f"{method}: {str(text)[:200]}")
        result = answer.get("result")
        return result if isinstance(result, dict) else {}

    def wait_event(
        self,
        match: Callable[[Event], bool],
        *,
        deadline: float,
        what: str,
        tick: Callable[[], None] | None = None,
    ) -> Event:
        """The first event (kept or arriving) that ``match`` accepts, taken off the list."""
        while True:
            for index, event in enumerate(self.events):
                if match(event):
                    return self.events.pop(index)
            if self._wait(deadline, what, writing=False, tick=tick)[0]:
                self._read()

    def _wait(
        self, deadline: float, what: str, *, writing: bool, tick: Callable[[], None] | None
    ) -> tuple[bool, bool]:
        """Wait until the pipe is readable (or writable, when ``writing``), a tick, or the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise PipeTimeout(f"{what}: no answer in time")
        writers = [self._send_fd] if writing else []
        wait = min(left, TICK) if tick is not None else left
        ready_in, ready_out, _ = select.select([self._receive_fd], writers, [], wait)
        if not ready_in and not ready_out:
            if tick is not None and time.monotonic() < deadline:
                tick()
                return False, False
            raise PipeTimeout(f"{what}: no answer in time")
        return bool(ready_in), bool(ready_out)

    def _read(self) -> None:
        try:
            chunk = os.read(self._receive_fd, 1 << 20)
        except OSError as exc:
            raise PipeError(f"reading the browser's pipe failed ({exc})") from None
        if not chunk:
            raise PipeError("the browser closed its pipe (it exited or crashed)")
        self._buffer += chunk
        while (end := self._buffer.find(b"\0")) >= 0:
            frame = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            try:
                message = json.loads(frame)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if type(message.get("id")) is int:
                self._answers[message["id"]] = message
            elif isinstance(message.get("method"), str):
                params = message.get("params")
                session = message.get("sessionId")
                self.events.append((
                    message["method"],
                    params if isinstance(params, dict) else {},
                    session if isinstance(session, str) else None,
                ))
