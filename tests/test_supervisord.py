"""coupad under real supervisord, configured by the shipped etc/supervisord.conf.

The test's supervisord.conf is the shipped one read with configparser, with only its paths
rewritten into the test's folder (and the test marker added to the program's environment), so
these tests prove the shipped choices: stopsignal=TERM drains, stopwaitsecs leaves room for
it, exitcodes=0,75 with autorestart=unexpected restarts only a crash.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from coupad.sim.testing import SimHandle, sim_server
from daemonkit import MARK, TESTS, final_folders, our_processes, write_config
from util import alive, wait_until

REPO = TESTS.parent
SHIPPED = REPO / "etc" / "supervisord.conf"
BIN = Path(sys.executable).parent
FAKE = "fakeengine:FakeEngine"
BASE = "http://127.0.0.1:9"  # never contacted by the scripted engine


@dataclass
class Supervised:
    """A running supervisord whose one program is coupad, and the daemon's folders."""

    root: Path
    conf: Path
    proc: subprocess.Popen[bytes]

    def ctl(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), *args],
                              capture_output=True, text=True, timeout=timeout)

    def state(self) -> str:
        """coupad's state as supervisorctl shows it: STARTING, RUNNING, STOPPED, EXITED..."""
        words = self.ctl("status", "coupad", timeout=30).stdout.split()
        return words[1] if len(words) > 1 and words[0] == "coupad" else ""

    def wait_state(self, state: str, timeout: float = 60) -> None:
        wait_until(lambda: self.state() == state, timeout, interval=0.2,
                   what=f"coupad {state} under supervisord")

    def pid(self) -> int:
        return int(self.ctl("pid", "coupad", timeout=30).stdout.strip())

    @property
    def supervisord_log(self) -> str:
        return (self.root / "supervisord.log").read_text(encoding="utf-8", errors="replace")

    @property
    def daemon_log(self) -> str:
        return (self.root / "coupad.log").read_text(encoding="utf-8", errors="replace")

    def status(self) -> dict[str, Any]:
        out = subprocess.run([str(BIN / "coupactl"), "--socket", str(self.socket), "status",
                              "--json"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    @property
    def socket(self) -> Path:
        return self.root / "state" / "coupad.sock"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    def drop(self, name: str, text: str) -> None:
        inbox = self.root / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        temp = inbox / f".{name}.tmp"
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, inbox / name)

    def finals(self) -> dict[str, str]:
        return final_folders(self.downloads)

    def summary(self, stem: str) -> dict[str, Any] | None:
        found = sorted((self.root / "outbox").glob(f"{stem}.*.summary.json"))
        return json.loads(found[0].read_text(encoding="utf-8")) if found else None


def supervisord_config(root: Path, daemon_config: Path, env: dict[str, str]) -> Path:
    """The shipped supervisord.conf with its paths moved into ``root``."""
    parser = configparser.RawConfigParser()
    assert parser.read(SHIPPED, encoding="utf-8") == [str(SHIPPED)]
    socket = root / "supervisor.sock"
    parser["supervisord"]["logfile"] = str(root / "supervisord.log")
    parser["supervisord"]["pidfile"] = str(root / "supervisord.pid")
    parser["unix_http_server"]["file"] = str(socket)
    parser["supervisorctl"]["serverurl"] = f"unix://{socket}"
    program = parser["program:coupad"]
    shipped_command = program["command"].split()
    assert shipped_command[:4] == ["coupad", "run", "-c", "%(here)s/coupad.toml"]
    program["command"] = f"{BIN / 'coupad'} run -c {daemon_config}"
    program["stdout_logfile"] = str(root / "coupad.log")
    program["environment"] = ",".join(f'{k}="{v}"' for k, v in {MARK: str(root), **env}.items())
    conf = root / "supervisord.conf"
    with open(conf, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return conf


@contextmanager
def supervised(root: Path, daemon_config: Path, env: dict[str, str]) -> Iterator[Supervised]:
    """supervisord (foreground, as shipped) running coupad; on exit shut it down and check
    that no process of the test is left."""
    conf = supervisord_config(root, daemon_config, {"PYTHONPATH": str(TESTS), **env})
    with open(root / "supervisord.out", "ab") as out:
        proc = subprocess.Popen([str(BIN / "supervisord"), "-c", str(conf)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=root)
    sv = Supervised(root, conf, proc)
    try:
        wait_until(lambda: proc.poll() is None and sv.state(), 30, interval=0.2,
                   what="supervisord to answer")
        yield sv
    finally:
        if proc.poll() is None:
            sv.ctl("shutdown")
        try:
            proc.wait(150)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        wait_until(lambda: not our_processes(root), 30, what="no process of the test left")


def browsers_on(profiles: Path) -> list[psutil.Process]:
    """Live Chromium processes whose profile is under ``profiles``."""
    marker = f"--user-data-dir={profiles}"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(
                    arg.startswith(marker) for arg in proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found




def no_orphans(sv: Supervised) -> bool:
    return not browsers_on(sv.root / "state" / "profiles") and not our_processes(sv.root)


# -- real Chromium: stop, start, restart a busy batch ----------------------------------


def scenario(first: int, count: int) -> dict[str, Any]:
    """``count`` POs, each with a link and a button attachment and a slow page."""
    return {"po": {
        str(n): {
            "supplier": f"Supplier {n % 3}",
            "page_delay": 0.5,
            "attachments": [
                {"name": f"Quote {n}.pdf", "size": 20_000 + n % 997, "shape": "link"},
                {"name": f"Terms {n}.docx", "size": 30_000 + n % 991, "shape": "button"},
            ],
        } for n in range(first, first + count)
    }}


def verify_folders(sv: Supervised, sim: SimHandle, pos: list[str]) -> None:
    """Each PO: one COMPLETED folder holding the simulator's files, byte for byte."""
    finals = sv.finals()
    for po in pos:
        truth = sim.truth(po)
        assert truth["outcome"] == "COMPLETED"
        assert finals[truth["po"]] == "COMPLETED"
        folder = sv.downloads / f"{truth['po']}_COMPLETED"
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        got = sorted((f["original_name"], hashlib.sha256((folder / f["name"]).read_bytes())
                      .hexdigest()) for f in manifest["files"])
        assert got == sorted((a["name"], a["sha256"]) for a in truth["attachments"])
    assert not list(sv.downloads.glob("*__WORK"))


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_stop_start_and_restart_with_a_busy_batch_stop_cleanly_and_the_batch_finishes(tmp_path):
    first, count = 74_000_100, 20
    pos = [str(n) for n in range(first, first + count)]
    with sim_server(scenario=scenario(first, count), render_delay=0.2) as sim:
        secret = tmp_path / "password"
        secret.write_text(sim.password, encoding="utf-8")
        secret.chmod(0o600)
        config = write_config(
            tmp_path, sim.base_url,
            coupa={"sign_in": "form", "username": sim.username, "password_file": str(secret)},
            pool={"workers": 1, "tabs_per_worker": 2},
        )
        with supervised(tmp_path, config, {}) as sv:
            sv.wait_state("RUNNING", 60)
            sv.drop("busy.csv", "PO_NUMBER\n" + "".join(f"{po}\n" for po in pos))
            wait_until(lambda: len(sv.finals()) >= 2, 120, what="a few POs done")
            first_pid = sv.pid()

            out = sv.ctl("stop", "coupad")
            assert out.returncode == 0 and "coupad: stopped" in out.stdout, out
            assert sv.state() == "STOPPED"
            assert "stopped: coupad (exit status 0)" in sv.supervisord_log
            assert "stopped (clean)" in sv.daemon_log
            wait_until(lambda: no_orphans(sv), 10, what="no browser left after the stop")
            done = sv.finals()
            assert len(done) < count, "the batch ended before the stop; make it longer"
            assert not list(sv.downloads.glob("*__WORK"))  # in-flight POs were finished

            out = sv.ctl("start", "coupad")
            assert out.returncode == 0 and "coupad: started" in out.stdout, out
            assert sv.state() == "RUNNING" and sv.pid() != first_pid
            wait_until(lambda: len(sv.finals()) >= len(done) + 2, 120,
                       what="work going on after the start")

            assert sv.summary("busy") is None, "the batch ended before the restart"
            out = sv.ctl("restart", "coupad")
            assert out.returncode == 0, out
            assert "coupad: stopped" in out.stdout and "coupad: started" in out.stdout
            assert sv.supervisord_log.count("stopped: coupad (exit status 0)") == 2
            assert "not expected" not in sv.supervisord_log

            summary = wait_until(lambda: sv.summary("busy"), 180, interval=0.2,
                                 what="the batch's report")
            assert summary["counts"] == {"COMPLETED": count}
            verify_folders(sv, sim, pos)
            # Clean stops finish what is in flight: no attachment was fetched twice.
            fetched = sim.counters()["attachments"]
            assert [key for key, n in fetched.items() if n > 1] == []
            assert sv.daemon_log.count("stopped (clean)") == 2
            assert sv.status()["daemon"]["state"] == "running"

            out = sv.ctl("stop", "coupad")
            assert out.returncode == 0
            wait_until(lambda: no_orphans(sv), 10, what="no browser left after the stop")


# -- scripted engine: what counts as a crash --------------------------------------------


@pytest.mark.timeout(120)
def test_kill_9_of_the_daemon_is_restarted_by_supervisord_and_the_batch_resumes(tmp_path):
    pos = [f"1001{n:02d}" for n in range(16)]
    config = write_config(tmp_path, BASE, pool={"workers": 2, "tabs_per_worker": 1})
    env = {"COUPAD_TEST_ENGINE": FAKE, "COUPAD_FAKE_DELAY": "0.4"}
    with supervised(tmp_path, config, env) as sv:
        sv.wait_state("RUNNING", 30)
        sv.drop("k9.csv", "PO Number\n" + "".join(f"{po}\n" for po in pos))
        wait_until(lambda: len(sv.finals()) >= 3 and sv.status()["totals"].get("LEASED") == 2,
                   30, what="some POs done, two in flight")
        old = sv.pid()
        workers = [w["pid"] for w in sv.status()["workers"] if w["pid"]]
        assert workers
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: sv.state() in ("STARTING", "RUNNING") and sv.pid() not in (0, old),
                   30, interval=0.2, what="supervisord to start coupad again")
        assert "exited: coupad (terminated by SIGKILL; not expected)" in sv.supervisord_log
        # The old workers noticed their daemon was gone and went with it.
        wait_until(lambda: not [p for p in workers if alive(p)], 15,
                   what="the old workers to go")
        summary = wait_until(lambda: sv.summary("k9"), 60, interval=0.2, what="the report")
        assert summary["counts"] == {"COMPLETED": len(pos)}
        assert sorted(sv.finals()) == sorted(f"PO{po}" for po in pos)
        assert "requeued" in sv.daemon_log  # the POs in flight at the kill went back
        sv.wait_state("RUNNING", 30)
        assert sv.status()["daemon"]["pid"] == sv.pid()


@pytest.mark.timeout(120)
def test_exit_0_and_exit_75_count_as_expected_and_are_not_restarted(tmp_path):
    config = write_config(tmp_path, BASE, pool={"workers": 1, "tabs_per_worker": 1})
    env = {"COUPAD_TEST_ENGINE": FAKE, "COUPAD_FAKE_DELAY": "60"}
    with supervised(tmp_path, config, env) as sv:
        sv.wait_state("RUNNING", 30)
        # `coupactl stop`: a clean exit the daemon chose; supervisord leaves it stopped.
        out = subprocess.run([str(BIN / "coupactl"), "-c", str(config), "stop"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        sv.wait_state("EXITED", 30)
        assert "exited: coupad (exit status 0; expected)" in sv.supervisord_log

        # A forced stop (second SIGTERM while a PO is in flight) exits 75: expected too.
        assert sv.ctl("start", "coupad").returncode == 0
        sv.drop("long.csv", "PO Number\n100201\n")
        wait_until(lambda: sv.status()["totals"].get("LEASED") == 1, 30, what="a PO in flight")
        pid = sv.pid()
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: sv.daemon_log.count("stopping: finishing in-flight POs") == 2, 10,
                   what="the drain to begin")
        os.kill(pid, signal.SIGTERM)
        sv.wait_state("EXITED", 30)
        assert "exited: coupad (exit status 75; expected)" in sv.supervisord_log
        assert "not expected" not in sv.supervisord_log
        assert sv.supervisord_log.count("spawned: 'coupad'") == 2  # never restarted by itself
        wait_until(lambda: no_orphans(sv), 10, what="no worker left after the forced stop")
