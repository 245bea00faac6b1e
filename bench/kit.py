"""What every benchmark part uses: the simulator as a process, the real daemon under a
subreaper, CPU and memory of a process tree, waiting for conditions.

Nothing here imports from tests/: the benchmark drives the installed commands (``coupad sim``,
``coupad run``, ``coupactl``) as a user would, and reads the control socket with
:class:`coupad.control.ControlClient`. (bench/grid.py alone starts its Selenium Grid with the
tests' launcher, tests/gridkit.py: one copy of how a Grid is run on this machine.)
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

from coupad.config import write_toml
from coupad.running import DaemonRun
from coupad import config as configuration
from coupad.browser import Browser, BrowserSpec
from coupad.engine import Engine

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
MARK = "COUPAD_BENCH_ROOT"  # every process the benchmark starts carries this variable
T = TypeVar("T")


def log(message: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str,
             interval: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(interval)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- process trees ---------------------------------------------------------------------------


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and every live descendant with theirs.

    Each process is read once, so a child counts either live (its own times) or reaped (in
    its parent's children times), never both — except for one reaped between two reads.
    """
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_cpu_by_kind(pid: int) -> dict[str, float]:
    """CPU seconds of a process tree as :func:`tree_cpu` counts it, split by kind of process:
    the daemon, its workers, chromedriver, and Chromium's browser, renderer
    (renderers and the zygote that forks and reaps them), gpu and utility processes.

    A difference of two calls splits CPU by kind only while no process of the tree exits in
    between: an exited process's time moves into its reaper's kind.
    """
    found: dict[str, float] = {}
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True)
    except psutil.Error:
        return found
    for proc in procs:
        try:
            t = proc.cpu_times()
            kind = _kind(proc.cmdline())
        except psutil.Error:
            continue
        found[kind] = found.get(kind, 0.0) + t.user + t.system + t.children_user + t.children_system
    return found


def _kind(cmdline: list[str]) -> str:
    if not cmdline:
        return "other"
    program = Path(cmdline[0]).name
    if "chromedriver" in program:
        return "chromedriver"
    if "chrom" in program:
        kind = next((a.split("=", 1)[1] for a in cmdline if a.startswith("--type=")), "browser")
        return {"zygote": "renderer", "gpu-process": "gpu"}.get(kind, kind)
    if "python" in program:
        return "daemon" if "coupad" in cmdline and "run" in cmdline else "workers"
    return "other"


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and all its descendants, in MB."""
    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


def marked(root: Path) -> list[psutil.Process]:
    """Live processes that carry this run's marker (a leftover after everything stopped)."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            if proc.environ().get(MARK) == str(root):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def bench_env(root: Path) -> dict[str, str]:
    return {**os.environ, MARK: str(root), "PYTHONUNBUFFERED": "1"}


# ---- the simulator ---------------------------------------------------------------------------


@dataclass
class Sim:
    """A `coupad sim` process: where it listens and what it has served."""

    proc: subprocess.Popen[str]
    base_url: str

    def counters(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/_sim/counters", timeout=10) as answer:
            return dict(json.load(answer))

    def po_pages(self) -> int:
        """How many PO pages the simulator has been asked for."""
        paths = self.counters()["paths"]
        return sum(n for path, n in paths.items()
                   if path.startswith("/order_headers/") and path.count("/") == 2)

    def cpu(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system


@contextmanager
def simulator(root: Path, preset: str, scenario_file: Path) -> Iterator[Sim]:
    """Run `coupad sim` with a preset and a scenario file until the block ends."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "coupad", "sim", "--port", "0", "--idp-port", "0", "--preset", preset,
         "--scenario", str(scenario_file)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=bench_env(root),
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        first = proc.stdout.readline().strip() if ready else ""
        if "listening on " not in first:
            raise RuntimeError(f"the simulator did not start: {first!r}")
        yield Sim(proc, first.split("listening on ", 1)[1])
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


# ---- the daemon ------------------------------------------------------------------------------


def write_config(root: Path, base_url: str, **sections: dict[str, Any]) -> Path:
    """A config for the simulator (form sign-in); ``sections`` override keys by section."""
    secret = root / "coupa-password"
    secret.write_text("coupa-sim\n", encoding="utf-8")
    secret.chmod(0o600)
    values: dict[str, dict[str, Any]] = {
        "coupa": {"base_url": base_url, "sign_in": "form", "username": "buyer@example.com",
                  "password_file": "coupa-password"},
        # The parts measure downloads, and their files named .msg are random bytes: no PDFs
        # unless a part asks (mails.py), so that the record stays comparable.
        "downloads": {"msg_to_pdf": False},
    }
    for section, keys in sections.items():
        values.setdefault(section, {}).update(keys)
    return write_toml(root / "coupad.toml", values)


class Daemon(DaemonRun):
    """`coupad run` (the harness of coupad.running) under bench/reaper.py, which accounts the
    CPU of the whole tree and reports leftovers; one reaper result per life."""

    def __init__(self, root: Path, config: Path) -> None:
        super().__init__(root, config, env=bench_env(root))
        self.life = 0
        self.usage: list[dict[str, Any]] = []

    @property
    def result_path(self) -> Path:
        return self.root / f"reaper-{self.life}.json"

    def start(self, timeout: float = 60.0, *, running: bool = False) -> None:
        """Start the daemon under a new reaper and wait until its control socket answers."""
        self.life += 1
        self.wrapper = (PYTHON, str(HERE / "reaper.py"), str(self.result_path), "--")
        super().start(timeout, running=running)

    def wait_warm(self, timeout: float = 90.0) -> float:
        """Wait until every worker's browser is up and signed in; return the seconds waited."""
        started = time.monotonic()

        def warm() -> bool:
            workers = self.status()["workers"]
            return bool(workers) and all(w["state"] in ("READY", "BUSY") for w in workers)

        self.wait(warm, timeout, "warm workers", interval=0.05)
        return time.monotonic() - started

    @property
    def pid(self) -> int:
        """The daemon's process id (the reaper's child)."""
        assert self.proc is not None
        children = psutil.Process(self.proc.pid).children()
        if not children:
            raise RuntimeError("the daemon is not running")
        return children[0].pid

    def cpu(self) -> float:
        """CPU seconds of the daemon, its workers and browsers so far (this life)."""
        assert self.proc is not None
        return tree_cpu(self.proc.pid)

    def cpu_by_kind(self) -> dict[str, float]:
        assert self.proc is not None
        return tree_cpu_by_kind(self.proc.pid)

    def pss_mb(self) -> float:
        assert self.proc is not None
        return tree_pss_mb(self.proc.pid)

    def drop_timed(self, name: str, text: str) -> float:
        """Write an input file straight into the inbox (as a copy onto a share would);
        return the time it was closed."""
        self.drop(name, text, atomic=False)
        return time.monotonic()

    def wait_summary(self, stem: str, timeout: float) -> dict[str, Any]:
        """Wait for ``stem``'s summary.json (written last, after the report) and read it."""
        return self.wait_report(stem, timeout, interval=0.02)

    def stop(self, timeout: float = 120.0) -> dict[str, Any]:
        """SIGTERM (drain) and wait for the daemon and everything below it to end."""
        try:
            self.terminate(timeout)
        except subprocess.TimeoutExpired:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
        return self._result()

    def kill9(self) -> float:  # type: ignore[override]
        """kill -9 the daemon (not the reaper); return when it was sent."""
        os.kill(self.pid, signal.SIGKILL)
        return time.monotonic()

    def wait_reaped(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the reaper to see the whole tree gone (after a kill -9)."""
        assert self.proc is not None
        self.proc.wait(timeout)
        return self._result()

    def _result(self) -> dict[str, Any]:
        try:
            result = dict(json.loads(self.result_path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            result = {"returncode": None, "cpu_s": None, "leftovers": ["no reaper result"]}
        self.usage.append(result)
        return result

    def log_tail(self) -> str:
        return self.log(tail=4000)


@contextmanager
def daemon(root: Path, base_url: str, **sections: dict[str, Any]) -> Iterator[Daemon]:
    """A started daemon in ``root``; stopped (and checked for leftovers) when the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    d = Daemon(root, write_config(root, base_url, **sections))
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


@contextmanager
def signed_in_engine(root: Path, base_url: str, tabs: int = 1) -> Iterator[Engine]:
    """One browser started and signed in by coupad's engine, for measurements of the browser
    itself; quit when the block ends."""
    config = configuration.load(write_config(root, base_url), env={})
    profile = root / "profile"
    spec = BrowserSpec(profile_dir=profile, download_dir=profile / "downloads")
    engine = Engine(config, browser_factory=lambda: Browser.start(spec), tabs=tabs)
    try:
        engine.start()
        yield engine
    finally:
        engine.close()


def open_page(driver: Any, url: str, *, new_tab: bool) -> None:
    """Load ``url`` (in a new tab if asked) and wait until its document is complete."""
    if new_tab:
        driver.switch_to.new_window("tab")
    driver.get(url)
    wait_for(lambda: driver.execute_script("return document.readyState") == "complete", 30,
             f"the page {url}")


def csv_of(numbers: list[str]) -> str:
    return "PO Number\n" + "".join(f"{n}\n" for n in numbers)



@dataclass
class Context:
    """What every part gets: its work folder, the two simulators, and the run's size."""

    work: Path
    quick: bool
    realistic: Sim  # the realistic latency preset
    instant: Sim  # the zero-latency preset

    def folder(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def stage_means(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's mean seconds per stage, rounded for the record."""
    return {stage: round(float(v), 3) for stage, v in summary.get("timings", {}).items()}


def seconds_by_outcome(journal: Path) -> dict[str, dict[str, float]]:
    """Per final state: POs, and mean seconds per PO in the tab (the last attempt's ``total``)
    and of it waiting for the page's evidence (``settle``), from the journal's task timings."""
    sums: dict[str, list[float]] = {}
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as conn:
        for state, timings in conn.execute("SELECT state, timings FROM tasks"):
            values = json.loads(timings or "{}")
            if "total" not in values:
                continue
            row = sums.setdefault(state, [0.0, 0.0, 0.0])
            row[0] += 1
            row[1] += float(values["total"])
            row[2] += float(values.get("settle", 0.0))
    return {
        state: {"pos": int(n), "s_per_po": round(total / n, 3), "settle_s_per_po": round(settle / n, 3)}
        for state, (n, total, settle) in sorted(sums.items())
    }


def measure_batch(root: Path, sim: Sim, name: str, numbers: list[str], *,
                  pool: dict[str, Any], timeout: float,
                  **sections: dict[str, Any]) -> dict[str, Any]:
    """One daemon, warmed up, one CSV dropped: wall, CPU and outcomes from drop to report."""
    with daemon(root, sim.base_url, pool=pool, **sections) as d:
        warm_s = d.wait_warm()
        cpu_before, sim_before = d.cpu(), sim.cpu()
        kinds_before = d.cpu_by_kind()
        dropped = d.drop_timed(f"{name}.csv", csv_of(numbers))
        summary = d.wait_summary(name, timeout)
        wall = time.monotonic() - dropped
        cpu = d.cpu() - cpu_before
        kinds = d.cpu_by_kind()
        sim_cpu = sim.cpu() - sim_before
        workers = d.status()["workers"]
    usage = d.usage[-1]
    by_outcome = seconds_by_outcome(d.journal)
    count = len(numbers)
    return {
        "pos": count,
        "warm_up_s": round(warm_s, 2),
        "wall_s": round(wall, 2),
        "pos_per_minute": round(count / wall * 60, 1),
        "wall_s_per_po": round(wall / count, 3),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_po": round(cpu / count, 3),
        "sim_cpu_s_per_po": round(sim_cpu / count, 3),
        # Recycling moves exited workers' time into the daemon's: no split then.
        "cpu_s_per_po_by_process": None if pool.get("recycle_after_pos") == 1 else {
            kind: round((kinds[kind] - kinds_before.get(kind, 0.0)) / count, 3)
            for kind in sorted(kinds)
        },
        "batch_duration_s": summary.get("duration_seconds"),
        "stages_s": stage_means(summary),
        "seconds_by_outcome": by_outcome,
        "outcomes": summary.get("counts", {}),
        "worker_restarts": sum(w["restarts"] for w in workers),
        "leftovers": usage.get("leftovers", []),
        "load_average": load_average(),
    }
