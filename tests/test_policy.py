"""The daemon's policies in milliseconds: ``Daemon.step(now)`` driven with a stepped clock, the
operating system replaced by tests/fakehost.py (no process is started or killed), the journal
a real SQLite file. Each test fails if its rule is broken. The same rules run end to end, with
real workers and browsers, in test_daemon_policy.py and test_pool_browser.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coupad.config import load
from coupad.ctl import render_status
from coupad.daemon import MEMORY_SAMPLE_SECONDS, Daemon
from coupad.messages import Drain, Heartbeat, Ready, Result, Run
from coupad.pool import FAST_FAILURE_SECONDS, Slot
from coupad.records import RowIn
from coupad.states import TaskState, WorkerState
from coupad.status import build_snapshot
from coupad.throttle import FIRST_PAUSE
from daemonkit import write_config
from fakehost import FakeHost, FakeWorker
from test_journal import claim_one
from test_journal_pdfs import completed, made

pytestmark = [pytest.mark.timeout(30)]

T0 = 1_000_000.0
POOL = {"workers": 2, "tabs_per_worker": 2, "heartbeat_seconds": 1.0, "lease_seconds": 10.0,
        "max_fast_failures": 3, "restart_backoff_max": 30.0, "recycle_after_pos": 3,
        "max_browser_mb": 500, "memory_high_watermark": 0.85}


@dataclass
class Rig:
    daemon: Daemon
    host: FakeHost
    now: float = T0

    @property
    def slots(self) -> list[Slot]:
        return self.daemon.pool.slots

    def step(self, dt: float = 0.0) -> None:
        self.now += dt
        self.daemon.step(self.now)

    def idle(self, seconds: float) -> None:
        """Pass ``seconds`` in passes a second apart, every running worker heartbeating."""
        end = self.now + seconds
        while self.now < end:
            self.step(min(1.0, end - self.now))
            for slot in self.slots:
                if slot.process is not None and slot.process.is_alive():
                    busy = tuple(slot.in_flight)
                    self.daemon.on_message(slot, Heartbeat(busy=busy, room=0), self.now)

    def worker(self, slot: Slot) -> FakeWorker:
        assert isinstance(slot.process, FakeWorker)
        return slot.process

    def ready(self, *slots: Slot) -> None:
        for slot in slots or tuple(self.slots):
            worker = self.worker(slot)
            self.daemon.on_message(slot, Ready(pid=worker.pid, pgid=worker.pid, tabs=2), self.now)

    def batch(self, *digits: str, max_attempts: int = 3) -> str:
        journal = self.daemon.journal
        assert journal is not None
        rows = [RowIn(row_no=i + 2, values=(d,), po_digits=d) for i, d in enumerate(digits)]
        return journal.create_batch(
            name="policy", source="policy.csv", content_sha256=uuid.uuid4().hex,
            priority="normal", fmt="csv", columns=["PO"], po_column="PO", rows=rows,
            now=self.now, max_attempts=max_attempts).id

    def runs(self, slot: Slot) -> list[str]:
        """Keys of the POs the daemon sent this slot's workers (the current one and earlier)."""
        return [job.key for w in self.host.started if w.name.startswith(f"w{slot.index}.")
                for m in w.sent if isinstance(m, Run) for job in m.jobs]

    def result(self, slot: Slot, key: str, outcome: str = "NO_ATTACHMENTS",
               retry_after: float | None = None) -> None:
        self.daemon.on_message(slot, Result(
            key=key, outcome=outcome, reason="", supplier=None, found=0, downloaded=0,
            names=(), folder=None, url="", timings={}, retry_after=retry_after), self.now)

    def states(self) -> dict[str, str]:
        journal = self.daemon.journal
        assert journal is not None
        return {t.po_digits: t.state.value for b in journal.batches()
                for t in journal.tasks(b.id)}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from make_rig(tmp_path)


def make_rig(tmp_path: Path, **pool: Any) -> Iterator[Rig]:
    config = load(write_config(tmp_path, "http://127.0.0.1:9", pool={**POOL, **pool}), env={})
    host = FakeHost()
    daemon = Daemon(config, host=host)
    assert daemon._startup(T0)
    rig = Rig(daemon, host)
    try:
        yield rig
    finally:
        for worker in host.started:
            if worker.exitcode is None:
                worker.exit(0)
        daemon._reap(rig.now)
        daemon._teardown(rig.now)


# ---- restarts: backoff, FATAL, and the try after restart_backoff_max -------------------------


def test_a_worker_that_keeps_failing_backs_off_doubling_goes_fatal_and_is_tried_again(
        rig: Rig) -> None:
    slot = rig.slots[0]
    starts = [rig.now]
    for expected_delay in (1.0, 2.0):  # 2 ** (fast failures - 1)
        rig.worker(slot).exit(1)
        rig.step(0.1)
        assert slot.state is WorkerState.BACKOFF
        assert slot.next_start == pytest.approx(rig.now + expected_delay)
        rig.step(expected_delay - 0.2)
        assert slot.state is WorkerState.BACKOFF, "not restarted before its backoff"
        rig.step(0.2)
        assert slot.state is WorkerState.STARTING, "restarted once its backoff is over"
        starts.append(rig.now)
    rig.worker(slot).exit(1)  # the third fast failure in a row: max_fast_failures
    rig.step(0.1)
    assert slot.state is WorkerState.FATAL
    assert "worker" in slot.last_error and "exit" in slot.last_error
    fatal_at = rig.now
    rig.step(29.0)
    assert slot.state is WorkerState.FATAL, "FATAL waits restart_backoff_max"
    rig.now = fatal_at + 30.0
    rig.step()
    assert slot.state is WorkerState.STARTING, "tried again after restart_backoff_max"
    assert len(rig.host.started) == 2 + 3  # the other slot's worker, and this slot's four
    assert rig.slots[1].state is WorkerState.STARTING  # the other slot was left alone


def test_a_worker_that_ran_a_while_restarts_at_once_and_resets_its_failures(rig: Rig) -> None:
    slot = rig.slots[0]
    rig.ready(slot)
    rig.idle(FAST_FAILURE_SECONDS + 1)
    assert not rig.worker(slot).killed
    rig.worker(slot).exit(1)
    rig.step(0.1)
    assert slot.state is WorkerState.STARTING and slot.fast_failures == 0


# ---- memory: per browser, and the machine's watermark with hysteresis ------------------------


def test_a_browser_over_max_browser_mb_is_drained_and_others_are_not(rig: Rig) -> None:
    rig.ready()
    big, small = rig.slots
    rig.host.browser_mbs = {rig.worker(big).pid: 600.0, rig.worker(small).pid: 400.0}
    rig.step(MEMORY_SAMPLE_SECONDS)
    assert big.draining and "600 MB" in big.recycle_reason
    assert Drain() in rig.worker(big).sent
    assert not small.draining


def test_above_the_watermark_nothing_starts_until_pressure_is_5_points_below(rig: Rig) -> None:
    rig.ready()
    rig.host.browser_mbs = {rig.worker(rig.slots[0]).pid: 300.0,
                            rig.worker(rig.slots[1]).pid: 450.0}
    rig.host.pressure = 0.90
    rig.step(MEMORY_SAMPLE_SECONDS)
    assert rig.daemon.memory_high
    assert rig.slots[1].draining and rig.slots[1].recycle_reason == "memory above the high watermark"
    assert not rig.slots[0].draining, "only the largest browser is recycled"
    rig.batch("100001")
    rig.host.pressure = 0.82  # below the watermark, but not by 5 points
    rig.step(MEMORY_SAMPLE_SECONDS)
    assert rig.daemon.memory_high and rig.runs(rig.slots[0]) == []
    rig.host.pressure = 0.79
    rig.step(MEMORY_SAMPLE_SECONDS)
    assert not rig.daemon.memory_high
    assert len(rig.runs(rig.slots[0])) == 1, "work starts again once pressure is down"


# ---- recycling after pool.recycle_after_pos --------------------------------------------------


def test_a_worker_is_recycled_after_recycle_after_pos_and_replaced(tmp_path: Path) -> None:
    for rig in make_rig(tmp_path, workers=1):
        rig.ready()
        rig.batch(*(str(100_001 + n) for n in range(6)))
        slot = rig.slots[0]
        done = 0
        for _ in range(10):
            rig.step(0.1)
            for key in rig.runs(slot)[done:]:
                rig.result(slot, key)
                done += 1
        # Two POs at a time (2 tabs): the third result drains it; the fourth, already in
        # flight, finishes; nothing more is sent to a draining worker.
        assert done == 4
        assert slot.draining and slot.recycle_reason == "recycling after 3 POs"
        assert Drain() in rig.worker(slot).sent
        old = rig.worker(slot)
        old.exit(0)
        rig.step(0.1)
        assert slot.state is WorkerState.STARTING and rig.worker(slot) is not old
        assert slot.restarts == 0, "a recycle is not a restart"
        rig.ready()
        rig.step(0.1)
        assert len(rig.runs(slot)) == 6, "the new worker takes the rest"


# ---- leases ------------------------------------------------------------------------------


def test_a_lease_expires_without_heartbeats_and_its_po_goes_to_another_worker(rig: Rig) -> None:
    rig.ready()
    rig.batch("100001")
    rig.step(0.1)
    first = next(s for s in rig.slots if rig.runs(s))
    other = next(s for s in rig.slots if s is not first)
    key = rig.runs(first)[0]
    holder = rig.worker(first)
    assert rig.states() == {"100001": TaskState.LEASED.value}
    # The holder goes silent but does not die (a hung call); the other worker heartbeats.
    for _ in range(9):
        rig.step(1.0)
        rig.daemon.on_message(other, Heartbeat(busy=(), room=2), rig.now)
    assert rig.states() == {"100001": TaskState.LEASED.value}, "no expiry inside lease_seconds"
    rig.step(1.5)
    assert holder.killed, "a worker silent for lease_seconds is killed"
    assert rig.runs(other) == [key], "its PO runs elsewhere"


def test_heartbeats_keep_a_long_po_leased(rig: Rig) -> None:
    rig.ready()
    rig.batch("100001")
    rig.step(0.1)
    slot = next(s for s in rig.slots if rig.runs(s))
    key = rig.runs(slot)[0]
    for _ in range(30):
        rig.step(1.0)
        for s in rig.slots:
            rig.daemon.on_message(s, Heartbeat(busy=(key,) if s is slot else (), room=1), rig.now)
    assert rig.states() == {"100001": TaskState.LEASED.value}
    assert not rig.worker(slot).killed


# ---- the tenant's throttle ---------------------------------------------------------------


def test_throttling_halves_the_cap_pauses_starts_and_successes_grow_it_back(tmp_path: Path) -> None:
    for rig in make_rig(tmp_path, workers=1, tabs_per_worker=4):
        rig.ready()
        throttle = rig.daemon.throttle
        rig.batch(*(str(100_001 + n) for n in range(12)), max_attempts=10)
        rig.step(0.1)
        slot = rig.slots[0]
        assert len(rig.runs(slot)) == 4  # coupa.max_concurrent_pages (6) and 4 tabs
        first = rig.runs(slot)[0]
        rig.result(slot, first, "THROTTLED")
        assert throttle.cap == pytest.approx(throttle.limit / 2)
        rig.step(FIRST_PAUSE - 0.1)
        assert len(rig.runs(slot)) == 4, "no PO starts during the pause"
        rig.step(0.2)
        started = len(rig.runs(slot))
        assert started == 4 + 1, "after the pause, only up to the halved cap (3) in flight"
        cap = throttle.cap
        for key in rig.runs(slot)[1:]:
            rig.result(slot, key)
        assert cap < throttle.cap <= throttle.limit, "each success grows the cap back a little"


def test_throttles_in_a_row_double_the_pause_and_a_retry_after_is_honoured(rig: Rig) -> None:
    throttle = rig.daemon.throttle
    throttle.throttled(rig.now, None)
    assert throttle.paused_until == rig.now + FIRST_PAUSE
    rig.now = throttle.paused_until
    throttle.throttled(rig.now, None)
    assert throttle.paused_until == rig.now + 2 * FIRST_PAUSE
    rig.now = throttle.paused_until
    throttle.throttled(rig.now, 60.0)
    assert throttle.paused_until == rig.now + 60.0
    assert throttle.cap == 1.0  # 6 → 3 → 1.5 → 1, never 0


# ---- the order of a pass -----------------------------------------------------------------


def test_one_pass_expires_leases_before_it_dispatches(rig: Rig) -> None:
    """A PO whose lease expires in a pass is given to a free worker in that same pass."""
    rig.ready()
    rig.batch("100001")
    rig.step(0.1)
    holder = next(s for s in rig.slots if rig.runs(s))
    other = next(s for s in rig.slots if s is not holder)
    rig.daemon.on_message(other, Heartbeat(busy=(), room=2), rig.now + 10.5)
    rig.step(10.5)  # one pass: the lease expires, the holder is killed, the PO dispatched
    assert rig.runs(other) == rig.runs(holder)


def test_a_stop_requested_before_a_pass_dispatches_nothing_in_it(rig: Rig) -> None:
    """Signals come first in a pass: a stop seen in it starts no new PO in the same pass."""
    rig.ready()
    rig.batch("100001")
    rig.daemon.flags.stop_requests = 1
    rig.step(0.1)
    assert rig.daemon.stopping_since == rig.now
    assert all(rig.runs(s) == [] for s in rig.slots)
    assert all(Drain() in rig.worker(s).sent for s in rig.slots)


def test_results_before_a_pass_free_their_tabs_for_it(rig: Rig) -> None:
    """A worker's tab freed by a result is filled in the very next pass."""
    rig.ready()
    rig.batch(*(str(100_001 + n) for n in range(6)))
    rig.step(0.1)
    slot = rig.slots[0]
    assert len(rig.runs(slot)) == 2
    rig.result(slot, rig.runs(slot)[0])
    rig.step(0.0)
    assert len(rig.runs(slot)) == 3


def test_a_stop_signals_a_worker_still_starting_and_its_clean_exit_ends_the_stop(rig: Rig) -> None:
    """A starting worker reads its pipe only once ready: a stop also sends it SIGTERM (it then
    closes its browser without signing in), a ready one only the Drain message; a starting
    worker that exits 0 while stopping is an expected end, so the stop is clean, and the
    daemon does not announce itself ready after its stop began."""
    starting, ready = rig.slots
    rig.ready(ready)
    rig.daemon.flags.stop_requests = 1
    rig.step(0.1)
    assert rig.worker(starting).terminated
    assert not rig.worker(ready).terminated
    assert Drain() in rig.worker(ready).sent
    for slot in rig.slots:
        rig.worker(slot).exit(0)
    rig.step(0.1)
    assert not rig.daemon.forced
    assert rig.daemon.pool.alive == []
    assert [s.state for s in rig.slots] == [WorkerState.STOPPED] * 2
    assert not rig.daemon._ready_sent, "no READY=1 once a stop began"


def test_a_new_base_profile_replaces_each_worker_once_and_its_fresh_workers_sign_in(
        rig: Rig) -> None:
    """Profile sign-in: after a sign-out, a newer base profile drains the workers once; the
    workers started from it are left to start (they carry the new sign-in) and the first one
    ready ends the wait for sign-in."""
    assert rig.daemon.config.coupa.sign_in == "profile"
    rig.ready()
    rig.batch("100001")
    rig.step(0.1)
    holder = next(s for s in rig.slots if rig.runs(s))
    rig.daemon.on_message(holder, Result(
        key=rig.runs(holder)[0], outcome="SIGNED_OUT", reason="sign-in page", supplier=None,
        found=0, downloaded=0, names=(), folder=None, url="", timings={}, retry_after=None),
        rig.now)
    assert rig.daemon.sign_in.needed
    cookies = rig.daemon.config.paths.base_profile / "Default" / "Cookies"
    cookies.parent.mkdir(parents=True, exist_ok=True)
    cookies.write_bytes(b"signed in")
    rig.step(0.1)
    old = [rig.worker(s) for s in rig.slots]
    assert all(Drain() in w.sent for w in old)
    for worker in old:
        worker.exit(0)
    rig.step(0.1)
    fresh = [rig.worker(s) for s in rig.slots]
    assert not set(map(id, fresh)) & set(map(id, old))
    rig.idle(3.0)
    assert all(w.exitcode is None and not w.terminated and w.sent == [] for w in fresh)
    rig.ready(rig.slots[0])
    assert not rig.daemon.sign_in.needed


def test_status_counts_a_batchs_pdfs_still_to_make_and_says_its_report_waits(rig: Rig) -> None:
    """Every PO of the batch is final but a mail's PDF is still to be made: the report waits,
    and status says why instead of a finished-looking bar alone."""
    journal = rig.daemon.journal
    assert journal is not None
    rig.batch("100001")
    task = claim_one(journal, now=rig.now)
    journal.record(task.id, "w1", completed("a.msg", "q.pdf"), rig.now)
    snap = build_snapshot(rig.daemon, rig.now)
    (info,) = snap.batches
    assert (info.done, info.total, info.pdfs_pending) == (1, 1, 1)
    assert "1/1" in render_status(snap.plain())
    assert "1 PDF(s) of mails to make before the report" in render_status(snap.plain())
    (record,) = journal.pending_pdfs(10)
    journal.pdf_done(made(record), rig.now)
    assert build_snapshot(rig.daemon, rig.now).batches[0].pdfs_pending == 0
