"""A background thread for the daemon's slow work, so that its loop never waits for it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class Offloop:
    """One background thread for slow work the loop must not wait for (reading an input file,
    writing a report, making PDFs of mails): jobs run in order, each gives a Future the loop
    collects, and a finished job wakes the loop. A daemon thread: an unfinished job never holds
    the process at exit."""

    def __init__(self, name: str, wake: Callable[[], None]) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue())
        self._wake = wake
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        future.add_done_callback(lambda _: self._wake())
        self._jobs.put((future, job))
        return future

    def stop(self) -> None:
        """Run no job submitted after those already queued; the thread ends after them."""
        self._jobs.put(None)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end (after stop); True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the loop, which decides
                future.set_exception(exc)
