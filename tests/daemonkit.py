"""Run the real daemon as a subprocess in a temporary folder, and look at what it does."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from coupad.config import write_toml
from coupad.running import DaemonExited, DaemonRun
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


class DaemonProc(DaemonRun):
    """The harness's `coupad run` (coupad.running), with what tests look at besides: report
    rows and final folders. A daemon that ends while it should run fails the test at once."""

    def check_alive(self) -> None:
        try:
            super().check_alive()
        except DaemonExited as exc:
            raise AssertionError(str(exc)) from None

    def report_rows(self, stem: str) -> list[dict[str, str]]:
        import csv

        path = sorted(self.outbox.glob(f"{stem}.*.report.csv"))[0]
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle))

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
    except BaseException:
        # A failing test shows what the daemon said (pytest prints a failed test's output).
        print(f"--- the daemon's log ends:\n{proc.log(tail=8000)}")
        raise
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            try:
                proc.terminate(60)
            except subprocess.TimeoutExpired:
                proc.proc.kill()
                proc.proc.wait(10)
        # Workers notice a gone daemon within a second and take their browsers with them.
        wait_until(lambda: not our_processes(root), 30, what="no process of the test left")
