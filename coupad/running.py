"""A `coupad run` as a child process in a folder of its own: start it, talk to it over its
socket, drop input files, wait for a batch's report, stop it.

One harness for everything that runs the real daemon from outside: `coupad demo`, the tests
(``tests/daemonkit.py`` adds what only tests look at) and ``make bench`` (``bench/kit.py``
runs the daemon under its reaper through ``wrapper``). The folders and the socket are the
ones the daemon itself reads from its config file (with its environment), and its log is
``<root>/daemon.log``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from coupad import config as configuration
from coupad.control import ControlClient
from coupad.errors import CoupadError

T = TypeVar("T")


class DaemonExited(CoupadError):
    """The daemon ended while it was expected to run."""


@dataclass
class DaemonRun:
    root: Path
    config: Path
    env: dict[str, str] | None = None  # the daemon's environment (None: this one's)
    wrapper: Sequence[str] = ()  # a command the daemon runs under, e.g. a CPU-accounting reaper
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "daemon.log"

    @cached_property
    def _config(self) -> configuration.Config:
        """The daemon's configuration, as it loads it (ConfigError for one it would refuse)."""
        return configuration.load(self.config, env=self.env)

    @property
    def inbox(self) -> Path:
        return self._config.paths.inbox

    @property
    def outbox(self) -> Path:
        return self._config.paths.outbox

    @property
    def downloads(self) -> Path:
        return self._config.paths.downloads

    @property
    def socket(self) -> Path:
        return self._config.socket_path

    @property
    def journal(self) -> Path:
        return self._config.paths.journal

    # -- life ------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, *, running: bool = True) -> None:
        """Start the daemon and wait until its socket answers — with ``running``, until it
        has opened its journal and inbox too (its state is no longer "starting")."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.wrapper, sys.executable, "-m", "coupad", "run", "-c", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
            )

        def answers() -> bool:
            state = self.status()["daemon"]["state"]
            return not running or state != "starting"

        self.wait(answers, timeout, "the daemon's control socket", interval=0.02)

    def check_alive(self) -> None:
        """DaemonExited, with the end of its log, when the daemon has ended."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise DaemonExited(f"the daemon is not running (exit status {code}); its log ends:\n"
                               f"{self.log(tail=4000)}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (finish in-flight POs, then exit) and wait; the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        """SIGKILL the daemon process (its workers notice and follow with their browsers)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    # -- talking to it -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with ControlClient(self.socket, timeout=10) as client:
            return dict(client.call("status"))

    def call(self, command: str, **args: Any) -> Any:
        with ControlClient(self.socket, timeout=30) as client:
            return client.call(command, **args)

    def drop(self, name: str, text: str, folder: str = "", *, atomic: bool = True) -> Path:
        """Put an input file into the inbox (or its ``folder``: "high", "low"): atomically, as
        `coupactl submit` does, or written in place as a copy onto a share would be."""
        target_dir = self.inbox / folder if folder else self.inbox
        target_dir.mkdir(parents=True, exist_ok=True)
        final = target_dir / name
        if not atomic:
            with open(final, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            return final
        temp = target_dir / f".{name}.{uuid.uuid4().hex[:6]}.tmp"
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, final)
        return final

    def wait_report(self, stem: str, timeout: float = 120.0, interval: float = 0.1) -> dict[str, Any]:
        """Wait for the batch of input ``stem`` to end; its summary.json (written after the
        report, so the report is there too)."""
        def summary() -> Path | None:
            found = sorted(self.outbox.glob(f"{stem}.*.summary.json"))
            return found[0] if found else None

        path = self.wait(summary, timeout, f"the report of {stem}", interval=interval)
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def wait(self, predicate: Callable[[], T | None], timeout: float, what: str,
             interval: float = 0.05) -> T:
        """Call ``predicate`` until it returns something truthy, the daemon alive throughout:
        DaemonExited at once if it ends, TimeoutError after ``timeout``. A CoupadError or
        OSError from ``predicate`` (a socket not listening yet) means "not yet"."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            self.check_alive()
            try:
                value = predicate()
                if value:
                    return value
            except (CoupadError, OSError) as exc:
                last = f" (last: {exc})"
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s{last}")
            time.sleep(interval)

    def log(self, tail: int | None = 6000) -> str:
        """The daemon's log: its last ``tail`` characters (None: all of it)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text if tail is None else text[-tail:]
