"""A worker process: one warm browser running several POs at once, driven over a pipe.

The daemon starts each worker with the ``spawn`` method; they talk in the messages of
:mod:`coupad.messages` (daemon → worker: run these POs, drain, stop; worker → daemon: the
browser's process group as soon as it is launched, ready, heartbeats from the thread that
drives the browser — so a hung call silences them — results, POs released at a stop, and why
the browser cannot start).

A worker never touches the journal: the daemon is its single writer. If the daemon dies
(even by ``kill -9``), the worker sees its parent change, kills its browser and exits, so no
browser outlives the daemon; the daemon's start-up sweep covers the rest. If the worker dies
first, in whatever state, the daemon kills its browser (by the process group it was told at
launch, and by the profile every process of the browser is marked with).

A start that fails after the browser was launched — most often the form sign-in — or that is
still going ``coupa.page_timeout`` after the launch (a WebDriver call waits for a page that
never comes, unbounded) is checked against the tenant itself: when a plain request to it gets
no answer either, the worker says "the tenant at URL did not answer within N s" (status shows
it), kills its browser and exits. That is not a refused sign-in: workers go on being tried
with backoff, and the first that finds the tenant answering again carries on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from coupad import logs
from coupad.config import Config
from coupad.errors import BrowserError, CoupadError, StartStopped
from coupad.messages import (
    Drain,
    Fatal,
    Heartbeat,
    Launched,
    MessageError,
    Ready,
    Released,
    Result,
    Run,
    SignInRefused,
    Stop,
    ToDaemon,
    Watching,
    decode,
    encode,
)
from coupad.ponumber import PoNumber
from coupad.processes import kill_group
from coupad.manifest import entry_from_json
from coupad.records import FileRecord

FATAL_EXIT = 3  # the browser could not start: restarting at once will not help
LOST_PARENT_EXIT = 4
BROKEN_EXIT = 5  # the browser stopped working after the start (a remote node died)
TENANT_PROBE_SECONDS = 10.0  # at most this long (coupa.page_timeout if shorter) to see the
# tenant answer a plain request after a failed start


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, as plain data (it crosses a spawn boundary)."""

    slot: int
    name: str  # lease owner in the journal, unique per process life ("w1.3")
    config: Config
    tabs: int
    profile_dir: Path
    # "chromium", or "package.module:Class" naming an EngineLike (fast tests of pool policy
    # use a scripted fake engine this way).
    engine: str = "chromium"


class EngineLike(Protocol):
    """What a worker needs of an engine (coupad.engine.Engine, or a fake in tests)."""

    @property
    def room(self) -> int: ...

    @property
    def busy(self) -> int: ...

    @property
    def watching(self) -> frozenset[str]:
        """Keys of the POs whose tabs only watch their page (no load, request or download)."""
        ...

    def start(self) -> None: ...

    def submit(self, job: Any) -> None: ...

    def poll(self, max_wait: float = 0.05, wake: Any = None) -> list[Any]: ...

    def abort_all(self, reason: str) -> list[Any]: ...

    def close(self) -> None: ...

    def browser_pgid(self) -> int | None: ...

    @property
    def reported_memory_mb(self) -> float | None:
        """A remote browser's memory as it reports it; None for a local one."""
        ...


def result_message(result: Any) -> Result:
    """A PoResult as the message that reports it, with the files its folder's manifest lists."""
    folder = Path(result.folder) if result.folder else None
    return Result(
        key=result.job.key,
        outcome=result.outcome.name,
        reason=result.reason,
        supplier=result.supplier,
        found=result.found,
        downloaded=result.downloaded,
        names=tuple(result.names),
        folder=str(folder) if folder else None,
        url=result.final_url,
        timings=dict(result.timings),
        retry_after=result.retry_after,
        files=_manifest_files(folder),
    )


def _manifest_files(folder: Path | None) -> tuple[FileRecord, ...]:
    if folder is None:
        return ()
    try:
        data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        records = (entry_from_json(raw) for raw in data.get("files", []))
        # A PDF made of a mail is not an attachment of the PO.
        return tuple(r for r in records if r is not None and not r.derived)
    except (OSError, ValueError, AttributeError, TypeError):
        return ()


def make_engine(spec: WorkerSpec,
                on_launch: Callable[[int | None], None] | None = None,
                stopping: Callable[[], bool] = lambda: False) -> EngineLike:
    """Build the engine a spec asks for; ``on_launch`` is told the browser's process group as
    soon as its processes run, before the engine signs in; while ``stopping()`` says so, the
    engine's start ends (:class:`StartStopped`) as soon as its browser is up."""
    if spec.engine != "chromium":
        import importlib

        module_name, _, class_name = spec.engine.partition(":")
        engine_class = getattr(importlib.import_module(module_name), class_name)
        engine: EngineLike = engine_class(spec.config, tabs=spec.tabs)
        return engine
    from coupad.browser import Browser, BrowserLike, BrowserSpec
    from coupad.engine import Engine

    config = spec.config

    def factory() -> BrowserLike:
        browser_spec = BrowserSpec.of(config, spec.profile_dir, spec.profile_dir / "downloads")
        browser: BrowserLike
        if config.browser.grid_url:
            # A session on Selenium Grid (coupad.browser.remote); nothing of it runs here.
            from coupad.browser.remote import RemoteBrowser, instance_id

            browser = RemoteBrowser.start(browser_spec, config.browser.grid_url,
                                          timeout=config.browser.grid_timeout,
                                          instance=instance_id(config.paths.state),
                                          worker=spec.name)
            pgid = None
        else:
            local = Browser.start(browser_spec)
            browser, pgid = local, local.pgid
        if on_launch is not None:
            on_launch(pgid)
        return browser

    return _ChromiumEngine(Engine(config, browser_factory=factory, tabs=spec.tabs,
                                  stopping=stopping))


class _ChromiumEngine:
    """Adapts coupad.engine.Engine to EngineLike (adds the browser's process group)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    @property
    def room(self) -> int:
        return int(self._engine.room)

    @property
    def busy(self) -> int:
        return int(self._engine.busy)

    @property
    def watching(self) -> frozenset[str]:
        return frozenset(self._engine.watching)

    def browser_pgid(self) -> int | None:
        browser = getattr(self._engine, "browser", None)
        return getattr(browser, "pgid", None)


class _Draining:
    """Set when the daemon (or SIGTERM) asks the worker to finish its POs and exit."""

    asked = False


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of a worker process (module level, so spawn can import it)."""
    logs.setup(spec.config.log.level, spec.config.log.format)
    log = logging.getLogger(f"coupad.worker.{spec.slot}")
    draining = _Draining()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the daemon, which decides

    def on_term(_signo: int, _frame: Any) -> None:
        draining.asked = True

    signal.signal(signal.SIGTERM, on_term)

    send_lock = threading.Lock()
    launched: list[int | None] = []
    started = threading.Event()
    ending = threading.Event()  # the start watch is ending this process, with its reason

    def send(message: ToDaemon) -> None:
        with send_lock:
            conn.send(encode(message))

    def on_launch(pgid: int | None) -> None:
        launched.append(pgid)
        if pgid is not None:
            send(Launched(pgid))
        _watch_start(spec.config, started, ending, send, engine.browser_pgid, log)

    engine = make_engine(spec, on_launch, stopping=lambda: draining.asked)
    _watch_parent(conn, engine.browser_pgid, log)
    try:
        engine.start()
        started.set()
        if draining.asked:
            raise StartStopped("asked to stop while starting")
    except StartStopped as exc:
        # Told to stop (shutdown, drain, recycling) before it was ready: nothing in flight.
        started.set()
        log.info("%s: closing the browser without using it", exc)
        _safe_close(engine, log)
        _remove_profile(spec.profile_dir, log)
        return
    except Exception as exc:
        if ending.is_set():
            threading.Event().wait()  # killing the browser broke the start: the watch exits
        if not isinstance(exc, (BrowserError, CoupadError, OSError)):
            raise
        from coupad.signin import SignInFailed

        silent = _silent_tenant(spec.config) if launched else None
        refused = isinstance(exc, SignInFailed) and silent is None
        why = f"{silent} ({exc})" if silent else str(exc)
        log.error("%s: %s", "sign-in refused" if refused else "browser did not start", why)
        _safe_close(engine, log)
        try:
            send(SignInRefused(why) if refused else Fatal(why))
        except OSError:
            pass
        os._exit(FATAL_EXIT)
    send(Ready(pid=os.getpid(), pgid=engine.browser_pgid(), tabs=spec.tabs))
    log.info("ready with %d tabs", spec.tabs)
    try:
        _loop(spec, conn, engine, send, draining, log)
    finally:
        _safe_close(engine, log)
        _remove_profile(spec.profile_dir, log)
    log.info("exiting")


def _loop(
    spec: WorkerSpec,
    conn: Connection,
    engine: EngineLike,
    send: Callable[[ToDaemon], None],
    draining: _Draining,
    log: logging.Logger,
) -> None:
    from coupad.engine import PoJob

    heartbeat_every = spec.config.pool.heartbeat_seconds / 2
    last_beat = 0.0
    in_flight: set[str] = set()
    watching: frozenset[str] = frozenset()
    while True:
        while conn.poll():
            try:
                message = decode(conn.recv())
            except MessageError as exc:
                log.warning("the daemon sent something that is not a message: %s", exc)
                continue
            if isinstance(message, Run):
                for wire in message.jobs:
                    job = PoJob(po=PoNumber(wire.digits), key=wire.key,
                                deadline_s=wire.deadline_s)
                    engine.submit(job)
                    in_flight.add(job.key)
            elif isinstance(message, Drain):
                draining.asked = True
            elif isinstance(message, Stop):
                for result in engine.abort_all(message.reason):
                    in_flight.discard(result.job.key)
                    send(Released(result.job.key))
                return
        # The engine waits on the pipe, so a new PO starts as soon as the daemon sends it.
        for result in engine.poll(max_wait=0.05, wake=conn):
            in_flight.discard(result.job.key)
            send(result_message(result))
        # The daemon starts more POs while some only watch: tell it as soon as that changes.
        now_watching = engine.watching & in_flight
        if now_watching != watching:
            watching = frozenset(now_watching)
            send(Watching(tuple(sorted(watching))))
        now = time.monotonic()
        if now - last_beat >= heartbeat_every:
            send(Heartbeat(busy=tuple(sorted(in_flight)), room=engine.room,
                           browser_mb=engine.reported_memory_mb))
            last_beat = now
        if draining.asked and not in_flight:
            return
        broken = getattr(engine, "broken", None)
        if broken and not in_flight:
            # Its POs have ended (as retryable); a new worker starts a new browser (on Grid:
            # a new session, on whichever node is up).
            log.error("the browser stopped working (%s); ending this worker", broken)
            raise SystemExit(BROKEN_EXIT)


def _silent_tenant(config: Config) -> str | None:
    """Say that the tenant does not answer when a plain request to it gets no answer in time
    ("the tenant at URL did not answer within N s"); None when it answers anything (an error
    page, a redirect) or cannot be asked (no address, a refused connection, a bad certificate)."""
    import http.client
    import urllib.error
    import urllib.request

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # a redirect is an answer

    base = config.coupa.base
    if not base:
        return None
    timeout = min(TENANT_PROBE_SECONDS, config.coupa.page_timeout)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(urllib.request.Request(base, method="HEAD"), timeout=timeout).close()
        return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        if not isinstance(exc.reason, TimeoutError):
            return None
    except TimeoutError:
        pass
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return f"the tenant at {base} did not answer within {timeout:.0f} s"


def _watch_start(config: Config, started: threading.Event, ending: threading.Event,
                 send: Callable[[ToDaemon], None], pgid: Callable[[], int | None],
                 log: logging.Logger) -> None:
    """Once the browser is launched: if the start is still going ``coupa.page_timeout`` later
    and the tenant does not answer a plain request either, say so, kill our browser and exit."""

    def watch() -> None:
        if started.wait(config.coupa.page_timeout):
            return
        silent = _silent_tenant(config)
        if silent is None or started.is_set():
            return  # the tenant answers: the start is slow, not stuck on it
        log.error("browser did not start: %s", silent)
        ending.set()
        try:
            send(Fatal(silent))
        except OSError:
            pass
        _kill_descendants(pgid())
        os._exit(FATAL_EXIT)

    threading.Thread(target=watch, name="start-watch", daemon=True).start()


def _watch_parent(conn: Connection, pgid: Callable[[], int | None], log: logging.Logger) -> None:
    """Exit, killing our browser, as soon as the daemon is gone (even after kill -9)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                log.warning("daemon is gone; killing our browser and exiting")
                _kill_descendants(pgid())
                os._exit(LOST_PARENT_EXIT)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _kill_descendants(group: int | None) -> None:
    """SIGKILL the browser's process group and every process below this one.

    The group is not known while the browser is still starting, but chromedriver is our
    child and Chromium its child, so walking the tree finds them then too.
    """
    import psutil

    if group:
        kill_group(group)
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass


def _safe_close(engine: EngineLike, log: logging.Logger) -> None:
    try:
        engine.close()
    except Exception as exc:  # the process is ending; the daemon's sweep is the last resort
        log.warning("closing the browser failed: %s", exc)


def _remove_profile(path: Path, log: logging.Logger) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    log.debug("removed profile %s", path)
