"""Helpers shared by the tests: wait for conditions, never sleep and hope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``predicate`` until it returns something truthy; fail the test after ``timeout``.

    An exception from ``predicate`` means "not yet" (a file not there yet, a socket not yet
    listening) and is retried — except AssertionError: a check that fails inside a predicate
    fails the test at once, with its own message, instead of waiting out the time-out."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # the condition may not be observable yet (file missing, ...)
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}{detail}")
        time.sleep(interval)
