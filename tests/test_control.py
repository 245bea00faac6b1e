"""The control socket against hostile clients: protocol, size, garbage, load, other users."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from coupad.control import (
    MAX_LINE,
    PROTOCOL,
    CommandFailed,
    ControlClient,
    ControlServer,
    socket_in_use,
)
from coupad.errors import ControlError, DaemonNotRunning

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(tmp_path):
    """A control server whose 'daemon loop' is a thread answering from a small table."""
    path = tmp_path / "coupad.sock"
    srv = ControlServer(path, lambda: {"daemon": {"state": "running"}, "n": 42})
    srv.start()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                request = srv.requests.get(timeout=0.05)
            except Exception:
                continue
            if request.command == "echo":
                request.answer(request.args)
            elif request.command == "boom":
                request.fail(*_code(CommandFailed("NO_SUCH_BATCH", "no batch 'x'")))
            else:
                request.fail("UNKNOWN_COMMAND", f"unknown command {request.command!r}")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        stop.set()
        srv.stop()


def _code(exc: CommandFailed) -> tuple[str, str]:
    return exc.code, str(exc)


def raw(path: Path, *lines: bytes) -> list[dict]:
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
                pass  # the server may close early; its answer is still there to read
            reply = handle.readline()
            if not reply:
                break
            answers.append(json.loads(reply))
        return answers


def hello() -> bytes:
    return json.dumps({"hello": "coupactl", "protocol": PROTOCOL}).encode() + b"\n"


def test_status_is_answered_from_the_snapshot(server):
    with ControlClient(server.path) as client:
        assert client.call("status")["n"] == 42
        assert client.call("echo", a=1) == {"a": 1}


def test_socket_is_private_to_the_daemon_user(server):
    assert (os.stat(server.path).st_mode & 0o777) == 0o600


def test_wrong_protocol_version_is_refused(server):
    answers = raw(server.path, json.dumps({"hello": "x", "protocol": 99}).encode() + b"\n")
    assert answers[0]["error"]["code"] == "PROTOCOL_VERSION"


def test_garbage_bytes_get_bad_request_and_the_server_goes_on(server):
    answers = raw(server.path, hello(), b"\x00\xff\xfe garbage\n")
    assert answers[1]["error"]["code"] == "BAD_REQUEST"
    answers = raw(server.path, hello(), b"[1, 2, 3]\n")
    assert answers[1]["error"]["code"] == "BAD_REQUEST"
    with ControlClient(server.path) as client:
        assert client.call("status")["n"] == 42


def test_a_10_mb_line_is_refused_without_disturbing_the_daemon(server):
    big = b'{"id": 1, "command": "echo", "args": {"x": "' + b"a" * (10 * 1024 * 1024) + b'"}}\n'
    assert len(big) > MAX_LINE
    answers = raw(server.path, hello(), big)
    assert answers[1]["error"]["code"] == "REQUEST_TOO_LARGE"
    with ControlClient(server.path) as client:
        assert client.call("status")["n"] == 42


def test_unknown_command_and_command_errors_have_codes(server):
    with ControlClient(server.path) as client:
        with pytest.raises(ControlError, match="UNKNOWN_COMMAND"):
            client.call("format-disk")
        with pytest.raises(ControlError, match="NO_SUCH_BATCH"):
            client.call("boom")
        bad = client._exchange({"id": 3, "command": 7, "args": []})
        assert bad["error"]["code"] == "BAD_REQUEST"


def test_100_parallel_status_calls_are_all_served(server):
    def one(_: int) -> int:
        with ControlClient(server.path) as client:
            return int(client.call("status")["n"])

    with ThreadPoolExecutor(max_workers=100) as pool:
        assert list(pool.map(one, range(100))) == [42] * 100


def test_a_silent_client_is_dropped(tmp_path):
    srv = ControlServer(tmp_path / "c.sock", lambda: {"n": 1}, idle_timeout=0.3)
    srv.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(srv.path))
            # Say nothing: the server answers TIMEOUT after its idle limit and closes.
            reply = sock.makefile("rb").readline()
            assert json.loads(reply)["error"]["code"] == "TIMEOUT"
        with ControlClient(srv.path) as client:
            assert client.call("status") == {"n": 1}
    finally:
        srv.stop()


def test_stale_socket_file_is_replaced_and_live_one_refuses_a_second_server(tmp_path):
    path = tmp_path / "coupad.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a kill -9 leaves
    assert path.exists() and not socket_in_use(path)
    first = ControlServer(path, dict)
    first.start()
    try:
        assert socket_in_use(path)
        with pytest.raises(ControlError, match="another coupad already answers"):
            ControlServer(path, dict).start()
    finally:
        first.stop()
    assert not path.exists()


def test_client_without_daemon_says_not_running(tmp_path):
    with pytest.raises(DaemonNotRunning):
        ControlClient(tmp_path / "none.sock").connect()


@pytest.mark.skipif(os.getuid() != 0, reason="not root: cannot run a client as another uid")
def test_a_peer_with_another_uid_is_refused():
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="coupad-peer-", dir="/tmp"))
    os.chmod(folder, 0o755)
    srv = ControlServer(folder / "c.sock", lambda: {"n": 1})
    srv.start()
    try:
        os.chmod(srv.path, 0o666)  # let the other user connect, so SO_PEERCRED must refuse
        code = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "print(s.makefile('rb').readline().decode())\n"
        )
        out = subprocess.run(
            ["/usr/bin/python3", "-c", code, str(srv.path)], cwd="/",
            user=65534, group=65534, capture_output=True, text=True, timeout=30, check=True,
        )
        assert json.loads(out.stdout)["error"]["code"] == "FORBIDDEN"
    finally:
        srv.stop()
        shutil.rmtree(folder, ignore_errors=True)
