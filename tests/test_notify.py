"""systemd's notification protocol, seen from systemd's side: a real datagram socket in
$NOTIFY_SOCKET receives what the real daemon sends (READY, STATUS, WATCHDOG, STOPPING)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from daemonkit import DaemonProc, daemon
from util import csv_of, wait_until

pytestmark = [pytest.mark.timeout(120)]
FAKE = "fakeengine:FakeEngine"
BASE = "http://127.0.0.1:9"  # never contacted by the scripted engine


@dataclass
class Datagram:
    """One notification as systemd would receive it."""

    at: float  # time.monotonic() on arrival
    fields: dict[str, str]


@dataclass
class Listener:
    """Collects every datagram sent to a bound AF_UNIX socket, in a background thread."""

    sock: socket.socket
    received: list[Datagram] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return  # closed by the fixture
            if not data:
                return  # shut down by the fixture (sd_notify never sends an empty datagram)
            fields = {}
            for line in data.decode().split("\n"):
                key, _, value = line.partition("=")
                fields[key] = value
            with self.lock:
                self.received.append(Datagram(time.monotonic(), fields))

    def all(self) -> list[Datagram]:
        with self.lock:
            return list(self.received)

    def with_key(self, key: str, value: str | None = None) -> list[Datagram]:
        return [d for d in self.all()
                if key in d.fields and (value is None or d.fields[key] == value)]


@contextmanager
def listening(address: str) -> Iterator[Listener]:
    """Bind ``address`` (a path, or ``\\0name`` for the abstract namespace) and listen."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    listener = Listener(sock)
    thread = threading.Thread(target=listener.run, name="notify-listener", daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join(5)
        if not address.startswith("\0"):
            Path(address).unlink(missing_ok=True)




def pid_of(d: DaemonProc) -> int:
    assert d.proc is not None
    return d.proc.pid


def test_ready_status_watchdog_and_stopping_reach_the_notify_socket(tmp_path):
    address = str(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000", "COUPAD_FAKE_DELAY": "0.4"}
    with listening(address) as heard:
        with daemon(tmp_path, BASE, engine=FAKE, env=env,
                    pool={"workers": 2, "tabs_per_worker": 1}) as d:
            ready = wait_until(lambda: heard.with_key("READY", "1"), 30, what="READY=1")
            assert len(ready) == 1
            first = ready[0].fields
            assert first["MAINPID"] == str(pid_of(d))
            # READY once every slot's browser is warm: the STATUS sent with it says so.
            assert first["STATUS"].startswith("running: 2/2 workers up"), first
            # Before READY: progress of the start-up only (watchdog pings are harmless).
            before = heard.all()[: heard.all().index(ready[0])]
            assert all(set(m.fields) <= {"STATUS", "WATCHDOG"} for m in before), before

            d.drop("notified.csv", csv_of(*(f"1000{n}" for n in range(10, 22))))
            d.wait_report("notified", timeout=60)
            statuses = [m.fields["STATUS"] for m in heard.with_key("STATUS")
                        if m.at > ready[0].at]
            # The batch shows in the STATUS lines while it runs, then its end.
            assert any("POs in flight" in s and "1 open batches" in s for s in statuses), \
                statuses
            assert any(" 0 POs in flight" not in s and "POs to go" in s
                       and " 0 POs to go" not in s for s in statuses), statuses
            wait_until(lambda: heard.with_key("STATUS")[-1].fields["STATUS"].endswith(
                "0 open batches, 0 POs to go"), 15, what="a STATUS line after the batch")
            # STATUS is sent when it changes, not on every pass (a few dozen passes ran).
            texts = [m.fields["STATUS"] for m in heard.with_key("STATUS")]
            assert len(texts) < 3 * len(set(texts)), "\n".join(texts)

            # WATCHDOG=1 keeps coming at about half of WATCHDOG_USEC, also when idle.
            count = len(heard.with_key("WATCHDOG"))
            wait_until(lambda: len(heard.with_key("WATCHDOG")) >= count + 4, 10,
                       what="four more WATCHDOG=1 pings")
            pings = [m.at for m in heard.with_key("WATCHDOG", "1")]
            assert len(pings) >= 6
            gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
            # Measured on arrival in this process, so one late wake-up of the listener makes
            # one gap long and the next short: the mean shows the pace, the maximum a stall.
            mean = (pings[-1] - pings[0]) / len(gaps)
            assert 0.45 <= mean <= 0.8, gaps
            assert max(gaps) < 1.5, gaps
            assert not heard.with_key("STOPPING")

            assert d.terminate() == 0
            stopping = heard.with_key("STOPPING", "1")
            assert len(stopping) == 1
            assert stopping[0].at > pings[-1]


def test_ready_comes_when_no_browser_can_start_so_systemd_does_not_time_out(tmp_path):
    # A slot backing off counts as settled: the daemon serves its socket and inbox anyway,
    # and `coupactl status` says what is wrong; a start-up timeout would hide that.
    address = str(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": address, "COUPAD_FAKE_START": "fail"}
    with listening(address) as heard:
        with daemon(tmp_path, BASE, engine=FAKE, env=env,
                    pool={"workers": 2, "restart_backoff_max": 5.0}) as d:
            ready = wait_until(lambda: heard.with_key("READY", "1"), 30, what="READY=1")
            assert ready[0].fields["STATUS"].startswith("running: 0/2 workers up"), ready
            workers = d.status()["workers"]
            assert all("fake browser refuses to start" in w["last_error"] for w in workers)


def test_status_sent_with_ready_is_not_repeated_on_the_next_pass(tmp_path):
    address = str(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    with listening(address) as heard:
        with daemon(tmp_path, BASE, engine=FAKE, env=env, pool={"workers": 1}):
            ready = wait_until(lambda: heard.with_key("READY", "1"), 30, what="READY=1")
            # An idle daemon: passes go on (the pings show them), the status stays the same.
            wait_until(lambda: len(heard.with_key("WATCHDOG")) >= 4, 10, what="pings")
            texts = [m.fields["STATUS"] for m in heard.with_key("STATUS")]
            assert texts.count(ready[0].fields["STATUS"]) == 1, "\n".join(texts)


def test_abstract_namespace_notify_socket_works(tmp_path):
    name = f"coupad-test-{uuid.uuid4().hex}"
    env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000"}
    with listening("\0" + name) as heard:
        with daemon(tmp_path, BASE, engine=FAKE, env=env, pool={"workers": 1}) as d:
            ready = wait_until(lambda: heard.with_key("READY", "1"), 30, what="READY=1")
            assert ready[0].fields["MAINPID"] == str(pid_of(d))
            wait_until(lambda: len(heard.with_key("WATCHDOG", "1")) >= 2, 10,
                       what="WATCHDOG=1 pings")
            assert d.terminate() == 0
        assert len(heard.with_key("STOPPING", "1")) == 1


def test_watchdog_meant_for_another_pid_is_not_answered(tmp_path):
    # systemd sets WATCHDOG_PID to the main process; a child that inherited the variables
    # (or a daemon started by a wrapper) must not ping in its place.
    address = str(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    with listening(address) as heard:
        with daemon(tmp_path, BASE, engine=FAKE, env=env, pool={"workers": 1}) as d:
            wait_until(lambda: heard.with_key("READY", "1"), 30, what="READY=1")
            # Many loop passes: the daemon answers a status request from a fresh snapshot
            # only after passes, so waiting for two uptime ticks proves passes ran.
            start = d.status()["daemon"]["uptime_seconds"]
            wait_until(lambda: d.status()["daemon"]["uptime_seconds"] >= start + 1.5, 10,
                       what="loop passes")
            assert heard.with_key("READY", "1")
            assert not heard.with_key("WATCHDOG")


def test_a_notify_socket_nobody_listens_on_does_not_disturb_the_daemon(tmp_path):
    env = {"NOTIFY_SOCKET": str(tmp_path / "nobody.sock"), "WATCHDOG_USEC": "100000"}
    with daemon(tmp_path, BASE, engine=FAKE, env=env, pool={"workers": 1}) as d:
        d.drop("deaf.csv", csv_of("100031", "200032"))
        assert d.wait_report("deaf")["counts"] == {"COMPLETED": 1, "NO_ATTACHMENTS": 1}
        assert d.terminate() == 0
    assert not os.path.exists(tmp_path / "nobody.sock")
