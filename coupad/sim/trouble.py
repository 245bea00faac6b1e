"""Trouble on demand: throttling, server errors, slow and hanging pages, reproducibly.

Global trouble applies to every tenant request at configurable rates (drawn from a seeded
RNG, so a sequential run is reproducible); per-PO trouble is counted per visit, so "the first
two visits answer 429" holds exactly.
"""

from __future__ import annotations

import enum
import random
import threading
from collections import Counter
from dataclasses import dataclass

from coupad.sim.catalogue import PoTrouble


class Verdict(enum.Enum):
    """What a request gets instead of (or before) its normal answer."""

    OK = "ok"
    THROTTLE_429 = "429"
    THROTTLE_PAGE = "throttle-page"
    ERROR_500 = "500"
    ERROR_502 = "502"
    ERROR_503 = "503"
    HANG = "hang"


SERVER_ERRORS = (Verdict.ERROR_500, Verdict.ERROR_502, Verdict.ERROR_503)


@dataclass(frozen=True)
class Trouble:
    """Global trouble, set from the scenario file or at runtime by POST /_sim/trouble."""

    rate_429: float = 0.0
    rate_throttle_page: float = 0.0
    rate_5xx: float = 0.0
    page_delay: float = 0.0  # extra server time for every page
    hang_paths: tuple[str, ...] = ()  # paths (or path prefixes ending in *) that never answer
    until: float | None = None  # epoch seconds after which this trouble ends

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until


class TroubleMaker:
    """Decides, per request, whether trouble strikes; thread-safe and seeded."""

    def __init__(self, trouble: Trouble, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._trouble = trouble
        self._rng = random.Random(seed)
        self._visits: Counter[str] = Counter()

    @property
    def trouble(self) -> Trouble:
        return self._trouble

    def set(self, trouble: Trouble) -> None:
        with self._lock:
            self._trouble = trouble

    def page_delay(self, now: float) -> float:
        trouble = self._trouble
        return trouble.page_delay if trouble.active(now) else 0.0

    def for_request(self, path: str, now: float) -> Verdict:
        """Global trouble for one request."""
        trouble = self._trouble
        if not trouble.active(now):
            return Verdict.OK
        if any(_path_matches(path, pattern) for pattern in trouble.hang_paths):
            return Verdict.HANG
        with self._lock:
            draw = self._rng.random()
            pick = self._rng.randrange(len(SERVER_ERRORS))
        if draw < trouble.rate_429:
            return Verdict.THROTTLE_429
        draw -= trouble.rate_429
        if draw < trouble.rate_throttle_page:
            return Verdict.THROTTLE_PAGE
        draw -= trouble.rate_throttle_page
        if draw < trouble.rate_5xx:
            return SERVER_ERRORS[pick]
        return Verdict.OK

    def for_visit(self, key: str, po_trouble: PoTrouble) -> Verdict:
        """Per-PO trouble for one visit of the page ``key``; counts the visit."""
        if po_trouble.hang:
            return Verdict.HANG
        with self._lock:
            self._visits[key] += 1
            visit = self._visits[key]
        if visit <= po_trouble.throttle_first:
            return Verdict.THROTTLE_429
        visit -= po_trouble.throttle_first
        if visit <= po_trouble.throttle_page_first:
            return Verdict.THROTTLE_PAGE
        visit -= po_trouble.throttle_page_first
        if visit <= po_trouble.server_error_first:
            return SERVER_ERRORS[(visit - 1) % len(SERVER_ERRORS)]
        return Verdict.OK


def _path_matches(path: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern
