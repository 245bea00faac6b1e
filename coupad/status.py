"""The status snapshot: what `coupactl status` shows, built once per pass of the daemon loop.

The control plane only ever reads the latest snapshot, so answering a status request costs
nothing however large the journal is.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol

from coupad import __version__
from coupad.config import Config
from coupad.journal import Journal
from coupad.memory import MemoryView
from coupad.pool import Pool
from coupad.snapshot import (
    BatchInfo,
    DaemonInfo,
    MemoryInfo,
    SignInInfo,
    Snapshot,
    ThrottleInfo,
    TroubleInfo,
    WorkerInfo,
)
from coupad.states import TaskState
from coupad.throttle import Throttle

FINAL = {s.value for s in TaskState if s.final}


@dataclass
class SignIn:
    """Whether the pool can work: signed in, or waiting for someone to sign in."""

    needed: bool = False
    since: float = 0.0
    detail: str = ""
    profile_stamp: float = 0.0  # base profile cookie mtime when sign-in was found missing
    failed: bool = False  # the form sign-in itself was refused (wrong password): no retries
    # The base profile stamp whose sign-in the workers were last replaced for: once per
    # new profile, not at every pass while the first fresh worker starts.
    replaced_for: float | None = None


class Observed(Protocol):
    """What the snapshot reads of the daemon (:class:`coupad.daemon.Daemon` is one); the
    snapshot never writes to it."""

    config: Config
    journal: Journal | None
    pool: Pool
    sign_in: SignIn
    throttle: Throttle
    memory: MemoryView | None
    memory_high: bool
    paused: bool
    started_at: float
    stopping_since: float | None
    journal_trouble: Trouble
    troubles: tuple[Trouble, ...]


@dataclass
class Trouble:
    """A fault of the daemon's surroundings that it waits out (a full or read-only disk): since
    when, why, and when to try again, the wait doubling from ``first_delay`` to ``max_delay``."""

    what: str  # "journal", "downloads", "outbox": the word status and the log use
    first_delay: float = 0.5
    max_delay: float = 15.0
    since: float | None = None
    detail: str = ""
    attempts: int = 0
    delay: float = 0.0
    retry_at: float = 0.0

    @property
    def active(self) -> bool:
        return self.since is not None

    def due(self, now: float) -> bool:
        """Whether to try now: no trouble, or its wait is over."""
        return self.since is None or now >= self.retry_at

    def failed(self, now: float, detail: str) -> bool:
        """Count a failed try and wait longer; True when this try starts the trouble."""
        first = self.since is None
        if first:
            self.since, self.delay = now, self.first_delay
        else:
            self.delay = min(self.delay * 2, self.max_delay)
        self.attempts += 1
        self.detail = detail
        self.retry_at = now + self.delay
        return first

    def cleared(self, now: float) -> float | None:
        """A try worked: the trouble is over; how long it lasted, or None if there was none."""
        if self.since is None:
            return None
        lasted = now - self.since
        self.since, self.detail, self.attempts, self.delay, self.retry_at = None, "", 0, 0.0, 0.0
        return lasted

    def sentence(self) -> str:
        """What status says about it, in plain words."""
        assert self.since is not None
        return (f"the {self.what} cannot be written since "
                f"{time.strftime('%H:%M:%S', time.localtime(self.since))}: {self.detail}; "
                f"{CONSEQUENCE[self.what]}, trying again every {self.delay:.0f} s at most")

    def info(self, now: float) -> TroubleInfo:
        assert self.since is not None
        return TroubleInfo(since=self.since, detail=self.detail, attempts=self.attempts,
                           retry_in=round(max(0.0, self.retry_at - now), 1))


CONSEQUENCE = {
    "journal": "no PO is started and no input is read until it can",
    "downloads": "the POs concerned wait, and so does their batch's report",
    "outbox": "finished batches wait for their reports",
}


def troubles(daemon: Observed, now: float) -> tuple[dict[str, TroubleInfo], tuple[str, ...]]:
    """The active troubles for the snapshot, and one sentence for each."""
    active = [t for t in daemon.troubles if t.active]
    return {t.what: t.info(now) for t in active}, tuple(t.sentence() for t in active)


def build_snapshot(daemon: Observed, now: float) -> Snapshot:
    """A picture of the daemon now (:mod:`coupad.snapshot` says what each field means)."""
    assert daemon.journal is not None
    counts = daemon.journal.counts()
    batches = []
    for batch in daemon.journal.batches(open_only=True):
        per_state = counts.get(batch.id, {})
        total = sum(per_state.values())
        done = sum(n for state, n in per_state.items() if state in FINAL)
        elapsed = max(now - batch.created_at, 1e-9)
        rate = done / elapsed * 60 if done else 0.0
        eta = (total - done) / (rate / 60) if rate else None
        batches.append(BatchInfo(
            id=batch.id, name=batch.name, priority=batch.priority,
            state=batch.state.value if hasattr(batch.state, "value") else str(batch.state),
            total=total, done=done, counts=per_state, created_at=batch.created_at,
            rate_per_min=round(rate, 2), eta_seconds=round(eta, 1) if eta is not None else None,
            # The report waits for these only while mails are converted (msg_to_pdf).
            pdfs_pending=(daemon.journal.pdfs_pending(batch.id)
                          if daemon.config.downloads.msg_to_pdf else 0),
        ))
    found, problems = troubles(daemon, now)
    if daemon.stopping_since is not None:
        state = "stopping"
    elif daemon.journal_trouble.active:
        state = "journal_unwritable"
    elif daemon.sign_in.failed:
        state = "sign_in_failed"
    elif daemon.sign_in.needed:
        state = "waiting_for_sign_in"
    elif daemon.paused:
        state = "paused"
    else:
        state = "running"
    throttle = daemon.throttle
    return Snapshot(
        daemon=_daemon_info(daemon, now, state, problems),
        troubles=found,
        sign_in=SignInInfo(mode=daemon.config.coupa.sign_in, needed=daemon.sign_in.needed,
                           failed=daemon.sign_in.failed, since=daemon.sign_in.since or None,
                           detail=daemon.sign_in.detail),
        throttle=ThrottleInfo(limit=throttle.limit, cap=int(throttle.cap),
                              paused_for=round(max(0.0, throttle.paused_until - now), 1),
                              throttled=throttle.throttled_total),
        memory=None if daemon.memory is None else MemoryInfo(
            used_mb=round(daemon.memory.used / 2**20), limit_mb=round(daemon.memory.limit / 2**20),
            source=daemon.memory.source, high=daemon.memory_high),
        workers=tuple(
            WorkerInfo(
                slot=slot.index, name=slot.name, state=slot.state.value,
                pid=slot.process.pid if slot.process is not None else None, tabs=slot.tabs,
                busy=len(slot.in_flight), watching=len(slot.watching & slot.in_flight.keys()),
                pos_done=slot.pos_done, memory_mb=round(slot.memory_mb, 1),
                restarts=slot.restarts, last_error=slot.last_error,
                recycle_reason=slot.recycle_reason,
            )
            for slot in daemon.pool.slots
        ),
        batches=tuple(batches),
        totals=daemon.journal.totals(),
    )


def starting_snapshot(daemon: Observed, now: float) -> Snapshot:
    """What status shows before the first pass of the loop (journal not open yet)."""
    found, problems = troubles(daemon, now)
    state = "journal_unwritable" if daemon.journal_trouble.active else "starting"
    return Snapshot(
        daemon=_daemon_info(daemon, now, state, problems),
        troubles=found,
        sign_in=SignInInfo(mode=daemon.config.coupa.sign_in, needed=False, failed=False,
                           since=None, detail=""),
        throttle=None, memory=None, workers=(), batches=(), totals={},
    )


def _daemon_info(daemon: Observed, now: float, state: str, problems: tuple[str, ...]) -> DaemonInfo:
    return DaemonInfo(
        pid=os.getpid(), version=__version__, state=state, started_at=daemon.started_at,
        uptime_seconds=round(now - daemon.started_at, 1),
        config=str(daemon.config.source) if daemon.config.source else None,
        base_url=daemon.config.coupa.base, problems=problems,
    )


def status_line(snap: Snapshot) -> str:
    """One line for systemd's STATUS= and the log."""
    busy = sum(w.busy for w in snap.workers)
    up = sum(1 for w in snap.workers if w.state in ("READY", "BUSY"))
    pending = sum(b.total - b.done for b in snap.batches)
    problems = "".join(f"; {p}" for p in snap.daemon.problems)
    return (f"{snap.daemon.state}: {up}/{len(snap.workers)} workers up, {busy} POs in flight, "
            f"{len(snap.batches)} open batches, {pending} POs to go{problems}")
