"""One DevTools connection per browser: every tab a flattened session on one socket.

Commands carry the tab's ``sessionId`` and events from all tabs arrive tagged with it;
:meth:`Connection.attach_tabs` gives every tab, open now or later, a session (kept in
``Connection.targets``, a :class:`~coupad.browser.targets.Targets`). The socket, the errors
and the endpoint's discovery are in :mod:`coupad.browser.wire`.

The client is synchronous and select()-friendly, with no threads: :meth:`Connection.send`
writes a command and returns its id at once, :meth:`Connection.pump` reads whatever frames
have arrived (answers are stored, events go to listeners), and :meth:`Connection.result`
says whether a command has been answered. Its socket is :meth:`Connection.fileno`, so a
caller can sleep in one ``select`` over it and its other sockets.

Every command has a deadline. A command past it fails alone with :class:`CdpTimeout`: a tab
legitimately holds an evaluation until a pending navigation commits, so a late answer says
nothing about the others. But if nothing at all has arrived on the socket since that command
was sent, the connection itself may be silent (a Grid node killed under an open socket stays
silent rather than closing): a browser-level probe is sent, and if the probe too goes
unanswered the connection is closed and :class:`ConnectionLost` raised.

Reconnecting: :meth:`Connection.reconnect` opens a new socket to the same endpoint and replays
every *arming* registered with :meth:`Connection.arm` (auto-attach, download behaviour, …).
The browser forgets some settings when the connection that made them closes — the download
behaviour reverts — so anything that must hold for the browser's life is an arming. Sessions
re-attach under new ids; the target→session map follows.

Nothing here logs the parameters or results of a command: they can hold cookie values.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coupad.browser.evaluation import evaluation_value, script_expression
from coupad.browser.targets import Targets
from coupad.browser.wire import (
    CdpError,
    CdpTimeout,
    ConnectionLost,
    TargetCrashed,
    Wire,
    browser_endpoint,
)

__all__ = [
    "CONNECT_TIMEOUT", "DEFAULT_TIMEOUT", "MAX_FRAMES_PER_PUMP", "PROBE_TIMEOUT", "Arming",
    "CdpError", "CdpTimeout", "Connection", "ConnectionLost", "Handler", "Outcome",
    "TargetCrashed", "browser_endpoint", "evaluation_value",
]

log = logging.getLogger("coupad.browser.cdp")

CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 30.0
PROBE_TIMEOUT = 5.0
# A pump reads at most this many frames, so a flood of events cannot keep the caller's loop
# from its other work; what is left stays readable for the next select.
MAX_FRAMES_PER_PUMP = 1000

Handler = Callable[[dict[str, Any], "str | None"], None]
Arming = Callable[["Connection"], None]
Outcome = Callable[[Any], None]  # receives the result dict, or the CdpError that replaced it


@dataclass
class _Command:
    method: str
    session: str | None
    sent_at: float
    deadline: float
    then: Outcome | None
    probe: bool = False


class Connection:
    """A browser-level DevTools connection; see the module docstring for the model."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        probe_timeout: float = PROBE_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.probe_timeout = probe_timeout
        self.connect_timeout = connect_timeout
        self._wire: Wire | None = None
        self._next_id = 0
        self._pending: dict[int, _Command] = {}
        self._outcomes: dict[int, Any] = {}  # answered commands: result dict or CdpError
        self._listeners: dict[str, list[Handler]] = {}
        self._armings: list[Arming] = []
        self._attaching = False
        # Tabs, sessions, openers and crashes as the events tell them (read by callers).
        self.targets = Targets(self._fail_session)
        self._probe: int | None = None
        self._wire = self._connect()

    # ---- the socket ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the socket is closed (after :meth:`close` or a lost connection)."""
        return self._wire is None

    def fileno(self) -> int:
        """The socket, for ``select``; ConnectionLost once it is closed."""
        return self._socket().fileno()

    def close(self) -> None:
        """Close the socket; pending commands fail with ConnectionLost. Armings are kept."""
        self._drop("the connection was closed")

    def reconnect(self) -> None:
        """Open a new socket to the same endpoint and replay every arming, in order."""
        self._drop("the connection was replaced")
        self._wire = self._connect()
        log.info("DevTools connection re-established; re-arming %d setting(s)", len(self._armings))
        try:
            for arming in list(self._armings):
                arming(self)
        except CdpError:
            self._drop("re-arming failed")
            raise

    def arm(self, arming: Arming) -> None:
        """Run ``arming(connection)`` now and again after every :meth:`reconnect`."""
        self._armings.append(arming)
        if not self.closed:
            arming(self)

    def _connect(self) -> Wire:
        return Wire(self.endpoint, timeout=self.connect_timeout)

    def _socket(self) -> socket.socket:
        if self._wire is None:
            raise ConnectionLost("the DevTools connection is closed")
        return self._wire.socket()

    def _drop(self, why: str) -> None:
        """Close the socket; fail what was pending; forget sessions (they die with it)."""
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()
        pending, self._pending = self._pending, {}
        for cid, command in pending.items():
            if not command.probe:
                self._settle(cid, command, ConnectionLost(f"{command.method}: {why}"))
        self._probe = None
        self.targets.forget_sessions()

    def _lost(self, why: str) -> ConnectionLost:
        log.warning("DevTools connection lost: %s", why)
        self._drop(why)
        return ConnectionLost(why)

    # ---- commands --------------------------------------------------------------------------

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
        then: Outcome | None = None,
    ) -> int:
        """Send a command without waiting; return its id.

        Its answer is collected with :meth:`result` — or, with ``then``, handed to
        ``then(result_or_error)`` as it arrives and not stored; an id neither collected nor
        :meth:`discard`-ed keeps its answer in memory. A command to a tab known to have
        crashed fails at once with TargetCrashed, as the tab would never answer.
        """
        wire = self._wire
        if wire is None:
            raise ConnectionLost("the DevTools connection is closed")
        self._next_id += 1
        cid = self._next_id
        now = time.monotonic()
        limit = self.timeout if timeout is None else timeout
        command = _Command(method, session, now, now + limit, then)
        target_id = self.targets.target_of(session) if session is not None else None
        if target_id is not None and self.targets.crashed(target_id):
            self._settle(cid, command, TargetCrashed(f"{method}: the tab crashed"))
            return cid
        message: dict[str, Any] = {"id": cid, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._pending[cid] = command
        try:
            wire.send(message)
        except ConnectionLost as exc:
            raise self._lost(str(exc)) from None
        return cid

    def result(self, cid: int) -> tuple[bool, Any]:
        """``(True, result)`` once answered, ``(False, None)`` while pending.

        An error answer raises CdpError with the browser's message; a command past its
        deadline raises CdpTimeout; one cut off by a lost connection, ConnectionLost. Either
        way the answer is collected only once; an unknown id raises KeyError.
        """
        if cid in self._outcomes:
            outcome = self._outcomes.pop(cid)
            if isinstance(outcome, CdpError):
                raise outcome
            return True, outcome
        if cid in self._pending:
            return False, None
        raise KeyError(cid)

    def discard(self, cid: int) -> None:
        """Give up on a command: its answer, if it comes, is dropped, and its deadline ignored."""
        self._pending.pop(cid, None)
        self._outcomes.pop(cid, None)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send a command and pump until it is answered: its result, or CdpError/CdpTimeout."""
        cid = self.send(method, params, session=session, timeout=timeout)
        while True:
            done, value = self.result(cid)
            if done:
                return value
            self.pump(wait=self.timeout)

    def evaluate(self, session: str, script: str, *args: Any, timeout: float | None = None) -> int:
        """Send ``script`` (a WebDriver-style body: ``arguments[i]``, ``return``) to a tab.

        The tab holds an evaluation sent during a pending navigation until the new document
        commits. Read the answer with :meth:`evaluation`.
        """
        return self.send(
            "Runtime.evaluate",
            {"expression": script_expression(script, args), "returnByValue": True,
             "awaitPromise": False},
            session=session,
            timeout=timeout,
        )

    def evaluation(self, cid: int) -> tuple[bool, Any]:
        """Like :meth:`result` for an :meth:`evaluate`, with the script's value."""
        done, result = self.result(cid)
        return (True, evaluation_value(result)) if done else (False, None)

    # ---- reading ---------------------------------------------------------------------------

    def listen(self, method: str, handler: Handler) -> None:
        """Call ``handler(params, session_id)`` for every event named ``method``.

        ``session_id`` is None for browser-level events. A handler that raises is logged and
        does not stop the others. Listeners outlive reconnects.
        """
        self._listeners.setdefault(method, []).append(handler)

    def pump(self, wait: float = 0.0) -> int:
        """Read every frame that has arrived, waiting up to ``wait`` seconds for the first.

        Answers are stored (or handed to their ``then``), events go to listeners, and
        commands past their deadline time out. The wait ends early at the next deadline.
        Returns the number of frames read; raises ConnectionLost when the socket closed,
        broke or went silent.
        """
        self._socket()  # closed already: ConnectionLost, and nothing more is lost
        now = time.monotonic()
        if self._pending:
            wait = min(wait, max(0.0, min(c.deadline for c in self._pending.values()) - now) + 0.001)
        frames = 0
        while frames < MAX_FRAMES_PER_PUMP and self._readable(wait if frames == 0 else 0.0):
            self._receive()
            frames += 1
            if self._wire is None:
                break
        self._expire(time.monotonic())
        return frames

    def _readable(self, wait: float) -> bool:
        assert self._wire is not None
        try:
            return self._wire.readable(wait)
        except ConnectionLost as exc:
            raise self._lost(str(exc)) from None

    def _receive(self) -> None:
        assert self._wire is not None
        try:
            message = self._wire.receive()
        except ConnectionLost as exc:
            raise self._lost(str(exc)) from None
        if message is not None:
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            cid = message["id"]
            command = self._pending.pop(cid, None) if type(cid) is int else None
            if command is None:
                return  # discarded, timed out, or never ours
            if command.probe:
                self._probe = None
                return
            if "error" in message:
                error = message["error"]
                text = error.get("message") if isinstance(error, dict) else error
                outcome: Any = CdpError(f"{command.method}: {str(text)[:200]}")
            else:
                result = message.get("result")
                outcome = result if isinstance(result, dict) else {}
            self._settle(cid, command, outcome)
            return
        method = message.get("method")
        if not isinstance(method, str):
            return
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        session = message.get("sessionId")
        session = session if isinstance(session, str) else None
        self.targets.track(method, params, session)
        for handler in list(self._listeners.get(method, ())):
            try:
                handler(params, session)
            except Exception:
                log.exception("a listener for %s failed", method)

    def _settle(self, cid: int, command: _Command, outcome: Any) -> None:
        if command.then is None:
            self._outcomes[cid] = outcome
            return
        try:
            command.then(outcome)
        except Exception:
            log.exception("the answer handler of %s failed", command.method)

    def _expire(self, now: float) -> None:
        late = [cid for cid, command in self._pending.items() if command.deadline <= now]
        silent = False
        for cid in late:
            command = self._pending.pop(cid)
            if command.probe:
                raise self._lost(
                    f"the browser went silent: no answer to a probe within {self.probe_timeout:.1f} s"
                )
            silent = silent or (self._wire is not None and self._wire.last_heard < command.sent_at)
            waited = command.deadline - command.sent_at
            self._settle(cid, command, CdpTimeout(f"{command.method}: no answer within {waited:.1f} s"))
        if silent and self._probe is None and self._wire is not None:
            # Nothing has arrived since the late command was sent: ask the browser process
            # itself, which answers even when every renderer is busy.
            self._probe = self.send("Browser.getVersion", timeout=self.probe_timeout)
            self._pending[self._probe].probe = True

    # ---- tabs ------------------------------------------------------------------------------

    def attach_tabs(self) -> None:
        """Give every page target a session, now and after every reconnect (an arming)."""
        if self._attaching:
            return
        self._attaching = True
        self.arm(_attach)

    def wait_session(self, target_id: str, timeout: float | None = None) -> str:
        """Pump until the tab has a session; CdpTimeout after ``timeout`` seconds."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            session = self.targets.session_for(target_id)
            if session is not None:
                return session
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpTimeout(f"tab {target_id} got no DevTools session within {limit:.1f} s")
            self.pump(wait=left)

    def _fail_session(self, session: str, error: type[CdpError], why: str) -> None:
        for cid, command in list(self._pending.items()):
            if command.session == session:
                del self._pending[cid]
                self._settle(cid, command, error(f"{command.method}: {why}"))


def _attach(connection: Connection) -> None:
    connection.call("Target.setDiscoverTargets", {"discover": True})
    connection.call(
        "Target.setAutoAttach",
        {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True},
    )

