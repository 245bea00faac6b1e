"""Politeness towards the tenant: a pool-wide cap on POs in flight that throttling shrinks.

Every PO in flight loads pages, so the cap on POs in flight is the cap on concurrent page
loads (``coupa.max_concurrent_pages``). When Coupa answers 429 or a throttling page, the
whole pool slows down at once, however many workers there are: the cap halves and no new PO
starts until the server's ``Retry-After`` (or a backoff that doubles with each throttle in a
row, up to ``MAX_PAUSE``) has passed. Each PO that ends without throttling then raises the cap
by a fraction, so the pool returns to full speed gradually (additive increase,
multiplicative decrease, as TCP does). ``coupa.min_request_interval`` spaces PO starts.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PAUSE = 120.0
FIRST_PAUSE = 2.0


@dataclass
class Throttle:
    limit: int
    min_interval: float = 0.0
    cap: float = 0.0
    paused_until: float = 0.0
    streak: int = 0  # throttled results in a row
    last_start: float = 0.0
    throttled_total: int = 0

    def __post_init__(self) -> None:
        self.cap = float(self.limit)

    def allowed(self, in_flight: int, now: float) -> int:
        """How many more POs may start now."""
        if now < self.paused_until:
            return 0
        room = max(0, int(self.cap) - in_flight)
        if self.min_interval > 0:
            if now - self.last_start < self.min_interval:
                return 0
            return min(room, 1)
        return room

    def started(self, count: int, now: float) -> None:
        if count:
            self.last_start = now

    def throttled(self, now: float, retry_after: float | None) -> None:
        """A PO met 429 or a throttling page: halve the cap and pause new starts.

        POs that were in flight together meet the same wave of throttling: while a pause is
        on, another throttled PO only lengthens it to its Retry-After, and counts once.
        """
        self.throttled_total += 1
        if now < self.paused_until:
            self.paused_until = max(self.paused_until, now + (retry_after or 0.0))
            return
        self.streak += 1
        self.cap = max(1.0, self.cap / 2)
        pause = min(MAX_PAUSE, FIRST_PAUSE * 2 ** (self.streak - 1))
        self.paused_until = max(self.paused_until, now + max(pause, retry_after or 0.0))

    def succeeded(self) -> None:
        """A PO ended without throttling: grow the cap back by a fraction of a PO."""
        self.streak = 0
        self.cap = min(float(self.limit), self.cap + 1.0 / max(self.cap, 1.0))

    def resize(self, limit: int) -> None:
        self.limit = limit
        self.cap = min(self.cap, float(limit)) if self.streak else float(limit)

    @property
    def slowed(self) -> bool:
        return self.cap < self.limit


def free_tabs(tabs: int, watching_tabs: int, held: int, watching: int) -> int:
    """How many more POs a browser takes: ``tabs`` working at most, and up to
    ``watching_tabs`` more while that many of the ``held`` POs only watch their pages
    (``pool.watching_tabs``); the daemon and the engine both count with this."""
    return max(0, tabs + min(watching_tabs, watching) - held)
