"""A scripted engine for fast tests of pool and daemon policy (never instead of Chromium tests).

The PO number's digits say what happens to it:

- ``1xxxxx``: completes after ``FAKE_DELAY`` seconds with one small file in its folder;
- ``2xxxxx``: NO_ATTACHMENTS;  ``3xxxxx``: NOT_FOUND;  ``4xxxxx``: THROTTLED every time;
- ``5xxxxx``: SIGNED_OUT;
- ``6xxxxx``: works ``FAKE_DELAY`` seconds, then only watches its page for ``FAKE_WATCH``
  seconds (reported in ``watching``), then completes like ``1xxxxx``;
- ``8xxxxx``: the worker process dies (``os._exit(9)``) while holding it;
- ``9xxxxx``: the engine hangs in ``poll`` (a stuck WebDriver call) and stops heartbeating.

``COUPAD_FAKE_START=fail`` makes the browser fail to start, for FATAL-slot tests.
Each engine writes the most POs it held at once, and the most of them working (not only
watching), to ``<state>/fake-peak-<pid>.json`` whenever either grows.
"""

from __future__ import annotations

import json
import multiprocessing.connection
import os
import threading
import time
from typing import Any

from coupad.config import Config
from coupad.engine import Outcome, PoJob, PoResult
from coupad.errors import BrowserError
from coupad.folders import PoFolder
from coupad.throttle import free_tabs

FAKE_DELAY = float(os.environ.get("COUPAD_FAKE_DELAY", "0.05"))
FAKE_WATCH = float(os.environ.get("COUPAD_FAKE_WATCH", "1.0"))


class FakeEngine:
    def __init__(self, config: Config, *, tabs: int) -> None:
        self.config = config
        self.tabs = tabs
        self.jobs: dict[str, tuple[PoJob, float]] = {}
        self.started: dict[str, float] = {}
        self.peak = {"held": 0, "working": 0}

    @property
    def watching(self) -> frozenset[str]:
        now = time.monotonic()
        return frozenset(key for key, (job, _) in self.jobs.items()
                         if job.po.digits[0] == "6" and now - self.started[key] >= FAKE_DELAY)

    @property
    def free_slots(self) -> int:
        return free_tabs(self.tabs, self.config.pool.watching_tabs, len(self.jobs),
                         len(self.watching))

    @property
    def busy(self) -> int:
        return len(self.jobs)

    def start(self) -> None:
        if os.environ.get("COUPAD_FAKE_START") == "fail":
            raise BrowserError("fake browser refuses to start")

    def browser_pgid(self) -> int | None:
        return None

    @property
    def reported_memory_mb(self) -> float | None:
        return None

    def submit(self, job: PoJob) -> None:
        now = time.monotonic()
        if len(self.jobs) >= self.tabs + self.config.pool.watching_tabs:
            raise BrowserError(f"all {len(self.jobs)} tabs are busy")
        watch = FAKE_WATCH if job.po.digits[0] == "6" else 0.0
        self.jobs[job.key] = (job, now + FAKE_DELAY + watch)
        self.started[job.key] = now
        self._note_peak()

    def _note_peak(self) -> None:
        held, working = len(self.jobs), len(self.jobs) - len(self.watching)
        if held > self.peak["held"] or working > self.peak["working"]:
            self.peak = {"held": max(held, self.peak["held"]),
                         "working": max(working, self.peak["working"])}
            path = self.config.paths.state / f"fake-peak-{os.getpid()}.json"
            path.write_text(json.dumps(self.peak), encoding="utf-8")

    def poll(self, max_wait: float = 0.05, wake: Any = None) -> list[PoResult]:
        if wake is not None:
            multiprocessing.connection.wait([wake], min(max_wait, 0.02))
        else:
            time.sleep(min(max_wait, 0.02))
        now = time.monotonic()
        done = []
        for key, (job, due) in list(self.jobs.items()):
            first = job.po.digits[0]
            if first == "8":
                os._exit(9)
            if first == "9":
                threading.Event().wait()  # a stuck WebDriver call: never returns
            if now >= due:
                del self.jobs[key]
                del self.started[key]
                done.append(self._result(job))
        return done

    def _result(self, job: PoJob) -> PoResult:
        first = job.po.digits[0]
        outcome = {
            "1": Outcome.COMPLETED, "2": Outcome.NO_ATTACHMENTS, "3": Outcome.NOT_FOUND,
            "4": Outcome.THROTTLED, "5": Outcome.SIGNED_OUT, "6": Outcome.COMPLETED,
        }.get(first, Outcome.COMPLETED)
        folder_path = None
        names: tuple[str, ...] = ()
        if outcome.final:
            folder = PoFolder.open(self.config.paths.downloads, job.po)
            if outcome is Outcome.COMPLETED:
                staging = folder.staging_dir("fake")
                tmp = staging / "file.part"
                tmp.write_bytes(job.po.digits.encode())
                folder.add_file(tmp, "quote.pdf", "fake://quote", "po", key="po:quote")
                names = ("quote.pdf",)
            folder_path = folder.finalize(outcome.name)
        return PoResult(
            job=job, outcome=outcome, reason="" if outcome.final else outcome.name.lower(),
            supplier="Fake Supplier", found=len(names), downloaded=len(names), names=names,
            folder=folder_path, final_url=f"fake://{job.po.digits}", timings={"total": FAKE_DELAY},
            retry_after=None,
        )

    def abort_all(self, reason: str) -> list[PoResult]:
        results = [
            PoResult(job=job, outcome=Outcome.ERROR, reason=reason, supplier=None, found=0,
                     downloaded=0, names=(), folder=None, final_url="", timings={},
                     retry_after=None)
            for job, _ in self.jobs.values()
        ]
        self.jobs.clear()
        self.started.clear()
        return results

    def sign_in(self) -> bool:
        return True

    def close(self) -> None:
        self.jobs.clear()
