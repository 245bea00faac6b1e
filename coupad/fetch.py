"""`coupad fetch`: process a few POs with one browser and print one line per PO.

Users run it to check their configuration against a few real POs before starting the
daemon. It uses the same engine as the daemon's workers: one browser from a copy of the
base profile (or a fresh profile for form sign-in), ``--tabs`` POs in flight, retries of
retryable outcomes with growing waits (a server's Retry-After is honoured), and a new form
sign-in when Coupa asks for one. A PO whose retries run out is finished as PARTIAL (some
files on disk) or FAILED, as the daemon would. Exit status 0 means every PO reached a final
status of its own (COMPLETED, NO_ATTACHMENTS, NOT_FOUND, ACCESS_DENIED); 1 means some did not.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from coupad import logs
from coupad.browser import Browser, BrowserSpec, copy_profile, new_profile_dir, sweep_leftovers
from coupad.config import Config, load
from coupad.engine import Engine, Outcome, PoJob, PoResult
from coupad.errors import CoupadError, ExitCode, SignInRequired
from coupad.folders import PoFolder
from coupad.ponumber import InvalidPoNumber, PoNumber, normalize
from coupad.records import RetryPolicy

log = logging.getLogger("coupad.fetch")

MAX_SIGN_INS = 3  # form sign-ins per run before giving up: a session that dies at once is a config problem


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", help="configuration file")
    parser.add_argument(
        "--tabs", type=int, metavar="K", help="POs in flight at once (default: pool.tabs_per_worker)"
    )
    parser.add_argument("pos", nargs="+", metavar="PO", help="PO numbers, e.g. PO15262984 or 15262984")


@dataclass
class Attempts:
    """One PO of the run: how often it was tried and when it may be tried again."""

    po: PoNumber
    count: int = 0
    first_started: float | None = None
    started: float = 0.0  # when its current attempt was submitted
    not_before: float = 0.0


def main(args: argparse.Namespace) -> int:
    numbers: list[PoNumber] = []
    for text in args.pos:
        try:
            number = normalize(text)
        except InvalidPoNumber as exc:
            print(f"coupad fetch: {exc}", file=sys.stderr)
            return int(ExitCode.USAGE)
        if number not in numbers:
            numbers.append(number)
    config = load(args.config)
    config.coupa.require_base_url()
    tabs = args.tabs if args.tabs is not None else config.pool.tabs_per_worker
    if tabs < 1:
        print("coupad fetch: --tabs must be at least 1", file=sys.stderr)
        return int(ExitCode.USAGE)
    logs.setup(config.log.level, config.log.format)
    profile = _prepare_profile(config)
    spec = BrowserSpec.of(config, profile, profile / "downloads")
    engine = Engine(config, browser_factory=lambda: Browser.start(spec), tabs=tabs)
    try:
        engine.start()
        finals = Run(config, engine, numbers).run()
    except KeyboardInterrupt:
        engine.abort_all("interrupted")
        print("coupad fetch: interrupted; unfinished POs keep their __WORK folders", file=sys.stderr)
        return int(ExitCode.FAILURE)
    finally:
        engine.close()
        shutil.rmtree(profile, ignore_errors=True)
    return int(ExitCode.OK if finals == len(numbers) else ExitCode.FAILURE)


def _prepare_profile(config: Config) -> Path:
    """A fresh worker profile under our profile root, after sweeping leftovers there."""
    root = config.paths.profiles
    root.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(root)
    profile = new_profile_dir(root, "fetch")
    if config.coupa.sign_in == "profile":
        base = config.paths.base_profile
        if not base.is_dir():
            raise SignInRequired(
                f"there is no signed-in browser profile at {base}: run `coupad login` first "
                "(or set coupa.sign_in = \"form\")"
            )
        copy_profile(base, profile)
    else:
        profile.mkdir(parents=True)
    return profile


class Run:
    """The retry loop of one `coupad fetch` run; prints a line whenever a PO is done."""

    def __init__(self, config: Config, engine: Engine, numbers: list[PoNumber]) -> None:
        self.config = config
        self.retry = RetryPolicy.of(config.tasks)  # the daemon's policy, jitter included
        self.rng = random.Random()
        self.engine = engine
        self.waiting: deque[Attempts] = deque(Attempts(po) for po in numbers)
        self.by_key: dict[str, Attempts] = {}
        self.finals = 0
        self.sign_ins = 0
        self.signed_in_at = 0.0  # when the last sign-in again ended
        self.stopped: str | None = None

    def run(self) -> int:
        """Process every PO; return how many reached a final status of their own."""
        while self.waiting or self.engine.busy:
            self._submit_due()
            for result in self.engine.poll(0.1):
                self._handle(result)
            if self.stopped and not self.engine.busy:
                for attempts in self.waiting:
                    _print(attempts.po, "NOT TRIED", 0, 0, None, 0.0, self.stopped)
                self.waiting.clear()
        return self.finals

    def _submit_due(self) -> None:
        if self.stopped:
            return
        now = time.monotonic()
        for attempts in list(self.waiting):
            if self.engine.free_slots == 0:
                return
            if attempts.not_before > now:
                continue
            self.waiting.remove(attempts)
            attempts.count += 1
            attempts.first_started = attempts.first_started or now
            attempts.started = now
            key = f"{attempts.po.digits}#{attempts.count}"
            self.by_key[key] = attempts
            self.engine.submit(
                PoJob(po=attempts.po, key=key, deadline_s=self.config.tasks.po_timeout)
            )

    def _handle(self, result: PoResult) -> None:
        attempts = self.by_key.pop(result.job.key)
        elapsed = time.monotonic() - (attempts.first_started or time.monotonic())
        if result.outcome.final:
            self.finals += 1
            self._print(result, result.outcome.value, elapsed)
            return
        if result.outcome is Outcome.SIGNED_OUT:
            attempts.count -= 1  # waiting for sign-in is not a failed attempt
            if attempts.started < self.signed_in_at:
                # It met the session that the last sign-in replaced: go again, no new sign-in.
                self.waiting.appendleft(attempts)
            elif self._sign_in_again():
                self.waiting.appendleft(attempts)
            else:
                self._print(result, "SIGN-IN NEEDED", elapsed)
            return
        tasks = self.config.tasks
        if attempts.count < tasks.max_attempts:
            wait = self.retry.delay(attempts.count, self.rng, result.retry_after)
            attempts.not_before = time.monotonic() + wait
            log.info("%s: %s (%s); attempt %d of %d in %.1f s", attempts.po, result.outcome.value,
                     result.reason, attempts.count + 1, tasks.max_attempts, wait)
            self.waiting.append(attempts)
            return
        status = "PARTIAL" if result.downloaded else "FAILED"
        folder = PoFolder.open(self.config.paths.downloads, attempts.po, result.job.group)
        final = folder.finalize(status)
        reason = f"{result.outcome.value} after {attempts.count} attempts: {result.reason}"
        _print(attempts.po, status, result.downloaded, result.found, final, elapsed, reason)

    def _sign_in_again(self) -> bool:
        """Sign in on the form again if allowed; otherwise stop submitting POs."""
        if self.stopped:
            return False
        if self.config.coupa.sign_in != "form":
            self.stopped = "Coupa asks for sign-in: run `coupad login`, then try again"
            return False
        if self.sign_ins >= MAX_SIGN_INS:
            self.stopped = f"Coupa asked for sign-in {self.sign_ins} times; check the session settings"
            return False
        self.sign_ins += 1
        try:
            signed_in = self.engine.sign_in()
        except CoupadError as exc:  # SignInFailed (refused, SSO) or a browser that broke
            self.stopped = str(exc)
            return False
        self.signed_in_at = time.monotonic()
        return signed_in

    def _print(self, result: PoResult, status: str, elapsed: float) -> None:
        reason = result.reason if status != "SIGN-IN NEEDED" else self.stopped or result.reason
        _print(result.job.po, status, result.downloaded, result.found, result.folder, elapsed, reason)


def _print(
    po: PoNumber, status: str, downloaded: int, found: int, folder: Path | None, elapsed: float, reason: str
) -> None:
    parts = [f"{po.display:<18}", f"{status:<15}", f"{downloaded}/{found} files", f"{elapsed:6.1f} s",
             str(folder) if folder else "-"]
    line = "  ".join(parts)
    if reason:
        line += f"  ({reason})"
    print(line, flush=True)
