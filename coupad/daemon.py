"""`coupad run`: the daemon's main loop — inbox → journal → workers → journal → outbox.

One loop does a fixed sequence per pass, each step taking ``now`` (epoch seconds):

1. signals (handlers only record; the loop acts)
2. inbox: complete files become batches, or are rejected with a reason
3. leases: claimed POs whose worker went silent return to the queue (attempt counted)
4. workers: reap exits, kill hung ones, recycle bloated ones, restart with backoff
5. dispatch: claim POs for free tabs (unless paused, draining or waiting for sign-in)
6. mails: PDFs of the Outlook mails in final PO folders, made off the loop (coupad.pdfs)
7. batches: a batch whose POs are all final, and their mails' PDFs made, gets its report
8. status: publish a snapshot for the control plane
9. wait for worker messages (results, heartbeats) until the next pass

The daemon process is the journal's only writer: it claims POs on behalf of workers, in the
worker's name, and records their results. Workers hold no state that a crash could lose.
Reading an input file, writing a report and converting a mail are slow: they run on
background threads (``Offloop``), and the loop collects their results, so it never stalls on
them. The daemon owns the one converter of mails to PDFs (:class:`coupad.pdfs.PdfMaker`).

The daemon never dies of its disks. When the journal cannot be written (its volume is full or
read-only) it claims nothing and reads no input, keeps the results workers send, says why in
status and once in the log, and tries again with backoff; when a write works it writes what
it kept and carries on. A downloads folder it cannot finish a PO folder in, or an outbox it
cannot write a report to, holds back that batch's report in the same way.

Shutdown has two stages. The first SIGTERM or SIGINT drains: nothing new is claimed, in-flight
POs finish within ``pool.shutdown_timeout``, browsers close, exit status 0. A second signal,
or the deadline, forces: in-flight POs are abandoned and stay queued (no attempt counted),
workers and browsers are killed, exit status 75 (EX_TEMPFAIL) so a supervisor can tell.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import queue
import select
import signal
import socket
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from coupad import __version__, logs, reload
from coupad import config as configuration
from coupad.browser import sweep_leftovers
from coupad.browser.hub import SessionSweeper
from coupad.browser.remote import instance_id
from coupad import commands
from coupad.config import Config
from coupad.control import CommandFailed, ControlServer
from coupad.errors import AlreadyRunning, CoupadError, ExitCode, InputError
from coupad.faults import crash_point
from coupad.records import PdfRecord
from coupad.folders import WORK_SUFFIX, FolderError, PoFolder, find_final
from coupad.inbox import Inbox, InboxFile
from coupad.intake import ParsedFile, parse_file
from coupad.notify import Notifier
from coupad.offloop import Offloop
from coupad import pdfs
from coupad.pdfs import FolderJob, PdfMaker
from coupad.memory import MemoryView
from coupad.throttle import Throttle
from coupad.journal import (
    Batch,
    Journal,
    JournalError,
    JournalUnwritable,
    ReportRow,
    RetryPolicy,
    TaskOutcome,
)
from coupad.ponumber import PoNumber
from coupad.host import Host
from coupad.pool import Exit, Pool, Slot
from coupad.report import BatchReport, ReportLine, write_reports
from coupad.states import PdfState, TaskState, WorkerState
from coupad.snapshot import Snapshot
from coupad.status import SignIn, Trouble, build_snapshot, starting_snapshot, status_line
from coupad.messages import (
    Fatal,
    Heartbeat,
    Job,
    Ready,
    Released,
    Result,
    Run,
    SignInRefused,
    ToDaemon,
    Watching,
)

log = logging.getLogger("coupad.daemon")

MEMORY_SAMPLE_SECONDS = 2.0
MAX_WAIT = 0.5
LOCK_FILE = "coupad.lock"


@dataclass
class SignalFlags:
    """What signal handlers record for the loop to act on."""

    stop_requests: int = 0
    reload: bool = False


@dataclass
class Daemon:
    config: Config
    engine: str = "chromium"
    flags: SignalFlags = field(default_factory=SignalFlags)
    started_at: float = field(default_factory=time.time)
    paused: bool = False
    stopping_since: float | None = None
    forced: bool = False
    sign_in: SignIn = field(default_factory=SignIn)
    snapshot: Snapshot | None = None
    # Its JSON-ready form, made once per pass: what the control socket serves.
    snapshot_plain: dict[str, Any] = field(default_factory=dict)
    _last_memory_sample: float = 0.0
    # How the configuration was loaded, so that SIGHUP can load it again the same way.
    config_path: str | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)
    # The OS effects (start and kill processes, read memory); None: the real system.
    host: Host | None = None

    def __post_init__(self) -> None:
        self.journal: Journal | None = None
        self.inbox: Inbox | None = None
        self._state_lock: int | None = None  # the flock on <state>/coupad.lock, held for life
        self.grid_sweeper: SessionSweeper | None = None  # with browser.grid_url
        self.pool = Pool(self.config, engine=self.engine, host=self.host)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.control = ControlServer(
            self.config.socket_path, lambda: self.snapshot_plain, group=self.config.control.group,
            wake=self._wake,
        )
        self.draining = False  # `coupactl drain`: paused, and browsers closed once idle
        self.throttle = Throttle(limit=self.config.coupa.max_concurrent_pages,
                                 min_interval=self.config.coupa.min_request_interval)
        self.memory: MemoryView | None = None
        self.memory_high = False
        self.journal_trouble = Trouble("journal")
        self.downloads_trouble = Trouble("downloads")
        self.outbox_trouble = Trouble("outbox")
        self.troubles: tuple[Trouble, ...] = (self.journal_trouble, self.downloads_trouble,
                                              self.outbox_trouble)
        # Journal writes that failed (or came while it failed), made in order once it works.
        self._unwritten: list[Callable[[], object]] = []
        self._parser = Offloop("coupad-intake", self._wake)
        self._reporter = Offloop("coupad-report", self._wake)
        self._parsing: deque[tuple[InboxFile, Future[ParsedFile]]] = deque()
        self._reporting: dict[str, Future[list[Path]]] = {}
        self.pdfs = PdfMaker(self._wake)
        self._set_snapshot(starting_snapshot(self, time.time()))
        self.notifier = Notifier()
        self._ready_sent = False

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except BlockingIOError:
            pass  # already awake

    # -- life ----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; return the exit status."""
        self._install_signals()
        if not self._startup(time.time()):
            self._teardown(time.time())  # told to stop while the journal could not be opened
            return int(ExitCode.OK)
        try:
            while not self._finished(time.time()):
                self.step(time.time())
                for slot, message in self.pool.receive(self._wait_time(), [self._wake_r]):
                    self.on_message(slot, message, time.time())
                try:
                    self._wake_r.recv(4096)
                except BlockingIOError:
                    pass
        finally:
            self._teardown(time.time())
        return int(ExitCode.FORCED_STOP if self.forced else ExitCode.OK)

    def _startup(self, now: float) -> bool:
        """Everything before the first pass; False when told to stop before the journal opened."""
        paths = self.config.paths
        # First of all, so that a second daemon on the same state stops here, touching nothing
        # (not even the first one's browsers, which a sweep would take for leftovers).
        self._state_lock = lock_state(paths.state, self.config.socket_path)
        for folder in (paths.outbox, paths.downloads, paths.profiles):
            folder.mkdir(parents=True, exist_ok=True)
        self.control.start()
        swept = sweep_leftovers(paths.profiles)
        if swept:
            log.warning("killed %d leftover browser process group(s) from an earlier run", swept)
        if self.config.browser.grid_url:
            # Sessions of ours on the Grid, by tag: leftovers of an earlier run now, a killed
            # worker's later, all of them at exit (coupad.browser.remote).
            self.grid_sweeper = SessionSweeper(self.config.browser.grid_url,
                                               instance_id(paths.state))
        self._remove_stale_profiles()
        if not self._open_journal():
            return False
        self._write(self._requeue_orphans)
        self._write(partial(self._journal().log_event, "daemon_started", now, pid=os.getpid(),
                            version=__version__))
        self.inbox = Inbox(
            paths.inbox, quiet_seconds=self.config.inbox.quiet_seconds,
            polling=self.config.inbox.polling, on_complete=self._wake,
        )
        self.inbox.start()
        self.pool.start_due(now)
        log.info(
            "coupad %s running: %d workers x %d tabs, inbox %s, journal %s",
            __version__, len(self.pool.slots), self.config.pool.tabs_per_worker,
            paths.inbox, paths.journal,
        )
        return True

    def _open_journal(self) -> bool:
        """Open the journal, waiting (status says why) while its disk refuses; False when a
        stop is requested meanwhile. A clean close leaves no WAL index, and a full disk has
        no room for a new one: without this wait, each restart would die here."""
        while True:
            try:
                self.journal = Journal.open(self.config.paths.journal,
                                            retry=RetryPolicy.of(self.config.tasks))
                return True
            except JournalUnwritable as exc:
                self._journal_failed(exc, time.time())
            while time.time() < self.journal_trouble.retry_at:
                if self.flags.stop_requests:
                    return False
                self.notifier.status(status_line(self._set_snapshot(
                    starting_snapshot(self, time.time()))))
                self.notifier.watchdog()
                self._refuse_commands()
                select.select([self._wake_r], [], [], MAX_WAIT)
                try:
                    self._wake_r.recv(4096)
                except BlockingIOError:
                    pass

    def _refuse_commands(self) -> None:
        while True:
            try:
                request = self.control.requests.get_nowait()
            except queue.Empty:
                return
            request.fail("JOURNAL_UNWRITABLE",
                         f"the journal cannot be opened: {self.journal_trouble.detail}")

    def _requeue_orphans(self) -> None:
        # Every lease in the journal belongs to a worker of an earlier daemon life: its
        # POs go back to the queue now rather than when the lease would have run out.
        lost = self._journal().expire_leases(float("inf"))
        if lost:
            log.warning("requeued %d PO(s) left in flight by an earlier run", len(lost))
            self._finalize_exhausted(lost)

    def _journal(self) -> Journal:
        assert self.journal is not None
        return self.journal

    # -- journal writes that may meet a full disk ----------------------------------------

    def _write(self, write: Callable[[], object]) -> None:
        """Make one journal write now, or keep it (in order) for when the journal works."""
        if self.journal_trouble.active or self._unwritten:
            self._unwritten.append(write)
            return
        try:
            write()
        except JournalUnwritable as exc:
            self._unwritten.append(write)
            self._journal_failed(exc, time.time())

    def _journal_failed(self, exc: JournalError, now: float) -> None:
        detail = str(exc.__cause__ or exc)
        if self.journal_trouble.failed(now, detail):
            log.error("cannot write the journal %s: %s. No PO is started and no input is read "
                      "until it can be written; trying again with backoff",
                      self.config.paths.journal, detail)

    def _journal_works(self, now: float) -> bool:
        """Whether the journal can be written this pass: no trouble, or its retry worked."""
        if not self.journal_trouble.active:
            return True
        if not self.journal_trouble.due(now):
            return False
        journal = self._journal()
        try:
            journal.log_event("journal_unwritable", now, since=self.journal_trouble.since,
                              detail=self.journal_trouble.detail)
            while self._unwritten:
                self._unwritten[0]()
                self._unwritten.pop(0)
            # Heartbeats were not written meanwhile: extend the leases of POs still in flight.
            for slot in self.pool.slots:
                journal.heartbeat(slot.name, list(slot.in_flight.values()), now,
                                  self.config.pool.lease_seconds)
        except JournalUnwritable as exc:
            self._journal_failed(exc, now)
            return False
        lasted = self.journal_trouble.cleared(now)
        log.info("the journal is writable again after %.0f s; work resumes", lasted or 0.0)
        return True

    def _journal_steps(self, now: float, *steps: Callable[[float], None]) -> None:
        """Run steps that write the journal, unless it cannot be written; stop at a failure."""
        if not self._journal_works(now):
            return
        for step in steps:
            try:
                step(now)
            except JournalUnwritable as exc:
                self._journal_failed(exc, now)
                return

    def _remove_stale_profiles(self) -> None:
        import shutil

        root = self.config.paths.profiles
        for entry in root.iterdir():
            if entry.is_dir() and entry.name != "base":
                shutil.rmtree(entry, ignore_errors=True)

    def _teardown(self, now: float) -> None:
        if self.pool.alive:
            self.pool.stop_all("daemon exiting")
            deadline = time.time() + 5
            while self.pool.alive and time.time() < deadline:
                for slot, message in self.pool.receive(0.2):
                    self.on_message(slot, message, time.time())
                self._reap(time.time())
            self.pool.kill_all()
            self._reap(time.time())
        if self.grid_sweeper is not None:
            ended = self.grid_sweeper.final()
            if ended:
                log.info("ended %d Grid session(s) of ours that no worker closed", ended)
        if self.inbox is not None:
            self.inbox.stop()
        # A mail being converted may finish; one that does not stays pending for the next start.
        self.pdfs.close(timeout=1.0 if self.forced else 5.0)
        if self.journal is not None:
            self._collect_pdfs(now)  # what was made before the stop is recorded
        self._parser.stop()
        self._finish_reports(now)
        self.control.stop()
        if self.journal is not None:
            journal = self.journal
            self._write(partial(journal.log_event, "daemon_stopped", now, forced=self.forced))
            if self._unwritten:
                self.journal_trouble.retry_at = now  # one last try
                self._journal_works(now)
            if self._unwritten:
                log.warning("%d journal write(s) could not be made (%s): the POs concerned "
                            "run again after the next start", len(self._unwritten),
                            self.journal_trouble.detail)
            try:
                journal.close()
            except sqlite3.Error as exc:
                log.warning("closing the journal: %s", exc)
        self._reporter.stop()
        log.info("stopped (%s)", "forced" if self.forced else "clean")
        if self._state_lock is not None:
            os.close(self._state_lock)  # the lock goes last: nothing of ours touches state now
            self._state_lock = None

    def _install_signals(self) -> None:
        def on_stop(signo: int, _frame: Any) -> None:
            self.flags.stop_requests += 1

        def on_hup(_signo: int, _frame: Any) -> None:
            self.flags.reload = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _finish_reports(self, now: float) -> None:
        """At exit, wait for reports being written, within what is left of the stop budget."""
        if not self._reporting:
            return
        budget = self.config.pool.shutdown_timeout
        left = (self.stopping_since or now) + budget - time.time()
        wait(list(self._reporting.values()), timeout=max(0.0, left))
        if self.journal is not None:
            self._collect_reports(time.time())

    def _finished(self, now: float) -> bool:
        if self.stopping_since is None:
            return False
        return not self.pool.alive

    def _wait_time(self) -> float:
        return MAX_WAIT

    # -- one pass ------------------------------------------------------------------------

    def step(self, now: float) -> None:
        """One pass of the loop (tests call it with a chosen ``now``)."""
        self._signals(now)
        self._control(now)
        self._journal_steps(now, self._intake, self._leases)
        self._workers(now)
        if self.grid_sweeper is not None:
            self.grid_sweeper.due(time.monotonic(), frozenset(
                slot.name for slot in self.pool.slots if slot.process is not None))
        self._journal_steps(now, self._dispatch, self._mails, self._batches)
        self._publish(now)

    def _signals(self, now: float) -> None:
        if self.flags.stop_requests and self.stopping_since is None:
            self.request_stop(now)
        if self.stopping_since is not None:
            deadline = self.stopping_since + self.config.pool.shutdown_timeout
            if (self.flags.stop_requests >= 2 or now >= deadline) and not self.forced:
                log.warning("forcing the stop: in-flight POs stay queued")
                self.forced = True
                self.pool.stop_all("forced stop")
        if self.flags.reload:
            self.flags.reload = False
            self.reload_config(now)

    def reload_config(self, now: float) -> None:
        """SIGHUP: apply what can change live; say what waits for a restart."""
        try:
            loaded = configuration.load(self.config_path, overrides=self.config_overrides)
            change = reload.plan(self.config, loaded)
        except CoupadError as exc:
            log.error("SIGHUP: the configuration was not reloaded: %s", exc)
            return
        self.config = change.config
        self.pool.resize(change.config, now)
        self.throttle.resize(change.config.coupa.max_concurrent_pages)
        self.throttle.min_interval = change.config.coupa.min_request_interval
        if self.journal is not None:
            self.journal.retry = RetryPolicy.of(change.config.tasks)
        if self.inbox is not None:
            self.inbox.quiet_seconds = change.config.inbox.quiet_seconds
        logs.set_level(change.config.log.level)
        if self.sign_in.failed:
            self.resume(now)  # the password file may have been fixed
        log.info("SIGHUP: configuration reloaded; applied: %s",
                 ", ".join(change.applied) or "nothing changed")
        if change.needs_restart:
            log.warning("SIGHUP: changed but applied only after a restart: %s",
                        ", ".join(change.needs_restart))
        journal = self._journal()
        self._write(partial(journal.log_event, "config_reloaded", now,
                            applied=list(change.applied),
                            needs_restart=list(change.needs_restart)))

    def pause(self) -> None:
        """`coupactl pause`: no new POs start; in-flight POs finish."""
        self.paused = True
        log.info("paused: no new POs start; in-flight POs finish")

    def resume(self, now: float) -> None:
        """`coupactl resume`, or a reload after a refused sign-in: work again; a refused form
        sign-in is tried again (its password file may have been fixed)."""
        self.paused = self.draining = False
        if self.sign_in.failed:
            self.sign_in.failed = False
            for slot in self.pool.slots:
                self.pool.revive(slot, now)
        log.info("resumed")

    def drain(self) -> None:
        """`coupactl drain`: paused, and each browser closes once its POs have finished."""
        self.paused = self.draining = True
        for slot in self.pool.slots:
            self.pool.drain(slot, "drained by coupactl")
        log.info("draining: in-flight POs finish, then browsers close until `resume`")

    def request_stop(self, now: float) -> None:
        """First stage of shutdown: claim nothing new, let in-flight POs finish."""
        if self.stopping_since is not None:
            return
        self.stopping_since = now
        self.notifier.stopping()
        log.info("stopping: finishing in-flight POs (at most %.0f s)",
                 self.config.pool.shutdown_timeout)
        for slot in self.pool.slots:
            self.pool.drain(slot, "shutdown")

    def _control(self, now: float) -> None:
        """Answer the commands coupactl sent since the last pass."""
        while True:
            try:
                request = self.control.requests.get_nowait()
            except queue.Empty:
                return
            handler = commands.HANDLERS.get(request.command)
            if handler is None:
                request.fail("UNKNOWN_COMMAND", f"unknown command {request.command!r}")
                continue
            try:
                request.answer(handler(self, now, **request.args))
            except CommandFailed as exc:
                request.fail(exc.code, str(exc))
            except TypeError as exc:
                request.fail("BAD_REQUEST", f"wrong arguments for {request.command}: {exc}")
            except JournalUnwritable as exc:
                self._journal_failed(exc, now)
                request.fail("JOURNAL_UNWRITABLE", f"the journal cannot be written: {exc}")
            except CoupadError as exc:
                request.fail("FAILED", str(exc))

    def _intake(self, now: float) -> None:
        """Complete inbox files are read off the loop, in order; each read file becomes a batch
        here (a file whose batch the journal could not take stays first, and is tried again)."""
        assert self.inbox is not None
        if self.stopping_since is not None:
            return
        while self._parsing and self._parsing[0][1].done():
            item, future = self._parsing[0]
            self._take(item, future, now)
            self._parsing.popleft()
        max_rows = self.config.inbox.max_rows
        for item in self.inbox.ready(now):
            job = partial(parse_file, item.path, max_rows=max_rows)
            self._parsing.append((item, self._parser.submit(job)))

    def _take(self, item: InboxFile, future: Future[ParsedFile], now: float) -> None:
        assert self.inbox is not None and self.journal is not None
        journal = self.journal
        try:
            parsed = future.result()
        except InputError as exc:
            self.inbox.reject(item, str(exc))
            log.warning("rejected %s: %s", item.path.name, exc)
            self._write(partial(journal.log_event, "file_rejected", now, file=item.path.name,
                                reason=str(exc)))
            return
        except FileNotFoundError:
            self.inbox.forget(item)
            return
        except OSError as exc:  # unreadable now: the inbox offers it again once it changes
            log.warning("cannot read %s: %s", item.path.name, exc)
            return
        existing = self.journal.open_batch_with_content(parsed.content_sha256)
        if existing is not None:
            self.inbox.accept(item, existing.id)
            log.info("%s has the same content as open batch %s; not added again",
                     item.path.name, existing.id)
            return
        rows = parsed.rows
        batch = self.journal.create_batch(
            name=parsed.name, source=item.path.name, content_sha256=parsed.content_sha256,
            priority=item.priority or self.config.inbox.default_priority, fmt=parsed.fmt,
            columns=list(parsed.columns), po_column=parsed.po_column, rows=rows, now=now,
            skip_completed=self.config.tasks.skip_completed,
            max_attempts=self.config.tasks.max_attempts,
        )
        crash_point("intake")
        self.inbox.accept(item, batch.id)
        invalid = sum(1 for r in parsed.rows if r.error)
        log.info("batch %s from %s: %d rows, %d POs, %d invalid rows", batch.id,
                 item.path.name, len(parsed.rows), batch.task_count, invalid)

    def _leases(self, now: float) -> None:
        expired = self._journal().expire_leases(now)
        if expired:
            log.warning("%d lease(s) expired; POs requeued", len(expired))
            held = {t.id for t in expired}
            for slot in self.pool.slots:
                slot.in_flight = {k: v for k, v in slot.in_flight.items() if v not in held}
            self._finalize_exhausted(expired)

    def _workers(self, now: float) -> None:
        self._reap(now)
        for slot in self.pool.hung(now, self.config.pool.lease_seconds):
            self.pool.kill(slot, f"no heartbeat for {self.config.pool.lease_seconds:.0f} s")
        self._reap(now)
        if now - self._last_memory_sample >= MEMORY_SAMPLE_SECONDS:
            self._last_memory_sample = now
            self._check_memory()
        if self.sign_in.needed and self.config.coupa.sign_in == "profile":
            if self._profile_stamp() != self.sign_in.profile_stamp:
                self.base_profile_updated(now)  # someone copied a signed-in profile in
        if self.stopping_since is None and not self.draining and not self.sign_in.failed:
            self.pool.start_due(now)

    def _check_memory(self) -> None:
        """Recycle bloated browsers; above the high watermark start nothing new and recycle
        the largest browser, so that the limit (cgroup's or host's) is never reached."""
        limit_mb = self.config.pool.max_browser_mb
        self.pool.sample_memory()
        for slot in self.pool.slots:
            if slot.memory_mb > limit_mb and not slot.draining:
                uses = ("remote browser's tabs report" if slot.reported_mb is not None
                        else "browser uses")
                self.pool.drain(slot, f"{uses} {slot.memory_mb:.0f} MB "
                                      f"(pool.max_browser_mb = {limit_mb})")
        self.memory = self.pool.host.memory()
        watermark = self.config.pool.memory_high_watermark
        if self.memory.pressure >= watermark:
            if not self.memory_high:
                log.warning("memory at %.0f%% of %s limit (watermark %.0f%%): starting no new "
                            "POs and recycling the largest browser",
                            self.memory.pressure * 100, self.memory.source, watermark * 100)
            self.memory_high = True
            running = [s for s in self.pool.slots if s.alive and not s.draining]
            if running:
                largest = max(running, key=lambda s: s.memory_mb)
                self.pool.drain(largest, "memory above the high watermark")
        elif self.memory_high and self.memory.pressure < watermark - 0.05:
            log.info("memory back to %.0f%%: resuming", self.memory.pressure * 100)
            self.memory_high = False

    def _reap(self, now: float) -> None:
        journal = self._journal()
        for ended in self.pool.reap(now, lambda slot, m: self.on_message(slot, m, now)):
            self._requeue_held(ended, now)
            reason = ended.slot.recycle_reason if ended.expected else ended.slot.last_error
            self._write(partial(journal.log_event, "worker_exit", now, slot=ended.slot.index,
                                exitcode=ended.exitcode, expected=ended.expected, reason=reason))

    def _requeue_held(self, ended: Exit, now: float) -> None:
        """POs held by a worker that died count one attempt each and go back to the queue."""
        journal = self._journal()
        owner = f"w{ended.slot.index}.{ended.slot.generation}"
        why = ended.slot.last_error or "worker ended"
        for task_id in ended.in_flight.values():
            if self.forced:
                self._write(partial(journal.release, owner, [task_id], now))
                continue
            outcome = TaskOutcome(status="ERROR", reason=f"worker lost: {why}")
            self._write(partial(self._record, task_id, owner, outcome, now))

    def _dispatch(self, now: float) -> None:
        assert self.journal is not None
        if self.draining or self.memory_high:
            return
        if self.paused or self.stopping_since is not None or self.sign_in.needed:
            return
        # A PO that only watches its page loads nothing from Coupa: it holds no politeness slot.
        working = sum(s.working for s in self.pool.slots)
        allowed = self.throttle.allowed(working, now)
        for slot in self.pool.slots:
            free = min(slot.room, allowed)
            if free <= 0:
                continue
            tasks = self.journal.claim(slot.name, free, now, self.config.pool.lease_seconds,
                                       exclude_pos=self.pdfs.busy_pos)
            if not tasks:
                return
            allowed -= len(tasks)
            self.throttle.started(len(tasks), now)
            jobs = tuple(Job(key=str(t.id), digits=t.po_digits,
                             deadline_s=self.config.tasks.po_timeout) for t in tasks)
            if not self.pool.send(slot, Run(jobs)):
                self._write(partial(self.journal.release, slot.name, [t.id for t in tasks], now))
                continue
            for task in tasks:
                slot.in_flight[str(task.id)] = task.id
            if slot.state == WorkerState.READY:
                self.pool.move(slot, WorkerState.BUSY)

    def _mails(self, now: float) -> None:
        """Record the PDFs made since the last pass, and hand the thread the next final PO
        folders with mails waiting (none of whose tasks is in flight); see coupad.pdfs."""
        journal = self._journal()
        self._collect_pdfs(now)
        if not self.config.downloads.msg_to_pdf:
            self.pdfs.idle()
            return
        room = self.pdfs.room if self.downloads_trouble.due(now) else 0
        if room:
            waiting: dict[str, list[PdfRecord]] = {}
            for record in journal.pending_pdfs(50, exclude_pos=self.pdfs.busy_pos):
                waiting.setdefault(record.po_digits, []).append(record)
            for digits, records in list(waiting.items())[:room]:
                po = PoNumber(digits)
                folder = self._final_folder(po, records[0].folder)
                if folder is not None:
                    self.pdfs.submit(FolderJob(po, folder, tuple(records)))
        self.pdfs.idle()

    def _collect_pdfs(self, now: float) -> None:
        journal = self._journal()
        for job, made in self.pdfs.collect():
            if isinstance(made, Exception):  # the folder refused writes: tried again later
                if self.downloads_trouble.failed(now, str(made)):
                    log.error("cannot write the PDFs of %s's mails: %s; its batch's report "
                              "waits, trying again with backoff", job.po, made)
                continue
            crash_point("pdf_listed")
            for record in job.pending:
                if record.mail in made:
                    self._write(partial(journal.pdf_done, made[record.mail].record(record), now))
            lasted = self.downloads_trouble.cleared(now)
            if lasted is not None:
                log.info("the downloads folder is writable again after %.0f s", lasted)

    def _final_folder(self, po: PoNumber, recorded: str | None) -> Path | None:
        """The PO's final folder: where the journal says, or found again (moved since)."""
        if recorded and not recorded.endswith(WORK_SUFFIX) and Path(recorded).is_dir():
            return Path(recorded)
        return find_final(self.config.paths.downloads, po)

    def _batches(self, now: float) -> None:
        """A batch whose POs are all final, with their folders and their mails' PDFs, gets
        its report written off the loop; it is DONE once the report is written."""
        journal = self._journal()
        self._collect_reports(now)
        if not self.outbox_trouble.due(now):
            return
        for batch in journal.finished_batches():
            if batch.id in self._reporting or not self._folders_finished(batch.id, now):
                continue
            if self.config.downloads.msg_to_pdf and journal.pdfs_pending(batch.id):
                continue
            rows = journal.report_rows(batch.id)
            self._reporting[batch.id] = self._reporter.submit(
                partial(_write_report, self.config.paths.outbox, batch, rows, now))
            if self.outbox_trouble.active:
                return  # one report tries the outbox; the others follow once it works

    def _collect_reports(self, now: float) -> None:
        journal = self._journal()
        for batch_id, future in list(self._reporting.items()):
            if not future.done():
                continue
            del self._reporting[batch_id]
            try:
                paths = future.result()
            except OSError as exc:
                if self.outbox_trouble.failed(now, str(exc)):
                    log.error("cannot write the report of batch %s: %s; trying again with "
                              "backoff", batch_id, exc)
                continue
            lasted = self.outbox_trouble.cleared(now)
            if lasted is not None:
                log.info("the outbox is writable again after %.0f s", lasted)
            self._write(partial(self._mark_done, journal, batch_id, paths, now))

    @staticmethod
    def _mark_done(journal: Journal, batch_id: str, paths: list[Path], now: float) -> None:
        try:
            journal.mark_done(batch_id, now, [str(p) for p in paths])
        except JournalUnwritable:
            raise
        except JournalError as exc:  # re-run while its report was written: written again later
            log.info("batch %s changed while its report was written (%s)", batch_id, exc)
            return
        log.info("batch %s done: report %s", batch_id, paths[0])

    def _folders_finished(self, batch_id: str, now: float) -> bool:
        """Whether every ended PO of the batch has its final folder (renaming those that do
        not yet, when the downloads folder's backoff allows)."""
        unfinished = self._journal().unfinished_folders(batch_id)
        if unfinished and self.downloads_trouble.due(now):
            self._finalize_exhausted(unfinished)
            unfinished = self._journal().unfinished_folders(batch_id)
        return not unfinished

    def _set_snapshot(self, snapshot: Snapshot) -> Snapshot:
        self.snapshot, self.snapshot_plain = snapshot, snapshot.plain()
        return snapshot

    def _publish(self, now: float) -> None:
        assert self.journal is not None
        line = status_line(self._set_snapshot(build_snapshot(self, now)))
        if not self._ready_sent and self.stopping_since is None and not any(
            s.state == WorkerState.STARTING for s in self.pool.slots
        ):
            # Ready once every slot's first browser is warm (or has failed and is backing
            # off: the daemon serves its socket and inbox even when no browser can start);
            # never after a stop began (its workers ended while starting).
            self._ready_sent = True
            self.notifier.ready(line)
            log.info("ready: %s", line)
        else:
            self.notifier.status(line)
        self.notifier.watchdog()

    # -- worker messages -----------------------------------------------------------------

    def on_message(self, slot: Slot, message: ToDaemon, now: float) -> None:
        journal = self._journal()
        if isinstance(message, Ready):
            if slot.state == WorkerState.STARTING:
                self.pool.move(slot, WorkerState.READY)
            slot.pgid = message.pgid
            slot.last_heartbeat = now
            if self.sign_in.needed and self._sign_in_source_changed():
                self._signed_in_again(now)
        elif isinstance(message, Heartbeat):
            slot.last_heartbeat = now
            slot.reported_mb = message.browser_mb
            ids = [slot.in_flight[k] for k in message.busy if k in slot.in_flight]
            if ids and not self.journal_trouble.active:
                try:
                    journal.heartbeat(slot.name, ids, now, self.config.pool.lease_seconds)
                except JournalUnwritable as exc:  # extended again once the journal works
                    self._journal_failed(exc, now)
        elif isinstance(message, Watching):
            slot.watching = frozenset(message.keys)
        elif isinstance(message, Result):
            self._on_result(slot, message, now)
        elif isinstance(message, Released):
            task_id = slot.in_flight.pop(message.key, None)
            if task_id is not None:
                self._write(partial(journal.release, slot.name, [task_id], now))
        elif isinstance(message, Fatal):
            slot.last_error = message.why
        elif isinstance(message, SignInRefused):
            slot.last_error = message.why
            self._sign_in_failed(now, message.why)

    def _on_result(self, slot: Slot, result: Result, now: float) -> None:
        task_id = slot.in_flight.pop(result.key, None)
        if task_id is None:
            log.warning("slot %d reported a PO it does not hold (%s); ignored",
                        slot.index, result.key)
            return
        slot.last_heartbeat = now
        slot.pos_done += 1
        if not slot.in_flight and slot.state == WorkerState.BUSY:
            self.pool.move(slot, WorkerState.READY)
        outcome = TaskOutcome(
            status=result.outcome, reason=result.reason, supplier=result.supplier,
            found=result.found, downloaded=result.downloaded, names=result.names,
            folder=result.folder, url=result.url, retry_after=result.retry_after,
            timings=result.timings, files=result.files,
            mails=pdfs.mails_of(result.files) if self.config.downloads.msg_to_pdf else (),
        )
        self._write(partial(self._record, task_id, slot.name, outcome, now,
                            engine_final=result.outcome in ("PARTIAL", "FAILED")))
        if result.outcome == "THROTTLED":
            self.throttle.throttled(now, result.retry_after)
            log.warning("Coupa throttles: at most %d POs in flight, none started for %.0f s",
                        int(self.throttle.cap), self.throttle.paused_until - now)
        elif result.outcome != "SIGNED_OUT":
            self.throttle.succeeded()
        if result.outcome == "SIGNED_OUT" and not self.sign_in.needed:
            self._signed_out(now, result.reason)
        if slot.pos_done >= self.config.pool.recycle_after_pos and not slot.draining:
            self.pool.drain(slot, f"recycling after {slot.pos_done} POs")

    def _record(self, task_id: int, owner: str, outcome: TaskOutcome, now: float, *,
                engine_final: bool = False) -> None:
        self._after_record(self._journal().record(task_id, owner, outcome, now), now,
                           engine_final=engine_final)

    def _after_record(self, task: Any, now: float, *, engine_final: bool = False) -> None:
        """Give a PO that ended without the engine's help (retries exhausted) its folder; a
        PO the engine ended PARTIAL or FAILED itself (a permanent problem) has its folder."""
        if task.state in (TaskState.FAILED, TaskState.PARTIAL) and not engine_final:
            self._finalize_exhausted([task])

    def _finalize_exhausted(self, tasks: list[Any]) -> None:
        """Rename the folders of POs that ended without the engine's help; one that cannot be
        renamed (read-only or full downloads) keeps the batch's report waiting, see _batches."""
        journal = self._journal()
        now = time.time()
        for task in tasks:
            if task.state not in (TaskState.FAILED, TaskState.PARTIAL):
                continue
            try:
                folder = PoFolder.open(self.config.paths.downloads, PoNumber(task.po_digits))
                final = folder.finalize(task.state.value)
            except (OSError, FolderError) as exc:
                if self.downloads_trouble.failed(now, str(exc)):
                    log.error("cannot finish the folder of PO%s (%s): %s; its batch's report "
                              "waits, trying again with backoff", task.po_digits,
                              task.state.value, exc)
                continue
            self._write(partial(journal.set_folder, task.id, str(final)))
            lasted = self.downloads_trouble.cleared(now)
            if lasted is not None:
                log.info("the downloads folder is writable again after %.0f s", lasted)

    # -- sign-in -------------------------------------------------------------------------

    def _signed_out(self, now: float, detail: str) -> None:
        log.warning("Coupa session expired or signed out: %s. Work pauses until sign-in.", detail)
        self.sign_in = SignIn(needed=True, since=now, detail=detail,
                              profile_stamp=self._profile_stamp())
        journal = self._journal()
        self._write(partial(journal.log_event, "sign_in_needed", now, detail=detail))
        if self.config.coupa.sign_in == "form":
            # Fresh browsers sign in on the native form when they start.
            for slot in self.pool.slots:
                self.pool.drain(slot, "signing in again")

    def _sign_in_failed(self, now: float, why: str) -> None:
        """The native form refused the password: stop, rather than hammer Coupa with it."""
        journal = self._journal()
        if not self.sign_in.failed:
            log.error("sign-in failed: %s. No worker starts until the password file is fixed "
                      "and `coupactl resume` (or SIGHUP) is given.", why)
            self._write(partial(journal.log_event, "sign_in_failed", now, detail=why))
        self.sign_in = SignIn(needed=True, since=self.sign_in.since or now, detail=why,
                              failed=True, profile_stamp=self.sign_in.profile_stamp)

    def _sign_in_source_changed(self) -> bool:
        if self.config.coupa.sign_in == "form":
            return True
        return self._profile_stamp() != self.sign_in.profile_stamp

    def _profile_stamp(self) -> float:
        cookies = self.config.paths.base_profile / "Default" / "Cookies"
        try:
            return cookies.stat().st_mtime
        except OSError:
            return 0.0

    def _signed_in_again(self, now: float) -> None:
        journal = self._journal()

        def release() -> None:
            released = journal.release_auth_wait(now)
            log.info("signed in again; %d PO(s) waiting for sign-in are queued", released)
            journal.log_event("signed_in", now, released=released)

        self.sign_in = SignIn()
        self._write(release)

    def base_profile_updated(self, now: float) -> None:
        """`coupad login` signed the base profile in: give every worker a fresh copy, once per
        new profile (workers started since then already carry it)."""
        if not self.sign_in.needed:
            return
        stamp = self._profile_stamp()
        if self.sign_in.replaced_for == stamp:
            return
        self.sign_in.replaced_for = stamp
        for slot in self.pool.slots:
            self.pool.drain(slot, "picking up the new sign-in")
        self.sign_in.profile_stamp = -1.0  # any stamp now counts as changed


def lock_state(state: Path, socket_path: Path) -> int:
    """Hold the state folder for this process's life, or raise AlreadyRunning naming the holder.

    An flock on ``<state>/coupad.lock``: the kernel releases it when the process dies, however
    it dies, so a stale lock never needs cleaning. The descriptor is not inherited by workers
    or browsers (Python opens files close-on-exec), so none of them can keep it held.
    """
    state.mkdir(parents=True, exist_ok=True)
    path = state / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(fd)
        os.close(fd)
        if holder is None:
            raise AlreadyRunning(f"another coupad holds the state folder {state} (it is "
                                 "starting: its pid is not written yet)") from None
        pid, at = holder
        raise AlreadyRunning(
            f"another coupad already answers on {at} (pid {pid}) and holds the state folder "
            f"{state}; stop it first (`coupactl --socket {at} stop`) or give this one another "
            "state folder"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "socket": str(socket_path)}).encode(), 0)
    except OSError as exc:  # a full disk: the lock holds all the same, unnamed
        log.warning("cannot write who holds %s: %s", path, exc)
    return fd


def _lock_holder(fd: int) -> tuple[int, str] | None:
    """The pid and control socket the lock's holder wrote into the lock file, if it has."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return int(holder["pid"]), str(holder["socket"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_report(outbox: Path, batch: Batch, rows: list[ReportRow], now: float) -> list[Path]:
    """Build a finished batch's report from its rows and write it (off the loop)."""
    report = BatchReport(
        name=batch.name, batch_id=batch.id, fmt=batch.fmt,
        columns=tuple(batch.columns), lines=tuple(_report_line(r) for r in rows),
        started_at=batch.created_at, finished_at=now, timings=_mean_timings(rows),
    )
    return write_reports(outbox, report)


def _mean_timings(rows: list[Any]) -> dict[str, float]:
    """Mean seconds per stage over the batch's POs (each PO once, whatever its row count)."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for row in rows:
        task = row.task
        if task is None or task.id in seen:
            continue
        seen.add(task.id)
        for stage, seconds in (task.timings or {}).items():
            totals[stage] = totals.get(stage, 0.0) + float(seconds)
            counts[stage] = counts.get(stage, 0) + 1
    return {stage: totals[stage] / counts[stage] for stage in totals}


def _report_line(row: Any) -> ReportLine:
    task = row.task
    if task is None:
        return ReportLine(values=tuple(row.values), status="INVALID", supplier="", found=None,
                          downloaded=None, names=(), last_processed="", error=row.error or "",
                          folder="", url="")
    done = [p for p in row.pdfs if p.state is not PdfState.PENDING]
    return ReportLine(
        values=tuple(row.values), po=f"PO{task.po_digits}", status=task.state.value,
        supplier=task.supplier or "",
        found=task.found, downloaded=task.downloaded, names=tuple(task.names),
        last_processed=task.last_processed or "", error=task.reason or "",
        folder=task.folder or "", url=task.url or "",
        pdfs=sum(p.state is PdfState.MADE for p in done) if done else None,
        pdf_errors=tuple(f"{p.mail}: {p.reason}" for p in done if p.state is PdfState.FAILED),
    )


# -- the `coupad run` command --------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="config file (default: search order of the README)")
    parser.add_argument("--workers", type=int, help="override pool.workers")
    parser.add_argument("--tabs", type=int, help="override pool.tabs_per_worker")
    parser.add_argument("--log-format", choices=("text", "json"), help="override log.format")


def main(args: argparse.Namespace) -> int:
    config = configuration.load(
        args.config,
        overrides={"pool.workers": args.workers, "pool.tabs_per_worker": args.tabs,
                   "log.format": args.log_format},
    )
    logs.setup(config.log.level, config.log.format)
    config.coupa.require_base_url()
    # COUPAD_TEST_ENGINE ("module:Class") swaps the browser engine for a scripted fake in
    # tests of pool policy; production never sets it.
    engine = os.environ.get("COUPAD_TEST_ENGINE", "chromium")
    try:
        overrides = {"pool.workers": args.workers, "pool.tabs_per_worker": args.tabs,
                     "log.format": args.log_format}
        return Daemon(config, engine=engine, config_path=args.config,
                      config_overrides=overrides).run()
    except CoupadError:
        raise
    except OSError as exc:
        raise CoupadError(f"cannot run: {exc}") from exc
