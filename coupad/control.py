"""The control socket: newline-delimited JSON over a Unix socket, and its client.

Protocol (version 1). The client speaks first with a hello line, then one request per line;
every answer is one line:

    → {"hello": "coupactl", "protocol": 1}
    ← {"ok": true, "protocol": 1, "version": "0.1.0", "pid": 1234}
    → {"id": 1, "command": "status", "args": {}}
    ← {"id": 1, "ok": true, "result": {...}}
    ← {"id": 2, "ok": false, "error": {"code": "NO_SUCH_BATCH", "message": "..."}}

Error codes: PROTOCOL_VERSION, BAD_REQUEST, REQUEST_TOO_LARGE, UNKNOWN_COMMAND, TIMEOUT,
FORBIDDEN, BUSY, plus the command's own (NO_SUCH_BATCH, ...). The socket is created with mode
0600, or 0660 with the configured group; each peer's uid is checked with SO_PEERCRED (root,
the daemon's user, or a member of the configured group).

Hostile clients cost the daemon little and never stop it. A request is strict JSON (no NaN,
no 1e999, at most ``MAX_DEPTH`` levels deep) of at most ``MAX_LINE`` bytes, and must arrive
whole within ``REQUEST_DEADLINE`` seconds however slowly it trickles; otherwise it is answered
with an error and the connection dropped. At most ``MAX_CLIENTS`` connections are served at
once; the next one hears BUSY at once and is closed. When the process runs out of file
descriptors, accepting pauses (logged once) and resumes when some are free. ``status`` is
answered from the latest snapshot; every other command is handed to the daemon's loop, which
answers on its next pass.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import math
import os
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coupad import __version__
from coupad.errors import ControlError, DaemonNotRunning

log = logging.getLogger("coupad.control")

PROTOCOL = 1
MAX_LINE = 1024 * 1024
MAX_DEPTH = 32  # lists and objects in a request; coupactl's own requests nest 2 deep
REQUEST_DEADLINE = 10.0  # for each whole request line, from when the server waits for it
IDLE_TIMEOUT = REQUEST_DEADLINE  # the name older callers pass
# Connections served at once: each holds a thread and a file descriptor. 64 is far above
# what coupactl and monitoring need, and far below the 1,024 descriptors of a default limit.
MAX_CLIENTS = 64
BACKLOG = 128  # connections the kernel queues for accept(); more wait in connect()
ACCEPT_BACKOFF = 0.5  # seconds between accept() attempts while the file table is full
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
LOOP_TIMEOUT = 30.0  # how long a command may wait for the daemon's loop


@dataclass
class Request:
    """A command waiting for the daemon's loop to answer it."""

    command: str
    args: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: tuple[str, str] | None = None

    def answer(self, result: Any) -> None:
        self.result = result
        self.done.set()

    def fail(self, code: str, message: str) -> None:
        self.error = (code, message)
        self.done.set()


class CommandFailed(ControlError):
    """Raised by a command handler: becomes an error answer with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def socket_in_use(path: Path) -> bool:
    """True when a live daemon answers on ``path``; a stale socket file is not in use."""
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except (TimeoutError, ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return False
    finally:
        probe.close()


class ControlServer:
    """Serves the control socket: one thread accepts, one thread per connection answers."""

    def __init__(
        self,
        path: Path,
        snapshot: Callable[[], dict[str, Any]],
        *,
        group: str = "",
        wake: Callable[[], None] = lambda: None,
        idle_timeout: float = REQUEST_DEADLINE,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.path = path
        self.deadline = idle_timeout
        self.max_clients = max_clients
        self.snapshot = snapshot
        self.group = group
        self.wake = wake
        self.requests: queue.Queue[Request] = queue.Queue()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._waker_r, self._waker_w = socket.socketpair()
        self._clients = 0
        self._lock = threading.Lock()
        self._gid: int | None = grp.getgrnam(group).gr_gid if group else None

    def start(self) -> None:
        if socket_in_use(self.path):
            raise ControlError(
                f"another coupad already answers on {self.path}; stop it first "
                "(`coupactl stop`) or configure another state folder"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.unlink()  # stale: nobody answered on it
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177 if self._gid is None else 0o117)
        try:
            listener.bind(str(self.path))
        except BaseException:
            listener.close()
            raise
        finally:
            os.umask(old_umask)
        listener.listen(BACKLOG)
        listener.setblocking(False)
        if self._gid is not None:
            os.chown(self.path, -1, self._gid)
            os.chmod(self.path, 0o660)
        else:
            os.chmod(self.path, 0o600)
        self._listener = listener
        # Made here, not in the thread: a file table that fills up meanwhile cannot stop it.
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        selector.register(self._waker_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._accept_loop, args=(selector,),
                                        name="control", daemon=True)
        self._thread.start()
        log.info("control socket %s", self.path)

    def stop(self) -> None:
        if self._listener is not None:
            self._stopping.set()
            self._waker_w.send(b"x")
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._listener.close()
            self._listener = None
            self._waker_r.close()
            self._waker_w.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        while not self.requests.empty():
            self.requests.get_nowait().fail("SHUTTING_DOWN", "the daemon is stopping")

    # -- accepting ---------------------------------------------------------------------

    def _accept_loop(self, selector: selectors.BaseSelector) -> None:
        assert self._listener is not None
        listener = self._listener
        starved = False  # the last accept failed for want of file descriptors
        with selector:
            while not self._stopping.is_set():
                selector.select()
                if self._stopping.is_set():
                    return
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    if exc.errno not in _OUT_OF_FILES:
                        log.debug("accept on the control socket failed: %s", exc)
                        continue
                    if not starved:
                        log.error("cannot accept control connections: %s; retrying every "
                                  "%.1f s (see LimitNOFILE)", exc.strerror, ACCEPT_BACKOFF)
                        starved = True
                    # The pending connection keeps the socket readable: pause, don't spin.
                    self._stopping.wait(ACCEPT_BACKOFF)
                    continue
                if starved:
                    log.info("accepting control connections again")
                    starved = False
                self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        """Serve a new connection on its own thread, or refuse it at once when at the cap."""
        with self._lock:
            full = self._clients >= self.max_clients
            if not full:
                self._clients += 1
        if full:
            _refuse(conn, "BUSY", f"the daemon serves {self.max_clients} control connections "
                                  "already; try again")
            return
        try:
            threading.Thread(target=self._connection, args=(conn,), name="control-client",
                             daemon=True).start()
        except RuntimeError:  # no thread to be had: the same answer as the cap
            self._release()
            _refuse(conn, "BUSY", "the daemon cannot take another control connection now")

    def _release(self) -> None:
        with self._lock:
            self._clients -= 1

    def _connection(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        except OSError as exc:
            log.debug("control client dropped: %s", exc)
        finally:
            conn.close()
            self._release()

    # -- one connection ------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        lines = _LineReader(conn)

        def reply(message: dict[str, Any]) -> None:
            conn.settimeout(self.deadline)  # a client that never reads is not waited for
            conn.sendall(_encode(message))

        if not self._peer_allowed(conn):
            reply(_error("FORBIDDEN", "this user may not control coupad"))
            return
        hello = self._read(lines, reply)
        if hello is None:
            return
        if hello.get("protocol") != PROTOCOL:
            protocol = hello.get("protocol")
            shown = repr(protocol)[:20] if isinstance(protocol, (int, float, str)) else "none"
            reply(_error("PROTOCOL_VERSION",
                         f"this daemon speaks protocol {PROTOCOL}, the client {shown}"))
            return
        reply({"ok": True, "protocol": PROTOCOL, "version": __version__, "pid": os.getpid()})
        while True:
            message = self._read(lines, reply)
            if message is None:
                return
            reply(self._answer(message))

    def _read(self, lines: _LineReader,
              reply: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        """The next request, or None after answering why the connection ends."""
        try:
            line = lines.read(time.monotonic() + self.deadline)
        except _TooLarge:
            reply(_error("REQUEST_TOO_LARGE", f"a request line may be {MAX_LINE} bytes"))
            return None
        except TimeoutError:
            reply(_error("TIMEOUT", f"no whole request within {self.deadline:g} s"))
            return None
        if line is None:
            return None
        message, problem = _decode(line)
        if problem is not None:
            reply(_error("BAD_REQUEST", problem))
            return None
        return message

    def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        request_id = message.get("id")
        if not _valid_id(request_id):
            return {"id": None, **_error(
                "BAD_REQUEST", "id must be an integer, a string of at most 100 characters "
                               "or null")}
        command = message.get("command")
        args = message.get("args", {})
        if not isinstance(command, str) or not isinstance(args, dict):
            return {"id": request_id, **_error(
                "BAD_REQUEST", "command must be a string, args an object")}
        if command == "status":
            return {"id": request_id, "ok": True, "result": self.snapshot()}
        request = Request(command=command, args=args)
        self.requests.put(request)
        self.wake()
        if not request.done.wait(LOOP_TIMEOUT):
            return {"id": request_id, **_error("TIMEOUT", "the daemon did not answer in time")}
        if request.error is not None:
            code, text = request.error
            return {"id": request_id, **_error(code, text)}
        return {"id": request_id, "ok": True, "result": request.result}

    def _peer_allowed(self, conn: socket.socket) -> bool:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, gid = struct.unpack("3i", creds)
        if uid in (0, os.getuid()):
            return True
        if self._gid is None:
            return False
        if gid == self._gid:
            return True
        try:
            import pwd

            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            return False
        return user in grp.getgrgid(self._gid).gr_mem


class _TooLarge(Exception):
    """A request line longer than MAX_LINE."""


class _LineReader:
    """Lines from a socket, each of which must arrive whole before a deadline."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buffer = bytearray()

    def read(self, deadline: float) -> bytes | None:
        """The next line; None when the client closed; TimeoutError past the deadline."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end + 1])
                del self._buffer[:end + 1]
                if len(line) > MAX_LINE:
                    raise _TooLarge
                return line
            if len(self._buffer) > MAX_LINE:
                raise _TooLarge
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            # The deadline is for the whole line: a byte now and then does not extend it.
            self._conn.settimeout(remaining)
            try:
                chunk = self._conn.recv(65536)
            except TimeoutError:
                raise
            except OSError:
                return None
            if not chunk:
                return None
            self._buffer += chunk


def _decode(line: bytes) -> tuple[dict[str, Any], None] | tuple[None, str]:
    """A request object, or why the line is not one (in a few words, no traceback)."""
    try:
        message = json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        return None, f"JSON nested deeper than {MAX_DEPTH} levels"
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError, NaN, 1e999, 5,000 digits
        return None, "not JSON"
    if not isinstance(message, dict):
        return None, "a request is a JSON object"
    if _depth_over(message, MAX_DEPTH):
        return None, f"JSON nested deeper than {MAX_DEPTH} levels"
    return message, None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether lists and objects nest deeper than ``limit`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _valid_id(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**63
    return isinstance(value, str) and len(value) <= 100


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def _encode(message: dict[str, Any]) -> bytes:
    """One answer line of strict JSON: a non-finite number goes out as null, not Infinity."""
    try:
        return json.dumps(message, default=str, allow_nan=False).encode() + b"\n"
    except ValueError:
        return json.dumps(_finite(message), default=str, allow_nan=False).encode() + b"\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _refuse(conn: socket.socket, code: str, message: str) -> None:
    """Answer a connection that will not be served with one error line, and close it."""
    try:
        conn.setblocking(False)  # a fresh socket's buffer takes one short line
        conn.send(_encode(_error(code, message)))
    except OSError:
        pass
    finally:
        conn.close()


class ControlClient:
    """Talks to a running daemon; one connection, several requests."""

    def __init__(self, path: Path, timeout: float = LOOP_TIMEOUT + 5) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._next_id = 0

    def __enter__(self) -> ControlClient:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def connect(self) -> dict[str, Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            for attempt in range(50):
                try:
                    sock.connect(str(self.path))
                    break
                except BlockingIOError:  # the daemon's accept queue is full: wait a moment
                    if attempt == 49:
                        raise ControlError("the daemon is too busy to accept a connection") from None
                    time.sleep(0.02 * (attempt + 1))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise DaemonNotRunning(f"coupad is not running (no answer on {self.path})") from exc
        except PermissionError as exc:
            sock.close()
            raise ControlError(f"not allowed to use {self.path}: {exc.strerror}") from exc
        self._sock = sock
        self._file = sock.makefile("rwb")
        hello = self._exchange({"hello": "coupactl", "protocol": PROTOCOL})
        if not hello.get("ok"):
            error = hello.get("error", {})
            raise ControlError(f"{error.get('code')}: {error.get('message')}")
        return hello

    def call(self, command: str, **args: Any) -> Any:
        """Run one command; return its result or raise ControlError with the daemon's words."""
        if self._sock is None:
            self.connect()
        self._next_id += 1
        answer = self._exchange({"id": self._next_id, "command": command, "args": args})
        if not answer.get("ok"):
            error = answer.get("error", {})
            raise ControlError(f"{error.get('message')} ({error.get('code')})")
        return answer.get("result")

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self._file is not None
        try:
            self._file.write(json.dumps(message).encode() + b"\n")
            self._file.flush()
            line = self._file.readline(MAX_LINE * 64)
        except (TimeoutError, OSError) as exc:
            raise ControlError(f"the daemon did not answer: {exc}") from exc
        if not line:
            raise ControlError("the daemon closed the connection")
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise ControlError("the daemon sent something that is not an answer")
        return answer

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None
