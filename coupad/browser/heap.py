"""What a browser on another machine can say of its memory: the JavaScript heaps of its tabs.

A Grid node's processes cannot be read from the coordinator, so a remote worker has no PSS.
What the browser connection does offer is each tab's ``Runtime.getHeapUsage``: the heap its
pages allocated (``totalSize``) and the array buffers beside it (``backingStorageSize``, where
the browser reports it). That is the part of a browser that grows with the pages it has shown
— a leaking page's objects, script keeping old DOM alive — and it is what recycling compares
with ``pool.max_browser_mb`` for a remote worker. It leaves out the browser's fixed cost
(its processes, GPU and network services): a lower bound of the browser's footprint, so a
remote browser is recycled later than a local one would be, never earlier. ``pool.recycle_after_pos``
bounds a session's life whatever its heaps say.

Samples are asked without waiting (each answer updates its tab's figure when it comes), at
most every ``every`` seconds, so a tab busy with a navigation delays only its own figure.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from coupad.browser.cdp import Connection, ConnectionLost

log = logging.getLogger("coupad.browser.heap")

SAMPLE_EVERY = 5.0
ANSWER_TIMEOUT = 10.0
MB = 1024 * 1024


class HeapSampler:
    """Asks every tab of one browser for its heap usage now and then; :attr:`mb` sums them."""

    def __init__(self, every: float = SAMPLE_EVERY) -> None:
        self.every = every
        self._last = float("-inf")
        self._bytes: dict[str, int] = {}  # session id → the tab's last reported size

    def sample(self, connection: Connection, now: float) -> None:
        """Ask each attached tab for its heap, if the last round is ``every`` seconds old."""
        if now - self._last < self.every or connection.closed:
            return
        self._last = now
        live = set()
        for target in connection.targets.pages():
            session = connection.targets.session_for(target)
            if session is None or connection.targets.crashed(target):
                continue
            live.add(session)
            try:
                connection.send("Runtime.getHeapUsage", session=session,
                                timeout=ANSWER_TIMEOUT, then=partial(self._store, session))
            except ConnectionLost:
                return  # the engine sees the lost connection on its next pump
        # Closed tabs (and sessions of an older connection) no longer count.
        self._bytes = {s: n for s, n in self._bytes.items() if s in live}

    def _store(self, session: str, outcome: Any) -> None:
        if isinstance(outcome, dict):
            self._bytes[session] = heap_bytes(outcome)

    @property
    def mb(self) -> float:
        """The tabs' heaps as last reported, in MB."""
        return sum(self._bytes.values()) / MB


def heap_bytes(result: dict[str, Any]) -> int:
    """The bytes a ``Runtime.getHeapUsage`` answer accounts for; 0 for fields that are not
    plain non-negative numbers (a browser's answer is input like any other)."""
    total = 0
    for key in ("totalSize", "backingStorageSize"):
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 2**50:
            total += int(value)
    return total
