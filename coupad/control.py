"""The control socket: newline-delimited JSON over a Unix socket, and its client.

Protocol (version 1). The client speaks first with a hello line, then one request per line;
every answer is one line:

    → {"hello": "coupactl", "protocol": 1}
    ← {"ok": true, "protocol": 1, "version": "0.1.0", "pid": 1234}
    → {"id": 1, "command": "status", "args": {}}
    ← {"id": 1, "ok": true, "result": {...}}
    ← {"id": 2, "ok": false, "error": {"code": "NO_SUCH_BATCH", "message": "..."}}

Error codes: PROTOCOL_VERSION, BAD_REQUEST, REQUEST_TOO_LARGE, UNKNOWN_COMMAND, TIMEOUT,
FORBIDDEN, plus the command's own (NO_SUCH_BATCH, ...). The socket is created with mode 0600,
or 0660 with the configured group; each peer's uid is checked with SO_PEERCRED (root, the
daemon's user, or a member of the configured group). A request line over ``MAX_LINE`` bytes,
or a client silent for ``IDLE_TIMEOUT`` seconds, is answered with an error and dropped;
neither disturbs the daemon. ``status`` is answered from the latest snapshot; every other
command is handed to the daemon's loop, which answers on its next pass.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import queue
import socket
import socketserver
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
IDLE_TIMEOUT = 10.0
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


class CommandFailed(Exception):
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
    """Serves the control socket from background threads, one per connection."""

    def __init__(
        self,
        path: Path,
        snapshot: Callable[[], dict[str, Any]],
        *,
        group: str = "",
        wake: Callable[[], None] = lambda: None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.path = path
        self.idle_timeout = idle_timeout
        self.snapshot = snapshot
        self.group = group
        self.wake = wake
        self.requests: queue.Queue[Request] = queue.Queue()
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None
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
        control = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = self.idle_timeout

            def handle(self) -> None:
                control._serve(self.connection, self.rfile, self.wfile)

        class Server(socketserver.ThreadingUnixStreamServer):
            request_queue_size = 128  # many coupactl calls at once wait, not fail
            daemon_threads = True

        old_umask = os.umask(0o177 if self._gid is None else 0o117)
        try:
            server = Server(str(self.path), Handler)
        finally:
            os.umask(old_umask)
        if self._gid is not None:
            os.chown(self.path, -1, self._gid)
            os.chmod(self.path, 0o660)
        else:
            os.chmod(self.path, 0o600)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="control",
                                        daemon=True)
        self._thread.start()
        log.info("control socket %s", self.path)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        while not self.requests.empty():
            self.requests.get_nowait().fail("SHUTTING_DOWN", "the daemon is stopping")

    # -- one connection ------------------------------------------------------------------

    def _serve(self, conn: socket.socket, rfile: Any, wfile: Any) -> None:
        def reply(message: dict[str, Any]) -> None:
            wfile.write(json.dumps(message, default=str).encode() + b"\n")
            wfile.flush()

        if not self._peer_allowed(conn):
            reply({"ok": False, "error": {"code": "FORBIDDEN",
                                           "message": "this user may not control coupad"}})
            return
        try:
            hello = self._read(rfile, reply)
            if hello is None:
                return
            if hello.get("protocol") != PROTOCOL:
                reply({"ok": False, "error": {
                    "code": "PROTOCOL_VERSION",
                    "message": f"this daemon speaks protocol {PROTOCOL}, "
                               f"the client {hello.get('protocol')!r}"}})
                return
            reply({"ok": True, "protocol": PROTOCOL, "version": __version__, "pid": os.getpid()})
            while True:
                message = self._read(rfile, reply)
                if message is None:
                    return
                reply(self._answer(message))
        except (OSError, ValueError) as exc:
            log.debug("control client dropped: %s", exc)

    def _read(self, rfile: Any, reply: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        try:
            line = rfile.readline(MAX_LINE + 1)
        except TimeoutError:
            reply({"ok": False, "error": {"code": "TIMEOUT", "message": "no request in time"}})
            return None
        if not line:
            return None
        if len(line) > MAX_LINE:
            reply({"ok": False, "error": {"code": "REQUEST_TOO_LARGE",
                                           "message": f"a request line may be {MAX_LINE} bytes"}})
            return None
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            reply({"ok": False, "error": {"code": "BAD_REQUEST", "message": "not JSON"}})
            return None
        if not isinstance(message, dict):
            reply({"ok": False, "error": {"code": "BAD_REQUEST",
                                           "message": "a request is a JSON object"}})
            return None
        return message

    def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        request_id = message.get("id")
        command = message.get("command")
        args = message.get("args", {})
        if not isinstance(command, str) or not isinstance(args, dict):
            return {"id": request_id, "ok": False, "error": {
                "code": "BAD_REQUEST", "message": "command must be a string, args an object"}}
        if command == "status":
            return {"id": request_id, "ok": True, "result": self.snapshot()}
        request = Request(command=command, args=args)
        self.requests.put(request)
        self.wake()
        if not request.done.wait(LOOP_TIMEOUT):
            return {"id": request_id, "ok": False, "error": {
                "code": "TIMEOUT", "message": "the daemon did not answer in time"}}
        if request.error is not None:
            code, text = request.error
            return {"id": request_id, "ok": False, "error": {"code": code, "message": text}}
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
