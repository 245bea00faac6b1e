"""A warm, locked-down headless Chromium that prints HTML documents to PDF, and nothing else.

A browser of its own — never a worker's signed-in one — with a throwaway profile, driven over
a DevTools pipe (no debugging port). Nothing it renders may reach any network: its proxy is
a loopback port this process holds bound but never listens on (for loopback addresses too),
every host name resolves to nothing, script is off (by switch and by DevTools), every URL
scheme but ``data:`` is blocked for the tab, and the document carries a CSP that allows
``data:`` only. Each mail gets a fresh tab: the document goes in with
``Page.setDocumentContent`` into ``about:blank`` (a ``file://`` page could read local
files), out with ``Page.printToPDF`` (untagged: tagging multiplies size and time).

Every call has a deadline and the browser's memory is watched while it works; a time-out,
a crash or too much memory kills the browser's whole process group, and the next document
starts a new browser. :meth:`Renderer.close` always leaves no process behind.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from coupad.browser.launch import BROWSER_MARK, QUIET_FLAGS, kill_browser
from coupad.errors import BrowserError
from coupad.msg.pipe import Pipe, PipeError, PipeTimeout
from coupad.msg.reader import Unconvertible

log = logging.getLogger("coupad.msg")

CHROMIUM = "/usr/bin/chromium"
# Every scheme the tab might be told to load, blocked; data: stays (it is the images).
BLOCKED_URLS = [
    f"{scheme}:*"
    for scheme in ("http", "https", "ws", "wss", "ftp", "file", "filesystem", "blob", "chrome",
                   "chrome-extension", "chrome-untrusted", "devtools", "javascript", "about")
]
A4_INCHES = (8.27, 11.69)


class Renderer:
    """One headless Chromium for many documents; use as a context manager or call close()."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        memory_limit: int = 1536 << 20,
        max_pages: int = 500,
        chromium: str = CHROMIUM,
        profile_dir: Path | None = None,
        extra_flags: tuple[str, ...] = (),
    ) -> None:
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.max_pages = max_pages
        self.chromium = chromium
        self.extra_flags = extra_flags  # tests: --disable-features=LocalNetworkAccessChecks
        self._profile_parent = profile_dir
        self._profile: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: Pipe | None = None
        self._dead_port: socket.socket | None = None
        self.starts = 0

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The browser's process id (its process group's too), while it runs."""
        return self._process.pid if self._process is not None else None

    def render(self, document: str) -> bytes:
        """``document`` printed to PDF; Unconvertible on a time-out, crash or memory cap."""
        if self._process is not None and self._process.poll() is not None:
            log.warning("PDF renderer exited on its own (status %s); starting a new one",
                        self._process.returncode)
            self._stop()
        if self._process is None:
            self._start()
        assert self._pipe is not None
        deadline = time.monotonic() + self.timeout
        try:
            return self._print(self._pipe, document, deadline)
        except PipeTimeout:
            self._stop()
            raise Unconvertible(f"rendering took longer than {self.timeout:g} s") from None
        except _TooMuchMemory as exc:
            self._stop()
            raise Unconvertible(str(exc)) from None
        except PipeError as exc:
            crashed = self._process is not None and self._process.poll() is not None
            self._stop()
            if crashed:
                raise Unconvertible("the renderer crashed on this mail") from None
            raise Unconvertible(f"the renderer refused the mail ({exc})") from None

    def close(self) -> None:
        """Stop the browser (its whole process group) and remove its profile."""
        self._stop()

    # ---- one document ----------------------------------------------------------------------

    def _print(self, pipe: Pipe, document: str, deadline: float) -> bytes:
        pipe.events.clear()
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, deadline=deadline)
        target_id = target["targetId"]
        try:
            attached = pipe.call(
                "Target.attachToTarget", {"targetId": target_id, "flatten": True},
                deadline=deadline,
            )
            session = attached["sessionId"]
            for method, params in (
                ("Emulation.setScriptExecutionDisabled", {"value": True}),
                ("Network.enable", {}),
                ("Network.setBlockedURLs", {"urls": BLOCKED_URLS}),
                ("Network.setCacheDisabled", {"cacheDisabled": True}),
                ("Page.enable", {}),
            ):
                pipe.call(method, params, session=session, deadline=deadline)
            tree = pipe.call("Page.getFrameTree", session=session, deadline=deadline)
            frame_id = tree["frameTree"]["frame"]["id"]
            pipe.call(
                "Page.setDocumentContent", {"frameId": frame_id, "html": document},
                session=session, deadline=deadline,
            )
            pipe.wait_event(
                lambda event: event[2] == session and event[0] == "Page.loadEventFired",
                deadline=deadline, what="loading the document", tick=self._check_memory,
            )
            self._check_memory()
            printed = pipe.call(
                "Page.printToPDF",
                {
                    "printBackground": True,
                    "paperWidth": A4_INCHES[0],
                    "paperHeight": A4_INCHES[1],
                    "preferCSSPageSize": True,
                    "generateTaggedPDF": False,
                    "generateDocumentOutline": False,
                    "pageRanges": f"1-{self.max_pages}",
                },
                session=session,
                deadline=deadline,
                tick=self._check_memory,
            )
            return base64.b64decode(printed["data"])
        finally:
            if self._process is not None and self._process.poll() is None:
                with contextlib.suppress(PipeError):
                    pipe.call("Target.closeTarget", {"targetId": target_id},
                              deadline=time.monotonic() + 5.0)

    def _check_memory(self) -> None:
        """Give up on the document (by raising) when the browser holds too much memory."""
        used = self.memory()
        if used > self.memory_limit:
            raise _TooMuchMemory(
                f"rendering needed more than {self.memory_limit >> 20} MB "
                f"({used >> 20} MB in use)"
            )

    def memory(self) -> int:
        """Resident bytes of the browser and all its processes (0 when none runs)."""
        if self._process is None:
            return 0
        try:
            root = psutil.Process(self._process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    # ---- the browser -----------------------------------------------------------------------

    def _start(self) -> None:
        parent = self._profile_parent
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self._profile = Path(tempfile.mkdtemp(prefix="coupad-msg-", dir=parent))
        # A port held bound but never listening: the proxy every request would go to is
        # refused at once, and no one else can start listening on it while we live.
        self._dead_port = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._dead_port.bind(("127.0.0.1", 0))
        dead = self._dead_port.getsockname()[1]
        to_browser, commands = os.pipe()  # the browser reads fd 3
        answers, from_browser = os.pipe()  # the browser writes fd 4
        # Its ends move above 4 first, so that placing them on 3 and 4 overwrites neither.
        to_browser, from_browser = _above_4(to_browser), _above_4(from_browser)
        flags = [
            "--headless",
            *QUIET_FLAGS,  # no sandbox (running as root, as the workers' browsers do), no GPU
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--mute-audio",
            "--blink-settings=scriptEnabled=false",
            f"--proxy-server=http://127.0.0.1:{dead}",
            "--proxy-bypass-list=<-loopback>",  # loopback goes to the dead proxy too
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={self._profile}",
            "--remote-debugging-pipe",
            *self.extra_flags,
            "about:blank",
        ]
        environment = dict(os.environ, **{BROWSER_MARK: str(self._profile)})
        # bash moves the pipe ends to fds 3 and 4, closes the originals and becomes Chromium
        # (dash, Debian's sh, takes no fd number above 9).
        script = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-'
        try:
            self._process = subprocess.Popen(
                ["/bin/bash", "-c", script, self.chromium, *flags],
                pass_fds=(to_browser, from_browser),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,  # its own process group, killed whole
            )
        except OSError as exc:
            for fd in (to_browser, commands, answers, from_browser):
                os.close(fd)
            self._stop()
            raise BrowserError(f"cannot start {self.chromium}: {exc}") from None
        os.close(to_browser)
        os.close(from_browser)
        self._pipe = Pipe(commands, answers)
        self.starts += 1
        try:
            self._pipe.call("Browser.getVersion", deadline=time.monotonic() + 20.0)
        except PipeError as exc:
            self._stop()
            raise BrowserError(f"the PDF renderer did not start: {exc}") from None
        log.info("PDF renderer started (pid %d)", self._process.pid)

    def _stop(self) -> None:
        process, self._process = self._process, None
        pipe, self._pipe = self._pipe, None
        if process is not None:
            if pipe is not None and process.poll() is None:
                with contextlib.suppress(PipeError):
                    pipe.call("Browser.close", deadline=time.monotonic() + 2.0)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=2.0)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if pipe is not None:
            pipe.close()
        if self._profile is not None:
            kill_browser(self._profile)  # a helper that left the process group
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None
        if self._dead_port is not None:
            self._dead_port.close()
            self._dead_port = None


class _TooMuchMemory(Exception):
    pass


def _above_4(fd: int) -> int:
    """``fd`` moved to a number above 4 (the original is closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved
