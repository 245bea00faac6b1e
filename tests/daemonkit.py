"""Run the real daemon as a subprocess in a temporary folder, and look at what it does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from coupad.config import write_toml
from coupad.control import ControlClient
from coupad.errors import CoupadError
from util import wait_until

TESTS = Path(__file__).resolve().parent


def write_config(root: Path, base_url: str, **sections: dict[str, Any]) -> Path:
    """A config file in ``root``; ``sections`` override keys, e.g. pool={"workers": 1}."""
    values: dict[str, dict[str, Any]] = {
        "coupa": {"base_url": base_url},
        "inbox": {"quiet_seconds": 0.2},
        "pool": {"workers": 2, "tabs_per_worker": 2, "heartbeat_seconds": 0.5,
                 "lease_seconds": 10.0, "shutdown_timeout": 20.0},
        "tasks": {"retry_base_seconds": 0.2, "retry_max_seconds": 1.0, "max_attempts": 3},
    }
    for section, keys in sections.items():
        values.setdefault(section, {}).update(keys)
    return write_toml(root / "coupad.toml", values)


@dataclass
class DaemonProc:
    """A running `coupad run` and the folders it works in."""

    root: Path
    config: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "daemon.log"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def socket(self) -> Path:
        return self.root / "state" / "coupad.sock"

    def start(self, timeout: float = 60) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coupad", "run", "-c", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
            )
        wait_until(self._answers, timeout, what="the daemon's control socket")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
        try:
            # "starting": the socket answers before the inbox and journal are open.
            return bool(self.status()["daemon"]["state"] != "starting")
        except CoupadError:
            return False

    def status(self) -> dict[str, Any]:
        with ControlClient(self.socket, timeout=10) as client:
            return dict(client.call("status"))

    def call(self, command: str, **args: Any) -> Any:
        with ControlClient(self.socket, timeout=10) as client:
            return client.call(command, **args)

    def drop(self, name: str, text: str, folder: str = "") -> Path:
        """Write a file into the inbox atomically (as coupactl submit does)."""
        target_dir = self.inbox / folder if folder else self.inbox
        target_dir.mkdir(parents=True, exist_ok=True)
        temp = target_dir / f".{name}.{uuid.uuid4().hex[:6]}.tmp"
        temp.write_text(text, encoding="utf-8")
        final = target_dir / name
        os.replace(temp, final)
        return final

    def wait_report(self, stem: str, timeout: float = 120) -> dict[str, Any]:
        def summary() -> Path | None:
            self.check_alive()
            found = sorted(self.outbox.glob(f"{stem}.*.summary.json"))
            return found[0] if found else None

        path = wait_until(summary, timeout, interval=0.1, what=f"the report of {stem}")
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")

    def report_rows(self, stem: str) -> list[dict[str, str]]:
        import csv

        path = sorted(self.outbox.glob(f"{stem}.*.report.csv"))[0]
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle))

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def log(self, tail: int | None = 6000) -> str:
        """The daemon's log: its last ``tail`` characters (None: all of it)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            return text if tail is None else text[-tail:]
        except OSError:
            return ""

    def finals(self) -> dict[str, str]:
        return final_folders(self.downloads)


def final_folders(downloads: Path) -> dict[str, str]:
    """PO display name → final status, from the folder names alone (one folder per PO)."""
    result: dict[str, str] = {}
    for folder in downloads.rglob("PO*_*"):
        if folder.is_dir() and "__WORK" not in folder.name:
            po, _, status = folder.name.partition("_")
            assert po not in result, f"two final folders for {po}"
            result[po] = status
    return result


MARK = "COUPAD_TEST_ROOT"


def our_processes(root: Path) -> list[psutil.Process]:
    """Live processes started for the test in ``root``: the daemon, its workers and their
    browsers all inherit the marker variable the test put in the daemon's environment."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARK) == str(root):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@contextmanager
def daemon(root: Path, base_url: str, *, engine: str | None = None,
           env: dict[str, str] | None = None, **sections: dict[str, Any]) -> Iterator[DaemonProc]:
    """Start a daemon; on exit stop it (SIGTERM, then SIGKILL) and check nothing is left."""
    config = write_config(root, base_url, **sections)
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), MARK: str(root), **(env or {})}
    if engine:
        full_env["COUPAD_TEST_ENGINE"] = engine
    proc = DaemonProc(root=root, config=config, env=full_env)
    proc.start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            try:
                proc.terminate(60)
            except subprocess.TimeoutExpired:
                proc.proc.kill()
                proc.proc.wait(10)
        # Workers notice a gone daemon within a second and take their browsers with them.
        wait_until(lambda: not our_processes(root), 30, what="no process of the test left")
