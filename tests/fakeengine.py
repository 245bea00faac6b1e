"""A scripted engine for fast tests of pool and daemon policy (never instead of Chromium tests).

The PO number's digits say what happens to it:

- ``1xxxxx``: completes after ``FAKE_DELAY`` seconds with one small file in its folder;
- ``2xxxxx``: NO_ATTACHMENTS;  ``3xxxxx``: NOT_FOUND;  ``4xxxxx``: THROTTLED every time;
- ``5xxxxx``: SIGNED_OUT;
- ``8xxxxx``: the worker process dies (``os._exit(9)``) while holding it;
- ``9xxxxx``: the engine hangs in ``poll`` (a stuck WebDriver call) and stops heartbeating.

``COUPAD_FAKE_START=fail`` makes the browser fail to start, for FATAL-slot tests.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import threading
import time
from typing import Any

from coupad.config import Config
from coupad.engine import Outcome, PoJob, PoResult
from coupad.errors import BrowserError
from coupad.folders import PoFolder

FAKE_DELAY = float(os.environ.get("COUPAD_FAKE_DELAY", "0.05"))


class FakeEngine:
    def __init__(self, config: Config, *, tabs: int) -> None:
        self.config = config
        self.tabs = tabs
        self.jobs: dict[str, tuple[PoJob, float]] = {}

    @property
    def free_slots(self) -> int:
        return self.tabs - len(self.jobs)

    @property
    def busy(self) -> int:
        return len(self.jobs)

    def start(self) -> None:
        if os.environ.get("COUPAD_FAKE_START") == "fail":
            raise BrowserError("fake browser refuses to start")

    def browser_pgid(self) -> int | None:
        return None

    def submit(self, job: PoJob) -> None:
        self.jobs[job.key] = (job, time.monotonic() + FAKE_DELAY)

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
                done.append(self._result(job))
        return done

    def _result(self, job: PoJob) -> PoResult:
        first = job.po.digits[0]
        outcome = {
            "1": Outcome.COMPLETED, "2": Outcome.NO_ATTACHMENTS, "3": Outcome.NOT_FOUND,
            "4": Outcome.THROTTLED, "5": Outcome.SIGNED_OUT,
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
        return results

    def sign_in(self) -> bool:
        return True

    def close(self) -> None:
        self.jobs.clear()
