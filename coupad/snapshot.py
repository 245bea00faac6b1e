"""The status snapshot as typed records: what ``coupactl status --json`` prints, written down
once. :mod:`coupad.status` builds a :class:`Snapshot` each pass of the daemon's loop, the
control socket serves :meth:`Snapshot.plain`, and ``coupactl`` reads the answer back with
:meth:`Snapshot.parse` — which refuses a field missing, unknown or of the wrong type — before
rendering it. Times are Unix seconds; sizes MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coupad.plain import from_plain, to_plain


@dataclass(frozen=True)
class DaemonInfo:
    pid: int
    version: str
    # starting, running, paused, stopping, waiting_for_sign_in, sign_in_failed,
    # journal_unwritable
    state: str
    started_at: float
    uptime_seconds: float
    config: str | None  # the config file read, if any
    base_url: str
    problems: tuple[str, ...]  # one sentence per trouble, for `PROBLEM:` lines


@dataclass(frozen=True)
class TroubleInfo:
    """A fault of the surroundings the daemon waits out (see Trouble in coupad.status)."""

    since: float
    detail: str
    attempts: int
    retry_in: float


@dataclass(frozen=True)
class SignInInfo:
    mode: str  # "profile" or "form"
    needed: bool
    failed: bool
    since: float | None
    detail: str


@dataclass(frozen=True)
class ThrottleInfo:
    limit: int  # coupa.max_concurrent_pages
    cap: int  # what throttling allows now
    paused_for: float  # seconds before a new PO may start
    throttled: int  # throttled results since start


@dataclass(frozen=True)
class MemoryInfo:
    used_mb: int
    limit_mb: int
    source: str  # "cgroup" or "host"
    high: bool  # above pool.memory_high_watermark: no new POs


@dataclass(frozen=True)
class WorkerInfo:
    slot: int
    name: str
    state: str  # a WorkerState
    pid: int | None
    tabs: int
    busy: int  # POs in flight
    watching: int  # of which only watching their page
    pos_done: int
    memory_mb: float  # PSS of its browser, or what a remote browser reports
    restarts: int
    last_error: str
    recycle_reason: str


@dataclass(frozen=True)
class BatchInfo:
    id: str
    name: str
    priority: str
    state: str
    total: int
    done: int
    counts: dict[str, int]  # POs per task state
    created_at: float
    rate_per_min: float
    eta_seconds: float | None
    pdfs_pending: int  # PDFs of its mails still to be made: its report waits for them


@dataclass(frozen=True)
class Snapshot:
    daemon: DaemonInfo
    troubles: dict[str, TroubleInfo]  # by what: "journal", "downloads", "outbox"
    sign_in: SignInInfo
    throttle: ThrottleInfo | None  # None while starting
    memory: MemoryInfo | None  # None until first measured
    workers: tuple[WorkerInfo, ...]
    batches: tuple[BatchInfo, ...]  # open batches
    totals: dict[str, int]  # tasks per state, all batches

    def plain(self) -> dict[str, Any]:
        """The JSON-ready form served on the control socket."""
        return dict(to_plain(self))

    @classmethod
    def parse(cls, data: Any) -> Snapshot:
        """The snapshot a status answer holds; PlainError if it is not one."""
        snapshot: Snapshot = from_plain(cls, data, "status")
        return snapshot
