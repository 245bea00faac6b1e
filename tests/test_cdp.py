"""One DevTools connection per browser: real Chromium, a silent server, and hostile frames."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import WSMsgType, web

from coupad.browser import Browser, BrowserSpec
from coupad.browser.cdp import (
    MAX_FRAMES_PER_PUMP,
    CdpError,
    CdpTimeout,
    Connection,
    ConnectionLost,
    TargetCrashed,
    browser_endpoint,
    evaluation_value,
)
from util import wait_until

# ---- servers in a thread -------------------------------------------------------------------


class _Loop:
    """An asyncio loop in a daemon thread running one aiohttp app on 127.0.0.1."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._started.wait(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class Site:
    """Pages by path (optionally late), and files streamed at ``rate`` bytes/s (``rates`` by
    path; 0: at once), never cached.

    A file path in ``held`` stops after half its bytes until :meth:`release`; one in
    ``broken`` drops the connection there instead. ``requests`` counts what was asked for.
    """

    def __init__(self, pages: dict[str, str] | None = None, files: dict[str, bytes] | None = None,
                 *, rate: float = 0.0, rates: dict[str, float] | None = None,
                 delays: dict[str, float] | None = None) -> None:
        self.pages = pages or {}
        self.files = files or {}
        self.rate = rate
        self.rates = rates or {}
        self.delays = delays or {}
        self.held: dict[str, threading.Event] = {}
        self.broken: set[str] = set()
        self.requests: dict[str, int] = {}
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._server = _Loop(app)

    def hold(self, path: str) -> None:
        self.held[path] = threading.Event()

    def release(self, path: str) -> None:
        self.held[path].set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests[path] = self.requests.get(path, 0) + 1
        await asyncio.sleep(self.delays.get(path, 0))
        if path in self.files:
            return await self._file(request, path, self.files[path])
        if path in self.pages:
            return web.Response(text=self.pages[path], content_type="text/html")
        return web.Response(status=404, text="no")

    async def _file(self, request: web.Request, path: str, body: bytes) -> web.StreamResponse:
        name = path.rsplit("/", 1)[-1]
        response = web.StreamResponse(headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
        })
        await response.prepare(request)
        chunk = 8192
        rate = self.rates.get(path, self.rate)
        try:
            for start in range(0, len(body), chunk):
                if start >= len(body) // 2 > start - chunk:
                    gate = self.held.get(path)
                    while gate is not None and not gate.is_set():
                        await asyncio.sleep(0.01)
                    if path in self.broken:
                        if request.transport is not None:
                            request.transport.abort()
                        return response
                await response.write(body[start:start + chunk])
                if rate:
                    await asyncio.sleep(min(chunk, len(body) - start) / rate)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the browser cancelled the download
        return response

    def __enter__(self) -> Site:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


Answer = Callable[[dict[str, Any]], list[str | bytes]]


class FakeDevTools:
    """A WebSocket server on 127.0.0.1 that answers commands as ``answer`` says.

    ``answer(command)`` returns the frames to send back (str: text, bytes: a text frame with
    those raw bytes); without ``answer`` the server accepts and never says a word.
    ``push`` sends a frame to every client; ``received`` holds every command.
    """

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer
        self.received: list[dict[str, Any]] = []
        self._clients: list[web.WebSocketResponse] = []
        app = web.Application()
        app.router.add_get("/devtools/browser/fake", self._handle)
        self._server = _Loop(app)

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, max_msg_size=0)
        await ws.prepare(request)
        self._clients.append(ws)
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            command = json.loads(message.data)
            self.received.append(command)
            for frame in self.answer(command) if self.answer else []:
                await _send(ws, frame)
        return ws

    def push(self, frame: str | bytes) -> None:
        async def push_all() -> None:
            for ws in self._clients:
                await _send(ws, frame)
        asyncio.run_coroutine_threadsafe(push_all(), self._server.loop).result(10)

    def push_many(self, frame: str, count: int) -> None:
        async def push_all() -> None:
            for ws in self._clients:
                for _ in range(count):
                    await ws.send_str(frame)
        asyncio.run_coroutine_threadsafe(push_all(), self._server.loop).result(30)

    def ping(self) -> None:
        async def ping_all() -> None:
            for ws in self._clients:
                await ws.ping(b"are you there")
        asyncio.run_coroutine_threadsafe(ping_all(), self._server.loop).result(10)

    def __enter__(self) -> FakeDevTools:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        async def close_all() -> None:
            for ws in self._clients:
                await ws.close()
        asyncio.run_coroutine_threadsafe(close_all(), self._server.loop).result(10)
        self._server.stop()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.port}/devtools/browser/fake"


async def _send(ws: web.WebSocketResponse, frame: str | bytes) -> None:
    if isinstance(frame, bytes):
        await ws.send_frame(frame, WSMsgType.TEXT)
    else:
        await ws.send_str(frame)


# ---- helpers for a real browser ------------------------------------------------------------


def start_browser(root: Path) -> Browser:
    return Browser.start(BrowserSpec(profile_dir=root / "profile", download_dir=root / "dl"))


def connect(browser: Browser, **kw: Any) -> Connection:
    endpoint = browser_endpoint(browser.driver)
    assert endpoint is not None and endpoint.startswith("ws://localhost:")
    connection = Connection(endpoint, **kw)
    connection.attach_tabs()
    return connection


def evaluated(connection: Connection, cid: int, timeout: float = 10.0) -> Any:
    """Pump until the evaluation ``cid`` is answered; its value."""
    deadline = time.monotonic() + timeout
    while True:
        done, value = connection.evaluation(cid)
        if done:
            return value
        assert time.monotonic() < deadline, "the evaluation was not answered"
        connection.pump(wait=0.05)


def open_tab(browser: Browser, connection: Connection, url: str) -> tuple[str, str]:
    """A new tab opened by WebDriver, loaded with ``url``: (its handle, its session)."""
    driver = browser.driver
    driver.switch_to.new_window("tab")
    handle = str(driver.current_window_handle)
    session = connection.wait_session(handle, timeout=10)
    connection.call("Page.navigate", {"url": url}, session=session)

    def loaded() -> bool:
        cid = connection.evaluate(session, "return document.readyState;")
        return bool(evaluated(connection, cid) == "complete")

    wait_until(loaded, timeout=15, what=f"{url} to load")
    return handle, session


def close_other_tabs(browser: Browser, keep: str) -> None:
    driver = browser.driver
    for handle in driver.window_handles:
        if handle != keep:
            driver.switch_to.window(handle)
            driver.close()
    driver.switch_to.window(keep)


def cut_socket(connection: Connection) -> None:
    """Shut the connection's socket down under it, as a dying proxy or node would."""
    dup = socket.socket(fileno=os.dup(connection.fileno()))
    try:
        dup.shutdown(socket.SHUT_RDWR)
    finally:
        dup.close()


# ---- real Chromium -------------------------------------------------------------------------

HOG = ("<html><body><p>hog</p><script>window.hog = new Uint8Array(300 * 1024 * 1024).fill(1);"
       "</script></body></html>")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    pages = {f"/page/{name}": f"<html><body><h1>{name}</h1></body></html>" for name in "abc"}
    pages["/slow"] = "<html><body><h1>slow</h1></body></html>"
    pages["/hog"] = HOG
    with Site(pages, delays={"/slow": 1.0}) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    started = start_browser(tmp_path_factory.mktemp("cdp-browser"))
    try:
        yield started
    finally:
        started.quit()


@pytest.fixture
def connection(browser: Browser) -> Iterator[Connection]:
    first = browser.driver.window_handles[0]
    connection = connect(browser)
    try:
        yield connection
    finally:
        connection.close()
        close_other_tabs(browser, first)


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_three_tabs_evaluate_at_once_over_one_socket(
    browser: Browser, connection: Connection, site: Site
) -> None:
    tabs = [open_tab(browser, connection, f"{site.base}/page/{name}") for name in "abc"]
    assert len({session for _, session in tabs}) == 3
    for _round in range(20):
        cids = [connection.evaluate(session, "return [location.pathname, arguments[0] * 2];", n)
                for n, (_, session) in enumerate(tabs)]
        answers = [evaluated(connection, cid) for cid in cids]
        assert answers == [["/page/a", 0], ["/page/b", 2], ["/page/c", 4]]
    # Every tab is a page target the connection knows, under its WebDriver window handle.
    assert {handle for handle, _ in tabs} <= set(connection.targets.pages())


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_an_evaluation_sent_during_a_pending_navigation_is_answered_after_the_commit(
    browser: Browser, connection: Connection, site: Site
) -> None:
    _, moving = open_tab(browser, connection, f"{site.base}/page/a")
    _, other = open_tab(browser, connection, f"{site.base}/page/b")
    navigation = connection.send("Page.navigate", {"url": f"{site.base}/slow"}, session=moving)
    held = connection.evaluate(moving, "return location.pathname;")
    # The other tab is answered many times while the moving one holds its evaluation.
    answered_meanwhile = 0
    while not connection.evaluation(held)[0]:
        assert answered_meanwhile < 500, "the held evaluation never came back"
        assert evaluated(connection, connection.evaluate(other, "return 1;")) == 1
        answered_meanwhile += 1
        connection.pump(wait=0.01)
    assert connection.result(navigation)[0]
    assert evaluated(connection, connection.evaluate(moving, "return location.pathname;")) == "/slow"
    assert answered_meanwhile > 10  # a second of server time passed before the commit


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_a_tab_opened_by_webdriver_gets_a_session_and_loses_it_when_closed(
    browser: Browser, connection: Connection
) -> None:
    driver = browser.driver
    driver.switch_to.new_window("tab")
    handle = str(driver.current_window_handle)
    session = connection.wait_session(handle, timeout=10)
    assert connection.targets.target_of(session) == handle
    assert evaluated(connection, connection.evaluate(session, "return 6 * 7;")) == 42
    driver.close()
    driver.switch_to.window(driver.window_handles[0])
    wait_until(lambda: connection.pump(0.05) >= 0 and connection.targets.session_for(handle) is None,
               timeout=10, what="the closed tab's session to go")
    with pytest.raises(CdpError):  # a command to a closed tab fails, it does not hang
        connection.call("Runtime.evaluate", {"expression": "1"}, session=session, timeout=5)


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_a_crashed_tab_is_reported_and_the_others_go_on(
    browser: Browser, connection: Connection, site: Site
) -> None:
    crashes: list[tuple[str, Any]] = []
    connection.listen("Target.targetCrashed", lambda params, _s: crashes.append(
        ("target", params.get("targetId"))))
    connection.listen("Inspector.targetCrashed", lambda _p, session: crashes.append(
        ("inspector", connection.targets.target_of(session or ""))))
    _, calm = open_tab(browser, connection, f"{site.base}/page/a")
    # Another site, so another renderer process, made the largest by the page itself.
    victim, session = open_tab(browser, connection, f"http://localhost:{site.port}/hog")
    held = connection.send("Page.navigate", {"url": f"http://localhost:{site.port}/slow"},
                           session=session)
    pending = connection.evaluate(session, "return 1;")
    renderer = max(_renderers(browser), key=lambda p: p.memory_info().rss)
    assert renderer.memory_info().rss > 250 * 1024 * 1024
    os.kill(renderer.pid, signal.SIGKILL)
    wait_until(lambda: connection.pump(0.05) >= 0 and connection.targets.crashed(victim), timeout=15,
               what="the crash to be reported")
    assert ("target", victim) in crashes and ("inspector", victim) in crashes
    with pytest.raises(TargetCrashed):  # pending before the crash: it would never be answered
        connection.evaluation(pending)
    connection.discard(held)
    with pytest.raises(TargetCrashed):  # sent after: it fails at once
        connection.call("Runtime.evaluate", {"expression": "1"}, session=session)
    assert evaluated(connection, connection.evaluate(calm, "return 'still here';")) == "still here"


def _renderers(browser: Browser) -> list[psutil.Process]:
    found = []
    for pid in browser.pids():
        try:
            process = psutil.Process(pid)
            if "--type=renderer" in process.cmdline():
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_reconnect_after_the_socket_is_cut_rearms_and_sessions_work_again(
    browser: Browser, connection: Connection, site: Site
) -> None:
    armed: list[str] = []

    def arming(armed_connection: Connection) -> None:
        armed.append(armed_connection.call("Browser.getVersion")["product"])

    connection.arm(arming)
    handle, old_session = open_tab(browser, connection, f"{site.base}/page/a")
    # An evaluation the tab holds until the slow page commits, a second from now: it is
    # pending for sure when the socket goes (an instant answer could beat the cut).
    connection.send("Page.navigate", {"url": f"{site.base}/slow"}, session=old_session)
    cut_off = connection.evaluate(old_session, "return 1;")
    cut_socket(connection)
    with pytest.raises(ConnectionLost):
        while True:
            connection.pump(wait=1)
    assert connection.closed
    with pytest.raises(ConnectionLost):
        connection.result(cut_off)
    with pytest.raises(ConnectionLost):
        connection.send("Browser.getVersion")
    connection.reconnect()
    assert len(armed) == 2  # the arming ran at arm() and again at reconnect()
    session = connection.wait_session(handle, timeout=10)
    assert session != old_session
    assert connection.targets.target_of(old_session) is None
    assert evaluated(connection, connection.evaluate(session, "return location.pathname;")) == "/slow"


# ---- fake servers: silence and hostility ---------------------------------------------------


@pytest.mark.timeout(30)
def test_a_command_to_a_silent_connection_times_out_and_the_connection_closes() -> None:
    with FakeDevTools() as server:
        connection = Connection(server.url, timeout=0.3, probe_timeout=0.3)
        other = connection.send("Target.getTargets", timeout=30)
        started = time.monotonic()
        with pytest.raises(CdpTimeout, match="Browser.getVersion: no answer"):
            connection.call("Browser.getVersion")
        assert time.monotonic() - started < 5
        # Nothing arrived since the command went out: a probe asks whether anyone is there.
        with pytest.raises(ConnectionLost, match="silent"):
            while time.monotonic() - started < 10:
                connection.pump(wait=0.1)
        assert connection.closed
        with pytest.raises(ConnectionLost):
            connection.result(other)
        assert [c["method"] for c in server.received][-1] == "Browser.getVersion"


@pytest.mark.timeout(30)
def test_a_late_answer_alone_does_not_close_a_live_connection() -> None:
    def answer(command: dict[str, Any]) -> list[str | bytes]:
        if command["method"] == "Held.forever":
            return []
        return [json.dumps({"id": command["id"], "result": {"product": "fake"}})]

    with FakeDevTools(answer) as server:
        connection = Connection(server.url, timeout=5, probe_timeout=0.5)
        held = connection.send("Held.forever", timeout=0.2)
        with pytest.raises(CdpTimeout):
            while not connection.result(held)[0]:
                connection.pump(wait=0.1)
        # The probe is answered: the connection stays, and works.
        assert connection.call("Browser.getVersion") == {"product": "fake"}
        deadline = time.monotonic() + 1  # past the probe's own deadline
        while time.monotonic() < deadline:
            connection.pump(wait=0.1)
        assert not connection.closed
        assert connection.call("Browser.getVersion") == {"product": "fake"}


def _hostile(command: dict[str, Any]) -> list[str | bytes]:
    cid = command["id"]
    if command["method"] == "Fail.me":
        return [json.dumps({"id": cid, "error": {"code": -32000, "message": "Not allowed"}})]
    return [
        "this is not JSON",
        b"\xff\xfe not UTF-8 {",
        "[1, 2, 3]",
        "42",
        '"a string"',
        "null",
        "[" * 200_000 + "]" * 200_000,  # nesting deep enough to exhaust a recursive parser
        json.dumps({"id": str(cid), "result": {"wrong": "id type"}}),
        json.dumps({"id": True, "result": {"wrong": "id type"}}),
        json.dumps({"id": cid + 1000, "result": {"unknown": "id"}}),
        json.dumps({"method": 5, "params": {}}),
        json.dumps({"method": "Target.attachedToTarget", "params": "not a dict"}),
        json.dumps({"method": "Target.attachedToTarget", "sessionId": 7,
                    "params": {"targetInfo": {"type": "page", "targetId": 1}, "sessionId": []}}),
        json.dumps({"method": "Target.targetCrashed", "params": {"targetId": None}}),
        json.dumps({"method": "Some.event", "params": {"blob": "x" * (8 << 20)}}),
        json.dumps({"id": cid, "result": {"ok": True}}),
        json.dumps({"id": cid, "result": {"ok": "a second answer to the same id"}}),
    ]


@pytest.mark.timeout(60)
def test_hostile_frames_do_not_break_the_connection() -> None:
    seen: list[int] = []

    def broken_listener(params: dict[str, Any], _session: str | None) -> None:
        seen.append(len(params.get("blob", "")))
        raise RuntimeError("a listener with a bug")

    with FakeDevTools(_hostile) as server:
        connection = Connection(server.url, timeout=20)
        connection.listen("Some.event", broken_listener)
        for _ in range(2):
            assert connection.call("Browser.getVersion") == {"ok": True}
        server.ping()  # a control frame between data frames
        assert connection.call("Browser.getVersion") == {"ok": True}
        with pytest.raises(CdpError, match="Fail.me: Not allowed"):
            connection.call("Fail.me")
        assert connection.call("Browser.getVersion") == {"ok": True}
        assert not connection.closed
        assert seen == [8 << 20] * 4  # every huge event reached the listener, bug or not
        assert connection.targets.pages() == []


@pytest.mark.timeout(30)
def test_a_flood_of_events_is_read_in_bounded_pumps() -> None:
    with FakeDevTools() as server:
        connection = Connection(server.url)
        flood = MAX_FRAMES_PER_PUMP + 500
        server.push_many(json.dumps({"method": "Some.event", "params": {}}), flood)
        counts: list[int] = []
        while sum(counts) < flood:
            counts.append(connection.pump(wait=1))
            assert counts[-1] > 0, "the flood stopped arriving"
        assert max(counts) <= MAX_FRAMES_PER_PUMP
        assert not connection.closed


# ---- without a browser ---------------------------------------------------------------------


class _Driver:
    def __init__(self, capabilities: Any) -> None:
        self._capabilities = capabilities

    @property
    def capabilities(self) -> Any:
        if isinstance(self._capabilities, Exception):
            raise self._capabilities
        return self._capabilities


@pytest.mark.parametrize(("capabilities", "endpoint"), [
    ({"se:cdp": "ws://grid:4444/session/1/se/cdp"}, "ws://grid:4444/session/1/se/cdp"),
    ({"se:cdp": "wss://grid/session/1/se/cdp"}, "wss://grid/session/1/se/cdp"),
    # On Grid the debugger address names a port on the node: never this machine's.
    ({"se:cdp": "ws://grid:4444/session/1/se/cdp",
      "goog:chromeOptions": {"debuggerAddress": "localhost:9222"}}, "ws://grid:4444/session/1/se/cdp"),
    ({"se:cdp": "http://grid:4444/"}, None),
    ({"se:cdp": 7}, None),
    ({"goog:chromeOptions": {"debuggerAddress": "10.0.0.7:9222"}}, None),
    ({"goog:chromeOptions": {"debuggerAddress": 9222}}, None),
    ({"goog:chromeOptions": "nonsense"}, None),
    ({}, None),
    ("nonsense", None),
    (RuntimeError("no session"), None),
])
def test_the_endpoint_is_grid_s_or_a_local_browser_s(capabilities: Any, endpoint: str | None) -> None:
    assert browser_endpoint(_Driver(capabilities)) == endpoint


@pytest.mark.parametrize(("version", "endpoint"), [
    ({"webSocketDebuggerUrl": "ws://localhost:1/devtools/browser/x"}, "ws://localhost:1/devtools/browser/x"),
    ({"webSocketDebuggerUrl": "http://elsewhere/"}, None),
    ({"Browser": "Chrome"}, None),
    ([1, 2], None),
    ("not json", None),
])
def test_a_local_endpoint_comes_from_json_version(version: Any, endpoint: str | None) -> None:
    body = version if isinstance(version, str) else json.dumps(version)
    with Site({"/json/version": body}) as server:
        driver = _Driver({"goog:chromeOptions": {"debuggerAddress": f"127.0.0.1:{server.port}"}})
        assert browser_endpoint(driver) == endpoint


def test_no_endpoint_when_the_local_port_is_closed() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    driver = _Driver({"goog:chromeOptions": {"debuggerAddress": f"127.0.0.1:{port}"}})
    assert browser_endpoint(driver, timeout=1) is None


def test_an_unreachable_endpoint_is_connection_lost() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ConnectionLost, match="cannot reach"):
        Connection(f"ws://127.0.0.1:{port}/devtools/browser/x", connect_timeout=1)


@pytest.mark.parametrize(("result", "match"), [
    ("nope", "without a result"),
    ({"exceptionDetails": {"text": "Uncaught", "exception": {}}}, "Uncaught"),
    ({"exceptionDetails": {"exception": {"description": "x" * 5000}}}, "script failed"),
    ({"exceptionDetails": "odd"}, "script failed"),
])
def test_a_failed_evaluation_is_a_cdp_error(result: Any, match: str) -> None:
    with pytest.raises(CdpError, match=match) as caught:
        evaluation_value(result)
    assert len(str(caught.value)) < 400


def test_an_evaluation_without_a_value_reads_as_none() -> None:
    assert evaluation_value({"result": {"type": "undefined"}}) is None
    assert evaluation_value({"result": "odd"}) is None
    assert evaluation_value({"result": {"type": "object", "value": {"a": [1]}}}) == {"a": [1]}
