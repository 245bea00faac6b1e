"""The worker pool: start, watch, recycle and restart worker processes, one per slot.

The pool executes; the daemon's loop decides. Supervision follows supervisor's model: a slot
that exits is reaped and its exit decoded; it restarts after a backoff that doubles with each
fast failure (one within ``FAST_FAILURE_SECONDS`` of its start), and after
``pool.max_fast_failures`` fast failures in a row it becomes FATAL, visible in status with
its reason, while the other slots go on. Unlike supervisor, a FATAL slot is tried once more
every ``pool.restart_backoff_max`` seconds, so a daemon whose browser could not start at all
(Chromium missing, profile unreadable, a tenant that does not answer) recovers by itself once
that is fixed. A worker whose heartbeat stops (a hung WebDriver call) is killed together with
its browser's process group.

No browser outlives its worker, whatever state the worker dies in: the worker reports its
browser's process group as soon as the browser is launched (:class:`~coupad.messages.Launched`,
before any sign-in), and whenever a worker ends or is killed the pool also kills every process
marked with that worker's profile (:func:`coupad.browser.launch.kill_browser`), which finds a
browser whose group was never reported. A forced stop gives workers ``STOP_GRACE`` seconds to
release their POs, then kills them and their browsers: it never waits on a worker's own slow
shutdown. Only processes the pool started are ever signalled.
"""

from __future__ import annotations

import logging
import signal
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any


from coupad.browser.launch import copy_profile, new_profile_dir
from coupad.config import Config
from coupad.host import Host, System, WorkerPipe, WorkerProcess
from coupad.messages import (
    TO_DAEMON,
    Drain,
    Launched,
    MessageError,
    Stop,
    ToDaemon,
    ToWorker,
    decode,
    encode,
)
from coupad.states import WorkerState, check_worker
from coupad.throttle import free_tabs
from coupad.worker import BROKEN_EXIT, FATAL_EXIT, TENANT_PROBE_SECONDS, WorkerSpec, worker_main

log = logging.getLogger("coupad.pool")

FAST_FAILURE_SECONDS = 30.0
LAUNCH_TIMEOUT = 60.0  # for Chromium and chromedriver to start, on top of the sign-in's time
STOP_GRACE = 1.0  # a forced stop waits this long for workers to end by themselves
# What the deploy files' stop timeouts (systemd's TimeoutStopSec, supervisord's stopwaitsecs)
# allow past pool.shutdown_timeout: STOP_GRACE, the kills and the daemon's teardown take a
# few seconds of it.
FORCED_STOP_SECONDS = 10.0


@dataclass
class Slot:
    """One place in the pool, and the worker process currently filling it."""

    index: int
    tabs: int
    state: WorkerState = WorkerState.STOPPED
    generation: int = 0
    process: WorkerProcess | None = None
    conn: WorkerPipe | None = None
    profile_dir: Path | None = None
    pgid: int | None = None
    started_at: float = 0.0
    last_heartbeat: float = 0.0
    in_flight: dict[str, int] = field(default_factory=dict)  # job key -> task id
    watching_tabs: int = 0  # more POs than ``tabs`` while that many only watch (pool.watching_tabs)
    watching: frozenset[str] = frozenset()  # keys the worker last said only watch their page
    pos_done: int = 0
    restarts: int = 0
    fast_failures: int = 0
    next_start: float = 0.0
    last_error: str = ""
    draining: bool = False
    retired: bool = False  # removed by a smaller pool.workers: not restarted
    recycle_reason: str = ""
    memory_mb: float = 0.0
    # What a browser on another machine reports of its memory (its tabs' heaps, MB), read
    # from its heartbeats; None for a local browser, whose process group is measured here.
    reported_mb: float | None = None

    @property
    def name(self) -> str:
        """The lease owner name: unique for each process that fills this slot."""
        return f"w{self.index}.{self.generation}"

    @property
    def alive(self) -> bool:
        return self.process is not None

    @property
    def working(self) -> int:
        """POs in flight that load a page, request or download: what the tenant feels."""
        return sum(1 for key in self.in_flight if key not in self.watching)

    @property
    def room(self) -> int:
        """How many more POs the worker takes now: ``tabs`` working at most, and up to
        ``watching_tabs`` more while that many only watch their pages."""
        if self.state not in (WorkerState.READY, WorkerState.BUSY) or self.draining:
            return 0
        held = len(self.in_flight)
        return free_tabs(self.tabs, self.watching_tabs, held, held - self.working)


@dataclass(frozen=True)
class Exit:
    """A worker process that ended, with the POs it still held."""

    slot: Slot
    exitcode: int | None
    in_flight: dict[str, int]
    expected: bool


class Pool:
    """A fixed number of slots, each running one worker process with its own browser."""

    def __init__(self, config: Config, *, engine: str = "chromium", host: Host | None = None) -> None:
        self.config = config
        self.engine = engine
        self.host: Host = host or System()  # the OS effects: start, kill, measure
        self.slots = [Slot(index=i + 1, tabs=config.pool.tabs_per_worker)
                      for i in range(config.pool.workers)]

    # -- life cycle ---------------------------------------------------------------------

    @staticmethod
    def move(slot: Slot, new: WorkerState) -> None:
        """Change a slot's state through the table of legal worker moves."""
        if slot.state != new:
            check_worker(slot.state, new)
            slot.state = new

    def start_due(self, now: float) -> None:
        """Start every stopped or backed-off slot whose backoff has elapsed."""
        self.slots = [s for s in self.slots if not (s.retired and s.process is None)]
        waiting = (WorkerState.STOPPED, WorkerState.BACKOFF, WorkerState.FATAL)
        for slot in self.slots:
            if slot.process is None and slot.state in waiting:
                if now >= slot.next_start and not slot.retired:
                    self._start(slot, now)

    def _start(self, slot: Slot, now: float) -> None:
        slot.generation += 1
        slot.tabs = self.config.pool.tabs_per_worker
        slot.watching_tabs = self.config.pool.watching_tabs
        slot.watching = frozenset()
        profiles = self.config.paths.profiles
        profiles.mkdir(parents=True, exist_ok=True)
        slot.profile_dir = new_profile_dir(profiles, f"w{slot.index}")
        try:
            copy_profile(self.config.paths.base_profile, slot.profile_dir)
        except OSError as exc:
            self._failed_start(slot, now, f"cannot copy the base profile: {exc}")
            return
        spec = WorkerSpec(
            slot=slot.index,
            name=slot.name,
            config=self.config,
            tabs=slot.tabs,
            profile_dir=slot.profile_dir,
            engine=self.engine,
        )
        slot.process, slot.conn = self.host.start_worker(worker_main, spec, slot.name)
        self.move(slot, WorkerState.STARTING)
        slot.started_at = slot.last_heartbeat = now
        slot.draining = False
        slot.recycle_reason = ""
        slot.in_flight = {}
        slot.pos_done = 0
        slot.pgid = None
        slot.memory_mb = 0.0
        slot.reported_mb = None
        log.info("slot %d: started worker %s pid=%s", slot.index, slot.name, slot.process.pid)

    def _failed_start(self, slot: Slot, now: float, why: str) -> None:
        slot.last_error = why
        slot.fast_failures += 1
        self.move(slot, WorkerState.BACKOFF)
        if slot.fast_failures >= self.config.pool.max_fast_failures:
            # FATAL stays in status with the reason; one more try per restart_backoff_max
            # (when no browser can start at all, someone may fix it without a restart).
            self.move(slot, WorkerState.FATAL)
            slot.next_start = now + self.config.pool.restart_backoff_max
            log.error("slot %d: %d fast failures in a row; FATAL, next try in %.0f s: %s",
                      slot.index, slot.fast_failures, self.config.pool.restart_backoff_max, why)
            return
        delay = min(self.config.pool.restart_backoff_max, 2.0 ** (slot.fast_failures - 1))
        slot.next_start = now + delay
        log.warning("slot %d: %s; restarting in %.0f s", slot.index, why, delay)

    def reap(
        self, now: float, on_message: Callable[[Slot, ToDaemon], None]
    ) -> list[Exit]:
        """Collect workers that exited, decide their restart, return what they still held.

        Messages a worker sent just before it exited (results, releases) are handed to
        ``on_message`` first, so that nothing it finished is counted as lost.
        """
        exits = []
        for slot in self.slots:
            process = slot.process
            if process is None or process.is_alive():
                continue
            process.join(0)
            for message in self._pending(slot):
                on_message(slot, message)
            code = process.exitcode
            held = dict(slot.in_flight)
            # A starting worker the pool sent SIGTERM may end by it before its handler is set.
            expected = slot.draining and not held and code in (0, -signal.SIGTERM)
            self._cleanup(slot)
            exits.append(Exit(slot=slot, exitcode=code, in_flight=held, expected=expected))
            if expected:
                self.move(slot, WorkerState.STOPPED)
                slot.fast_failures = 0
                slot.next_start = now
                log.info("slot %d: worker %s ended (%s)", slot.index, slot.name,
                         slot.recycle_reason or "drained")
                continue
            slot.restarts += 1
            own = code == FATAL_EXIT and slot.last_error  # the worker said why
            why = f": {slot.last_error}" if own else f" {_describe(code)}"
            if now - slot.started_at < FAST_FAILURE_SECONDS or code == FATAL_EXIT:
                self._failed_start(slot, now, f"worker {slot.name}{why}")
            else:
                slot.fast_failures = 0
                slot.last_error = f"worker {slot.name}{why}"
                self.move(slot, WorkerState.STOPPED)
                slot.next_start = now
                log.warning("slot %d: worker %s%s; restarting", slot.index, slot.name, why)
        return exits

    @staticmethod
    def _pending(slot: Slot) -> list[ToDaemon]:
        messages: list[ToDaemon] = []
        try:
            while slot.conn is not None and slot.conn.poll():
                message = _decoded(slot, slot.conn.recv())
                if message is not None:
                    messages.append(message)
        except (EOFError, OSError):
            pass
        return messages

    def _cleanup(self, slot: Slot) -> None:
        self._kill_browser(slot)
        if slot.conn is not None:
            slot.conn.close()
        if slot.profile_dir is not None:
            import shutil

            shutil.rmtree(slot.profile_dir, ignore_errors=True)
        slot.process = slot.conn = None
        slot.pgid = None
        slot.in_flight = {}
        slot.watching = frozenset()

    def resize(self, config: Config, now: float) -> None:
        """Take a reloaded configuration: more slots start, extra ones drain and go away.

        A new tabs_per_worker applies to each worker from its next start.
        """
        self.config = config
        wanted = config.pool.workers
        for slot in self.slots:
            if slot.index > wanted and not slot.retired:
                slot.retired = True
                self.drain(slot, "pool.workers lowered")
            elif slot.index <= wanted and slot.retired:
                slot.retired = False
        have = max((s.index for s in self.slots), default=0)
        for index in range(have + 1, wanted + 1):
            self.slots.append(Slot(index=index, tabs=config.pool.tabs_per_worker,
                                   next_start=now))

    def revive(self, slot: Slot, now: float) -> None:
        """Give a FATAL or backed-off slot a fresh start (someone fixed the cause)."""
        if slot.process is None and slot.state in (WorkerState.FATAL, WorkerState.BACKOFF):
            slot.fast_failures = 0
            slot.next_start = now
            if slot.state == WorkerState.FATAL:
                self.move(slot, WorkerState.STOPPED)

    def kill(self, slot: Slot, why: str) -> None:
        """Kill a worker and its browser at once (hung, or over its memory limit)."""
        if slot.process is None:
            return
        log.warning("slot %d: killing worker %s: %s", slot.index, slot.name, why)
        slot.last_error = why
        if slot.process.pid:
            self.host.kill_worker(slot.process.pid)
        self._kill_browser(slot)
        slot.process.join(5)

    def _kill_browser(self, slot: Slot) -> None:
        """SIGKILL the worker's browser: its reported process group, and every process marked
        with its profile (a group not yet reported, helpers that left it)."""
        self.host.kill_browser(slot.pgid, slot.profile_dir)

    # -- messages ------------------------------------------------------------------------

    def receive(self, timeout: float, extra: Sequence[Any] = ()) -> list[tuple[Slot, ToDaemon]]:
        """Wait up to ``timeout`` for messages from any worker (or for ``extra`` to become
        readable); return the worker messages."""
        by_conn = {id(s.conn): s for s in self.slots if s.conn is not None}
        messages: list[tuple[Slot, ToDaemon]] = []
        # wait() takes anything with a fileno(): a worker's pipe, the daemon's wake-up socket.
        pipes: list[Any] = [s.conn for s in self.slots if s.conn is not None]
        ready = wait([*pipes, *extra], timeout)
        for item in ready:
            slot = by_conn.get(id(item))
            if slot is None or slot.conn is None:
                continue
            try:
                while slot.conn.poll():
                    message = _decoded(slot, slot.conn.recv())
                    if message is not None:
                        messages.append((slot, message))
            except (EOFError, OSError):
                continue  # the process ended; reap() handles it
        return messages

    def send(self, slot: Slot, message: ToWorker) -> bool:
        if slot.conn is None:
            return False
        try:
            slot.conn.send(encode(message))
            return True
        except (BrokenPipeError, OSError):
            return False

    # -- policy hooks used by the daemon ------------------------------------------------

    def start_timeout(self) -> float:
        """How long a worker may take to become ready: to launch its browser, sign in (the
        engine tries the form twice, each within ``coupa.page_timeout``) and, when that fails,
        to see whether the tenant answers at all. A worker bounds its own start within this and
        says why it failed; killing it is the last resort."""
        page = self.config.coupa.page_timeout
        return LAUNCH_TIMEOUT + 2 * page + min(TENANT_PROBE_SECONDS, page)

    def hung(self, now: float, silence: float) -> list[Slot]:
        """Workers whose heartbeat has been silent for longer than ``silence`` seconds (a
        starting worker sends none: it is hung after :meth:`start_timeout`)."""
        limit = {WorkerState.STARTING: max(silence, self.start_timeout())}
        return [
            s for s in self.slots
            if s.process is not None
            and now - s.last_heartbeat > limit.get(s.state, silence)
        ]

    def sample_memory(self) -> None:
        """Update each working slot's browser memory, in MB: PSS summed over its process group,
        or for a browser on a Grid node what it reports (:mod:`coupad.browser.heap`). A
        starting browser counts 0: what recycling looks for is a browser grown by its work,
        and one drained before it is ready would never take a PO."""
        for slot in self.slots:
            working = slot.state in (WorkerState.READY, WorkerState.BUSY, WorkerState.RECYCLING)
            if working and slot.reported_mb is not None:
                slot.memory_mb = slot.reported_mb
            elif working and slot.pgid:
                slot.memory_mb = self.host.browser_mb(slot.pgid)
            elif slot.state == WorkerState.STARTING:
                slot.memory_mb = 0.0

    def drain(self, slot: Slot, reason: str) -> None:
        """Ask a worker to finish its POs and exit (recycling, or shutdown)."""
        if slot.process is None or slot.draining:
            return
        slot.draining = True
        slot.recycle_reason = reason
        if slot.state in (WorkerState.READY, WorkerState.BUSY):
            self.move(slot, WorkerState.RECYCLING)
        self.send(slot, Drain())
        if slot.state == WorkerState.STARTING and slot.process.pid is not None:
            # It reads its pipe only once ready: told now, it closes its browser as soon as
            # the browser is up, without signing in (a Grid session can wait long in the
            # hub's queue; a shutdown need not wait for a sign-in as well).
            self.host.stop_worker(slot.process.pid)

    def stop_all(self, reason: str) -> None:
        """Stop every worker now (a forced stop): each is asked to release its POs and exit,
        and what still runs ``STOP_GRACE`` seconds later is killed with its browser. Returns
        within about that time, whatever the workers do; :meth:`reap` collects them."""
        running = [s for s in self.slots if s.process is not None]
        for slot in running:
            slot.draining = True
            self.send(slot, Stop(reason))
        deadline = time.monotonic() + STOP_GRACE
        for slot in running:
            assert slot.process is not None
            slot.process.join(max(0.0, deadline - time.monotonic()))
        for slot in running:
            if slot.process is not None and slot.process.is_alive():
                self.kill(slot, f"{reason}: still running {STOP_GRACE:.0f} s after being told to stop")

    def kill_all(self) -> None:
        for slot in self.slots:
            self.kill(slot, "forced stop")

    @property
    def alive(self) -> list[Slot]:
        return [s for s in self.slots if s.process is not None]


def _describe(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == FATAL_EXIT:
        return "could not start its browser"
    if code == BROKEN_EXIT:
        return "ended: its browser stopped working (a Grid node gone, or the browser's connection)"
    return f"exited with status {code}"


def _decoded(slot: Slot, raw: Any) -> ToDaemon | None:
    """A worker's message for the daemon; None for the pool's own (taken here) and for what
    is not a message this version knows (logged)."""
    try:
        message = decode(raw)
    except MessageError as exc:
        log.warning("slot %d sent something that is not a message: %s", slot.index, exc)
        return None
    if not isinstance(message, TO_DAEMON):
        log.warning("slot %d sent a message meant for a worker: %r", slot.index, message)
        return None
    if isinstance(message, Launched):
        slot.pgid = message.pgid  # what to kill with the worker, from now on
        return None
    return typing.cast(ToDaemon, message)
