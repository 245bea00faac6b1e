"""The control socket and coupactl under attack (issue 13, items 7, 8 and 12): hostile batch
ids, hostile JSON, trickling clients, connection floods and an exhausted file table, against
real sockets, a real server process and the real daemon."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from coupad.control import ACCEPT_BACKOFF, MAX_CLIENTS, PROTOCOL, ControlClient, ControlServer
from daemonkit import DaemonProc, daemon
from util import wait_until

pytestmark = [pytest.mark.timeout(120)]
FAKE = "fakeengine:FakeEngine"
BASE = "http://127.0.0.1:9"  # never contacted by the scripted engine


def hello() -> bytes:
    return json.dumps({"hello": "coupactl", "protocol": PROTOCOL}).encode() + b"\n"


def strict_json(line: bytes) -> Any:
    """JSON as RFC 8259 has it: Infinity and NaN are not JSON."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def exchange(path: Path, *lines: bytes) -> list[bytes]:
    """Send each line and read one answer line for it; stop when the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        handle = sock.makefile("rwb")
        answers = []
        for line in lines:
            try:
                handle.write(line)
                handle.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            reply = handle.readline()
            if not reply:
                break
            answers.append(reply)
        return answers


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Iterator[DaemonProc]:
    """One daemon for the module, with a batch holding one FAILED PO (4xxxxx: throttled)."""
    root = tmp_path_factory.mktemp("control")
    with daemon(root, BASE, engine=FAKE, pool={"workers": 1, "tabs_per_worker": 2},
                tasks={"max_attempts": 1}) as proc:
        proc.drop("flaky.csv", "PO Number\n100081\n400082\n")
        assert proc.wait_report("flaky", timeout=60)["counts"] == {"COMPLETED": 1, "FAILED": 1}
        yield proc


def coupactl(d: DaemonProc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coupad.ctl", "--socket", str(d.socket), *args],
        capture_output=True, text=True, timeout=30, env=d.env,
    )


# -- item 7: retry with something that is not a batch id -----------------------------------


@pytest.mark.parametrize("given", ["", "0", "[]", "   "])
def test_retry_of_a_blank_or_bogus_id_is_refused_and_requeues_nothing(d, given):
    out = coupactl(d, "retry", given)
    assert out.returncode != 0, out.stdout
    assert "requeued" not in out.stdout
    assert "batch id" in out.stderr or "no batch" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not d.status()["batches"], "a failed PO was requeued"


@pytest.mark.parametrize("given", ["", 0, [], None, {"a": 1}, 1.5, True])
def test_retry_through_the_socket_with_a_non_id_is_refused(d, given):
    with ControlClient(d.socket, timeout=10) as client:
        answer = client._exchange({"id": 1, "command": "retry", "args": {"id": given}})
    assert answer["ok"] is False, answer
    assert answer["error"]["code"] in ("BAD_REQUEST", "NO_SUCH_BATCH"), answer
    assert not d.status()["batches"], "a failed PO was requeued"


# -- item 12: ids and JSON that are not JSON a reply can carry ------------------------------


def test_a_request_id_of_1e999_is_answered_with_valid_json(d):
    for request in (b'{"id": 1e999, "command": "status", "args": {}}\n',
                    b'{"id": -1e999, "command": "status"}\n', b'{"id": NaN, "command": "status"}\n',
                    b'{"id": 1' + b"0" * 5000 + b', "command": "status"}\n'):
        answers = exchange(d.socket, hello(), request)
        assert len(answers) == 2, answers
        refused = strict_json(answers[1])
        assert refused["ok"] is False and refused["error"]["code"] == "BAD_REQUEST", refused
    for bad_id in ('1.5e300', '{"a": 1}', '"' + "x" * 1000 + '"', 'true'):
        request = b'{"id": ' + bad_id.encode() + b', "command": "status"}\n'
        answers = exchange(d.socket, hello(), request)
        answer = strict_json(answers[1])
        assert answer["id"] is None and answer["error"]["code"] == "BAD_REQUEST", answer


def test_deeply_nested_json_is_refused_in_one_line_without_a_traceback(d):
    before = len(d.log(tail=None))
    for nested in (b"[" * 200_000 + b"]" * 200_000,
                   b'{"id": ' + b"[" * 5000 + b"]" * 5000 + b', "command": "status"}',
                   b'{"id": 1, "command": "retry", "args": {"id": ' + b"[" * 900 + b"]" * 900
                   + b"}}"):
        answers = exchange(d.socket, hello(), nested + b"\n")
        assert len(answers) == 2, answers
        error = strict_json(answers[1])
        assert error["ok"] is False and error["error"]["code"] == "BAD_REQUEST", error
    d.check_alive()
    assert d.status()["daemon"]["pid"] == d.proc.pid  # type: ignore[union-attr]
    assert "Traceback" not in d.log(tail=None)[before:]


# -- item 8: trickling clients, floods, an exhausted file table ----------------------------


def test_a_client_trickling_one_byte_at_a_time_is_dropped_at_the_request_deadline(tmp_path):
    srv = ControlServer(tmp_path / "c.sock", lambda: {"n": 1}, idle_timeout=1.0)
    srv.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(srv.path))
            started = time.monotonic()
            closed_after = None
            # One byte every 0.3 s never leaves the server idle for its 1 s, but a whole
            # request must arrive within that second.
            for byte in b'{"hello": "coupactl", "protocol": 1}':
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed_after = time.monotonic() - started
                    break
                time.sleep(0.3)
                if time.monotonic() - started > 4:
                    break
            reply = sock.makefile("rb").readline()
            closed_after = closed_after or time.monotonic() - started
        assert reply and json.loads(reply)["error"]["code"] == "TIMEOUT", reply
        assert closed_after < 3.0, f"dropped only after {closed_after:.1f} s"
    finally:
        srv.stop()


def test_connections_beyond_the_cap_are_refused_at_once_and_a_low_fd_limit_kills_nothing(d):
    proc = psutil.Process(d.proc.pid)  # type: ignore[union-attr]
    old = proc.rlimit(psutil.RLIMIT_NOFILE)
    # Room for the daemon's own files and the capped connections, not for 3x the cap.
    limit = proc.num_fds() + MAX_CLIENTS + 40
    proc.rlimit(psutil.RLIMIT_NOFILE, (limit, old[1]))
    silent: list[socket.socket] = []
    try:
        for _ in range(3 * MAX_CLIENTS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(d.socket))  # blocking: waits while the kernel's queue is full
            silent.append(sock)
        # The connection after the cap hears at once that the daemon is busy.
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.connect(str(d.socket))
        extra.settimeout(5)
        with extra:
            reply = extra.makefile("rb").readline()
        assert json.loads(reply)["error"]["code"] == "BUSY", reply
        assert proc.num_fds() < limit
        d.drop("during.csv", "PO Number\n100091\n")
        assert d.wait_report("during", timeout=30)["counts"] == {"COMPLETED": 1}
    finally:
        for sock in silent:
            sock.close()
        proc.rlimit(psutil.RLIMIT_NOFILE, old)
    wait_until(lambda: d.status()["daemon"]["pid"] == proc.pid, 20, what="status again")
    d.check_alive()


SERVER = """
import logging, os, socket, sys
from pathlib import Path
from coupad import logs
from coupad.control import ControlServer
attempts = 0
accept = socket.socket.accept
def counted(self):
    global attempts
    attempts += 1
    return accept(self)
socket.socket.accept = counted  # how often the server tries while it cannot accept
logs.setup("info")
srv = ControlServer(Path(sys.argv[1]), lambda: {"n": 1})
srv.start()
hoard = []
try:
    while True:
        hoard.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
print("full", flush=True)
while sys.stdin.readline() == "attempts\\n":
    print(attempts, flush=True)
for fd in hoard:
    os.close(fd)
print("freed", flush=True)
sys.stdin.readline()
srv.stop()
"""


def test_accept_survives_emfile_logging_once_and_backing_off(tmp_path):
    path = tmp_path / "c.sock"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(path)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: __import__("resource").setrlimit(
            __import__("resource").RLIMIT_NOFILE, (128, 128)),
    )
    assert server.stdin and server.stdout and server.stderr
    try:
        assert server.stdout.readline() == "full\n"
        waiting = []
        for _ in range(3):  # queued by the kernel; accepting them fails with EMFILE
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(path))
            waiting.append(sock)
        def attempts() -> int:
            server.stdin.write("attempts\n")
            server.stdin.flush()
            return int(server.stdout.readline())

        # It keeps trying (at least 4 attempts), but paced: a loop that spun on the readable
        # socket would make thousands of attempts in the time these take.
        started, first = time.monotonic(), attempts()
        wait_until(lambda: attempts() >= first + 4, 10, what="the server retrying accept")
        elapsed = time.monotonic() - started
        made = attempts() - first
        assert made <= elapsed / ACCEPT_BACKOFF + 3, f"{made} accept attempts in {elapsed:.1f} s"
        server.stdin.write("free\n")
        server.stdin.flush()
        assert server.stdout.readline() == "freed\n"
        for sock in waiting:
            sock.settimeout(10)
            sock.sendall(hello())
            assert json.loads(sock.makefile("rb").readline())["ok"] is True
            sock.close()
        with ControlClient(path, timeout=10) as client:
            assert client.call("status") == {"n": 1}
        server.stdin.write("stop\n")
        server.stdin.flush()
        assert server.wait(20) == 0
        err = server.stderr.read()
        assert err.count("cannot accept") == 1, err
        assert "Traceback" not in err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
