import asyncio
import gzip
import hashlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from coupad.download import (
    is_sign_in_download,
    DirectFetcher,
    DownloadError,
    DownloadProblem,
    Fetched,
)
from coupad.errors import SignInRequired
from coupad.folders import PoFolder
from coupad.names import safe_name
from coupad.ponumber import PoNumber

PAYLOAD = bytes(range(256)) * 1200  # 307,200 bytes, the same every run
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """An aiohttp app on 127.0.0.1, run by its own event loop in a thread, recording requests."""

    def __init__(
        self,
        routes: Callable[["Server"], list[web.RouteDef]],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (path with query, Cookie header)
        self.headers: list[dict[str, str]] = []  # every request's headers, names lower-cased
        self.ssl_context = ssl_context
        self.loop = asyncio.new_event_loop()
        self.stopping: asyncio.Event | None = None
        self.release: asyncio.Event | None = None
        self.port = 0

        @web.middleware
        async def record(request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]):
            self.seen.append((request.path_qs, request.headers.get("Cookie")))
            self.headers.append({name.lower(): value for name, value in request.headers.items()})
            return await handler(request)

        self.app = web.Application(middlewares=[record])
        self.app.add_routes(routes(self))

    @property
    def base(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def clear(self) -> None:
        self.seen.clear()
        self.headers.clear()

    def __enter__(self) -> "Server":
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.stopping = asyncio.Event()
            self.release = asyncio.Event()
            runner = web.AppRunner(self.app, shutdown_timeout=0.2, handle_signals=False)
            self.loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
            self.loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(runner.cleanup())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10), "test server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        def stop() -> None:
            assert self.stopping is not None
            self.stopping.set()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)

    def set_release(self) -> None:
        assert self.release is not None
        self.loop.call_soon_threadsafe(self.release.set)


class RawServer:
    """A bare socket server on 127.0.0.1 that answers each request with scripted bytes.

    ``answers`` maps a path (without query) to the bytes to send, framing and all; the
    connection then closes, with a reset instead of a FIN for a path in ``resets``. Requests
    are recorded as (path with query, headers with lower-cased names).
    """

    def __init__(self, answers: dict[str, bytes], resets: frozenset[str] = frozenset()) -> None:
        self.answers = answers
        self.resets = resets
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "RawServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
        self.listener.close()
        self.thread.join(10)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            lines = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            headers = dict((k.strip().lower(), v.strip()) for k, _, v in
                           (line.partition(":") for line in lines[1:]))
            self.seen.append((target, headers))
            path = target.split("?", 1)[0]
            conn.sendall(self.answers.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
            if path in self.resets:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                conn.shutdown(socket.SHUT_WR)


async def raw_answer(request: web.Request, server: Server, data: bytes, close: bool) -> web.Response:
    """Write bytes straight to the socket, bypassing aiohttp's own framing (hostile servers)."""
    assert request.transport is not None and server.stopping is not None
    request.transport.write(data)
    if close:
        request.transport.close()
    await server.stopping.wait()  # never answer through aiohttp: it would add bytes
    return web.Response()


def head(length: int | None, extra: str = "") -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/pdf"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + extra + "\r\n\r\n").encode()


def coupa_routes(server: Server) -> list[web.RouteDef]:
    def file(data: bytes, disposition: str, **headers: str) -> web.Response:
        return web.Response(
            body=data,
            headers={"Content-Disposition": disposition, "Content-Type": "application/pdf", **headers},
        )

    async def normal(request: web.Request) -> web.Response:
        return file(PAYLOAD, 'attachment; filename="Quote 2024.pdf"')

    async def rfc5987(request: web.Request) -> web.Response:
        return file(
            b"euro",
            "attachment; filename=\"fallback.pdf\"; filename*=UTF-8''%E2%82%AC%20Angebot%20M%C3%BCller.pdf",
        )

    async def hostile_name(request: web.Request) -> web.Response:
        disposition = request.query.get(
            "cd", "attachment; filename*=UTF-8''..%2F..%2F..%2Fetc%2Fpasswd%00" + "x" * 300
        )
        return file(b"evil", disposition)

    async def gzipped(request: web.Request) -> web.Response:
        body = gzip.compress(PAYLOAD)
        return web.Response(
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/pdf",
                     "Content-Length": str(len(body))},
        )

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(PAYLOAD), 50_000):
            await response.write(PAYLOAD[start : start + 50_000])
        await response.write_eof()
        return response

    async def shorter(request: web.Request) -> web.Response:
        return await raw_answer(request, server, head(1000) + b"s" * 400, close=True)

    async def longer(request: web.Request) -> web.Response:
        return await raw_answer(request, server, head(1000) + b"l" * 1500, close=True)

    async def exact_but_kept_open(request: web.Request) -> web.Response:
        return await raw_answer(request, server, head(1000) + b"k" * 1000, close=False)

    async def broken_chunks(request: web.Request) -> web.Response:
        data = head(None, "\r\nTransfer-Encoding: chunked") + b"3e8\r\n" + b"c" * 300
        return await raw_answer(request, server, data, close=True)

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.content_length = 10_000_000
        await response.prepare(request)
        for _ in range(10_000):
            await response.write(b"z" * 1000)
            await asyncio.sleep(0.02)  # a trickle: each read succeeds, the whole never ends
        return response

    async def stalled(request: web.Request) -> web.Response:
        assert server.stopping is not None
        return await raw_answer(request, server, head(1000), close=False)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/attachments/loop")

    async def no_location(request: web.Request) -> web.Response:
        return web.Response(status=302)

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {"Retry-After": request.query["retry"]} if "retry" in request.query else {}
        return web.Response(status=code, text=f"status {code}", headers=headers)

    async def sign_in_page(request: web.Request) -> web.Response:
        return web.Response(
            text='<html><form action="/sessions"><input id="user_email">'
            '<input type="password" id="user_password"></form></html>',
            content_type="text/html",
        )

    async def html_attachment(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><input type=password></html>",
            content_type="text/html",
            headers={"Content-Disposition": 'attachment; filename="form.html"'},
        )

    async def sessions_new(request: web.Request) -> web.Response:
        return await sign_in_page(request)

    return [
        web.get("/attachments/normal", normal),
        web.get("/attachments/rfc5987", rfc5987),
        web.get("/attachments/hostile-name", hostile_name),
        web.get("/attachments/gzip", gzipped),
        web.get("/attachments/chunked", chunked),
        web.get("/attachments/shorter", shorter),
        web.get("/attachments/longer", longer),
        web.get("/attachments/kept-open", exact_but_kept_open),
        web.get("/attachments/broken-chunks", broken_chunks),
        web.get("/attachments/slow", slow),
        web.get("/attachments/stalled", stalled),
        web.get("/attachments/redirect", redirect),
        web.get("/attachments/loop", loop),
        web.get("/attachments/no-location", no_location),
        web.get("/attachments/status/{code}", status),
        web.get("/attachments/sign-in-page", sign_in_page),
        web.get("/attachments/form.html", html_attachment),
        web.get("/sessions/new", sessions_new),
        web.get("/private/normal", normal),
        web.get("/attachments/login-guide.pdf", normal),
    ]


def elsewhere_routes(server: Server) -> list[web.RouteDef]:
    async def anything(request: web.Request) -> web.Response:
        return web.Response(body=b"stolen", headers={"Content-Disposition": "attachment; filename=x"})

    return [web.get("/{tail:.*}", anything)]


@pytest.fixture(scope="module")
def coupa():
    with Server(coupa_routes) as server:
        yield server


@pytest.fixture(scope="module")
def elsewhere():
    with Server(elsewhere_routes) as server:
        yield server


def cookies_for(base: str) -> list[dict]:
    return [
        {"name": "_coupa_session", "value": "s3cr3t", "domain": "127.0.0.1", "path": "/",
         "secure": False, "httpOnly": True},
        {"name": "scoped", "value": "p", "domain": "127.0.0.1", "path": "/private"},
        {"name": "https_only", "value": "h", "domain": "127.0.0.1", "path": "/", "secure": True},
        {"name": "expired", "value": "e", "domain": "127.0.0.1", "path": "/", "expiry": 1},
        {"name": "idp", "value": "okta", "domain": ".okta.example", "path": "/"},
        {"name": "evil", "value": "x\r\nInjected: 1", "domain": "127.0.0.1", "path": "/"},
    ]


@pytest.fixture
def fetcher(coupa):
    with DirectFetcher(coupa.base, cookies_for(coupa.base), timeout=10) as f:
        yield f


def no_files(folder: Path) -> bool:
    return not folder.exists() or list(folder.iterdir()) == []


def test_normal_file_streams_with_its_sha256(fetcher, coupa, tmp_path):
    coupa.seen.clear()
    got = fetcher.fetch("/attachments/normal", tmp_path / "in")
    assert isinstance(got, Fetched)
    assert got.path.read_bytes() == PAYLOAD
    assert got.size == len(PAYLOAD)
    assert got.sha256 == SHA
    assert got.filename == "Quote 2024.pdf"
    assert got.content_type == "application/pdf"
    assert got.url == f"{coupa.base}/attachments/normal"
    assert [p.name for p in (tmp_path / "in").iterdir()] == [got.path.name]
    assert coupa.seen == [("/attachments/normal", "_coupa_session=s3cr3t")]


def test_only_base_cookies_are_held(fetcher):
    assert sorted(fetcher.cookie_names) == ["_coupa_session", "https_only", "scoped"]


def test_path_scoped_cookie_goes_only_to_its_path(fetcher, coupa, tmp_path):
    coupa.seen.clear()
    fetcher.fetch(f"{coupa.base}/private/normal", tmp_path)
    assert coupa.seen == [("/private/normal", "scoped=p; _coupa_session=s3cr3t")]


def test_rfc5987_name(fetcher, tmp_path):
    got = fetcher.fetch("/attachments/rfc5987", tmp_path)
    assert got.filename == "€ Angebot Müller.pdf"
    assert got.path.read_bytes() == b"euro"


def test_hostile_name_is_only_data(fetcher, tmp_path):
    dest = tmp_path / "stage"
    got = fetcher.fetch("/attachments/hostile-name", dest)
    assert got.path.parent == dest
    assert got.filename is not None and got.filename.startswith("../../../etc/passwd")
    assert (dest / safe_name(got.filename)).resolve().parent == dest.resolve()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [got.path.name]


@pytest.mark.parametrize(
    "disposition",
    [
        "attachment; filename*=UTF-8''..%2F..%2F..%2Fetc%2Fpasswd%00",
        'attachment; filename="/etc/passwd"',
        'attachment; filename="..\\\\..\\\\boot.ini"',
        'attachment; filename="C:\\\\Windows\\\\win.ini"',
        "attachment; filename*=UTF-8''%00%01%02",
        "attachment; filename*=UTF-8''" + "%F0%9F%98%80" * 80 + ".pdf",
        'attachment; filename="' + "n" * 300 + '.pdf"',
        'attachment; filename=".."',
        'attachment; filename="manifest.json"',
        "attachment; filename*=UTF-8''con.txt",
    ],
)
def test_hostile_names_end_inside_the_po_folder(fetcher, tmp_path, disposition):
    from urllib.parse import quote

    root = tmp_path / "downloads"
    folder = PoFolder.open(root, PoNumber("15262984"))
    got = fetcher.fetch(f"/attachments/hostile-name?cd={quote(disposition)}", folder.staging_dir("a"))
    entry = folder.add_file(got.path, got.filename or "attachment", got.url, "po", "k", got.sha256)
    final = folder.finalize("COMPLETED")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted([entry.name, "manifest.json"])
    assert all(p.parent == final for p in files)
    assert (final / entry.name).read_bytes() == b"evil"
    assert len(entry.name.encode()) <= 180


def test_gzip_encoded_body_is_saved_decoded(fetcher, tmp_path):
    got = fetcher.fetch("/attachments/gzip", tmp_path)
    assert got.sha256 == SHA and got.size == len(PAYLOAD)


def test_chunked_body_without_length(fetcher, tmp_path):
    got = fetcher.fetch("/attachments/chunked", tmp_path)
    assert got.sha256 == SHA


def chunked(data: bytes, sizes: tuple[int, ...]) -> bytes:
    """``data`` in HTTP/1.1 chunks of the given sizes (the last repeated), with an extension
    on the first chunk and a trailer after the last."""
    out, start, i = b"", 0, 0
    while start < len(data):
        size = sizes[min(i, len(sizes) - 1)]
        piece = data[start : start + size]
        ext = b";name=value" if i == 0 else b""
        out += f"{len(piece):x}".encode() + ext + b"\r\n" + piece + b"\r\n"
        start, i = start + size, i + 1
    return out + b"0\r\nX-Checksum: none\r\n\r\n"


RAW_HEAD = b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=raw.pdf\r\n"


@pytest.fixture(scope="module")
def raw():
    with RawServer({
        "/close-delimited": b"HTTP/1.1 200 OK\r\n" + RAW_HEAD + b"\r\n" + PAYLOAD,
        "/close-delimited-1.0": b"HTTP/1.0 200 OK\r\n" + RAW_HEAD + b"\r\n" + PAYLOAD,
        "/chunked": b"HTTP/1.1 200 OK\r\n" + RAW_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                    + chunked(PAYLOAD, (1, 7, 4093, 65536)),
        "/reset": b"HTTP/1.1 200 OK\r\n" + RAW_HEAD + b"\r\n" + PAYLOAD[:1000],
    }, resets=frozenset({"/reset"})) as server:
        yield server


@pytest.mark.parametrize("path", ["/close-delimited", "/close-delimited-1.0", "/chunked"])
def test_a_body_without_content_length_is_read_to_its_end(raw, tmp_path, path):
    with DirectFetcher(raw.base, [], timeout=10) as fetcher:
        got = fetcher.fetch(path, tmp_path)
    assert got.size == len(PAYLOAD) and got.sha256 == SHA
    assert got.path.read_bytes() == PAYLOAD and got.filename == "raw.pdf"


def test_a_close_delimited_body_ended_by_a_reset_is_retryable_and_leaves_nothing(raw, tmp_path):
    with DirectFetcher(raw.base, [], timeout=10) as fetcher:
        with pytest.raises(DownloadError) as caught:
            fetcher.fetch("/reset", tmp_path / "in")
    assert caught.value.problem is DownloadProblem.NETWORK and caught.value.retryable
    assert no_files(tmp_path / "in")


def test_body_shorter_than_declared_is_retryable_and_leaves_nothing(fetcher, tmp_path):
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch("/attachments/shorter", tmp_path / "in")
    error = caught.value
    assert error.retryable and error.problem is DownloadProblem.LENGTH_MISMATCH
    assert "1000" in str(error) and "400" in str(error)
    assert no_files(tmp_path / "in")


def test_body_longer_than_declared_is_retryable_and_leaves_nothing(fetcher, tmp_path):
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch("/attachments/longer", tmp_path / "in")
    error = caught.value
    assert error.retryable and error.problem is DownloadProblem.LENGTH_MISMATCH
    assert "1000" in str(error) and "more" in str(error)
    assert no_files(tmp_path / "in")


@pytest.mark.timeout(20)
def test_exact_body_on_a_connection_kept_open_still_completes(fetcher, tmp_path):
    started = time.monotonic()
    got = fetcher.fetch("/attachments/kept-open", tmp_path)
    assert got.path.read_bytes() == b"k" * 1000
    assert time.monotonic() - started < 5


def test_broken_chunked_body_is_retryable(fetcher, tmp_path):
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch("/attachments/broken-chunks", tmp_path / "in")
    assert caught.value.retryable and caught.value.problem is DownloadProblem.NETWORK
    assert no_files(tmp_path / "in")


@pytest.mark.timeout(20)
def test_slow_body_past_the_deadline_is_a_retryable_timeout(fetcher, tmp_path):
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch("/attachments/slow", tmp_path / "in", deadline=time.monotonic() + 0.7)
    elapsed = time.monotonic() - started
    assert caught.value.retryable and caught.value.problem is DownloadProblem.TIMEOUT
    assert "timed out" in str(caught.value)
    assert 0.6 < elapsed < 3
    assert no_files(tmp_path / "in")


@pytest.mark.timeout(20)
def test_stalled_body_times_out(coupa, tmp_path):
    with DirectFetcher(coupa.base, [], timeout=0.5) as fetcher:
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            fetcher.fetch("/attachments/stalled", tmp_path / "in")
    assert caught.value.problem is DownloadProblem.TIMEOUT and caught.value.retryable
    assert time.monotonic() - started < 3
    assert no_files(tmp_path / "in")


def test_a_deadline_already_past_makes_no_request(fetcher, coupa, tmp_path):
    coupa.seen.clear()
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch("/attachments/normal", tmp_path, deadline=time.monotonic() - 1)
    assert caught.value.problem is DownloadProblem.TIMEOUT
    assert coupa.seen == []


def test_same_origin_redirect_is_followed_with_cookies(fetcher, coupa, tmp_path):
    coupa.seen.clear()
    got = fetcher.fetch("/attachments/redirect?to=/attachments/normal", tmp_path)
    assert got.sha256 == SHA
    assert got.url == f"{coupa.base}/attachments/redirect?to=/attachments/normal", "as listed"
    assert got.served_from == f"{coupa.base}/attachments/normal"
    assert [cookie for _, cookie in coupa.seen] == ["_coupa_session=s3cr3t"] * 2


def test_same_site_file_with_login_in_its_name_is_a_file(fetcher, tmp_path):
    got = fetcher.fetch("/attachments/redirect?to=/attachments/login-guide.pdf", tmp_path)
    assert got.sha256 == SHA


@pytest.mark.parametrize(
    "target",
    ["/sessions/new", "/login", "/sessions", "/users/sign_in?return_to=/attachments/1", "https://idp.example/oauth2/authorize?client=coupa",
     "https://corp.okta.example/app/coupa/sso/saml"],
)
def test_redirect_to_sign_in_means_sign_in_required(fetcher, elsewhere, tmp_path, target):
    elsewhere.seen.clear()
    with pytest.raises(SignInRequired) as caught:
        fetcher.fetch(f"/attachments/redirect?to={target}", tmp_path / "in")
    assert "sign in" in str(caught.value)
    assert "client=coupa" not in str(caught.value), "no query strings in messages"
    assert elsewhere.seen == []
    assert no_files(tmp_path / "in")


def test_an_html_sign_in_page_instead_of_the_file(fetcher, tmp_path):
    with pytest.raises(SignInRequired):
        fetcher.fetch("/attachments/sign-in-page", tmp_path / "in")
    assert no_files(tmp_path / "in")


def test_an_html_file_served_as_an_attachment_is_a_file(fetcher, tmp_path):
    got = fetcher.fetch("/attachments/form.html", tmp_path)
    assert got.filename == "form.html" and got.content_type == "text/html"


def test_redirect_loop_stops(coupa, tmp_path):
    with DirectFetcher(coupa.base, [], max_redirects=3) as fetcher:
        coupa.seen.clear()
        with pytest.raises(DownloadError) as caught:
            fetcher.fetch("/attachments/loop", tmp_path)
    assert caught.value.problem is DownloadProblem.TOO_MANY_REDIRECTS
    assert caught.value.permanent and not caught.value.retryable
    assert len(coupa.seen) == 4


def test_redirect_without_location(fetcher, tmp_path):
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch("/attachments/no-location", tmp_path)
    assert caught.value.problem is DownloadProblem.BAD_REDIRECT and caught.value.permanent
    assert "a redirect without a target" in str(caught.value)


@pytest.mark.parametrize(
    "path, problem, retryable, retry_after",
    [
        ("/attachments/status/429?retry=7", DownloadProblem.THROTTLED, True, 7.0),
        ("/attachments/status/429", DownloadProblem.THROTTLED, True, None),
        ("/attachments/status/503?retry=Wed,%2021%20Oct%202015%2007:28:00%20GMT",
         DownloadProblem.SERVER_ERROR,
         True, 0.0),
        ("/attachments/status/500", DownloadProblem.SERVER_ERROR, True, None),
        ("/attachments/status/502?retry=soon", DownloadProblem.SERVER_ERROR, True, None),
        ("/attachments/status/404", DownloadProblem.NOT_FOUND, False, None),
        ("/attachments/status/410", DownloadProblem.NOT_FOUND, False, None),
        ("/attachments/status/403", DownloadProblem.ACCESS_DENIED, False, None),
        ("/attachments/status/401", DownloadProblem.ACCESS_DENIED, False, None),
        ("/attachments/status/418", DownloadProblem.HTTP_ERROR, False, None),
        ("/attachments/status/400", DownloadProblem.HTTP_ERROR, False, None),
        ("/attachments/status/408?retry=3", DownloadProblem.TIMEOUT, True, 3.0),
    ],
)
def test_statuses(fetcher, tmp_path, path, problem, retryable, retry_after):
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch(path, tmp_path / "in")
    error = caught.value
    assert error.problem is problem
    assert error.retryable is retryable and error.permanent is not retryable
    assert error.retry_after == retry_after
    assert error.status == int(path.split("/")[3][:3])
    assert no_files(tmp_path / "in")


def test_access_denied_message(fetcher, tmp_path):
    with pytest.raises(DownloadError, match="access denied"):
        fetcher.fetch("/attachments/status/403", tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        "{other}/attachments/normal",
        "https://127.0.0.1:{port}/attachments/normal",
        "http://localhost:{port}/attachments/normal",
        "http://127.0.0.1:{port}@{other_host}/attachments/normal",
        "http://{other_host}\\@127.0.0.1:{port}/attachments/normal",
        "http://127.0.0.1:{port}\r\nX: y/attachments/normal",
        "ftp://127.0.0.1:{port}/attachments/normal",
        "javascript:alert(1)",
        "//{other_host}/attachments/normal",
        "file:///etc/passwd",
    ],
)
def test_urls_off_the_coupa_origin_are_refused_before_any_request(
    fetcher, coupa, elsewhere, tmp_path, url
):
    coupa.seen.clear()
    elsewhere.seen.clear()
    url = url.format(
        other=elsewhere.base, port=coupa.port, other_host=f"127.0.0.1:{elsewhere.port}"
    )
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch(url, tmp_path / "in")
    assert caught.value.problem is DownloadProblem.OFF_ORIGIN
    assert not caught.value.retryable
    assert coupa.seen == [] and elsewhere.seen == []
    assert no_files(tmp_path / "in")


def test_every_problem_is_either_retryable_or_permanent():
    retryable = {p for p in DownloadProblem if p.retryable}
    assert retryable == {
        DownloadProblem.STORE_REFUSED, DownloadProblem.THROTTLED, DownloadProblem.SERVER_ERROR,
        DownloadProblem.LENGTH_MISMATCH, DownloadProblem.TIMEOUT, DownloadProblem.NETWORK,
    }
    for problem in DownloadProblem:
        error = DownloadError("x", problem=problem)
        assert error.permanent is not error.retryable
        assert problem.name in (DownloadProblem.__doc__ or ""), "the table documents each problem"


def test_unreachable_server_is_retryable(tmp_path):
    with DirectFetcher("http://127.0.0.1:9", [], timeout=2) as fetcher:
        with pytest.raises(DownloadError) as caught:
            fetcher.fetch("/attachments/x", tmp_path)
    assert caught.value.retryable and caught.value.problem is DownloadProblem.NETWORK


def test_too_large_is_refused(coupa, tmp_path):
    with DirectFetcher(coupa.base, [], max_size=1000) as fetcher:
        with pytest.raises(DownloadError) as declared:
            fetcher.fetch("/attachments/normal", tmp_path / "in")
        with pytest.raises(DownloadError) as streamed:
            fetcher.fetch("/attachments/chunked", tmp_path / "in")
    assert declared.value.problem is streamed.value.problem is DownloadProblem.TOO_LARGE
    assert no_files(tmp_path / "in")


def test_update_cookies_replaces_them(fetcher, coupa, tmp_path):
    coupa.seen.clear()
    fetcher.update_cookies([{"name": "_coupa_session", "value": "fresh", "domain": "127.0.0.1"}])
    fetcher.fetch("/attachments/rfc5987", tmp_path)
    assert coupa.seen == [("/attachments/rfc5987", "_coupa_session=fresh")]


def test_many_fetches_at_once_from_threads(fetcher, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: fetcher.fetch("/attachments/normal", tmp_path / str(i)),
                                range(16)))
    assert all(r.sha256 == SHA for r in results)
    assert len({r.path for r in results}) == 16


# --- a browser download that is really a sign-in page --------------------------------------

SIGN_IN_PAGE = (b'<!DOCTYPE html><html lang="en"><head><title>Sign In - Coupa</title></head><body>'
                b'<form action="/sessions"><input id="user_email"><input id="user_password" '
                b'type="password"></form></body></html>')


@pytest.mark.parametrize(("content", "name", "sign_in"), [
    (SIGN_IN_PAGE, "Contract, final.docx", True),
    (b"\xef\xbb\xbf\n  <!-- idp -->\n<HTML><body><input type='password' name=pw></body></HTML>", "q.pdf", True),
    (b"<html>\n<input type=password>", None, True),
    # An .xls that is an HTML table (as web apps export them) is a real file.
    (b"<html><table><tr><td>1</td></tr></table></html>", "export.xls", False),
    # A web page that is itself the attachment, even one with a password field.
    (SIGN_IN_PAGE, "saved form.HTML", False),
    (SIGN_IN_PAGE, "page.htm ", False),
    # The words alone are not a page.
    (b"%PDF-1.7 ... user_password ... <html>", "manual.pdf", False),
    (b"Reset your password at <html> time", "notes.txt", False),
    (b"", "empty.pdf", False),
    (b"\x00\xff" * 40_000 + SIGN_IN_PAGE, "blob.bin", False),
])
def test_a_browser_download_that_is_a_sign_in_page_is_told_apart(
    tmp_path: Path, content: bytes, name: str | None, sign_in: bool
) -> None:
    path = tmp_path / "download"
    path.write_bytes(content)
    assert is_sign_in_download(path, name) is sign_in


def test_a_vanished_download_is_not_a_sign_in_page(tmp_path: Path) -> None:
    assert is_sign_in_download(tmp_path / "gone", "a.pdf") is False


@pytest.mark.timeout(60)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
def test_a_file_of_tens_of_mb_arrives_whole_with_its_sha256(tmp_path, declared):
    # coupa-domain.md, "Downloads": "Sizes range from a few KB to tens of MB."
    block = bytes(range(256)) * 4096  # 1 MiB
    blocks = 40
    digest = hashlib.sha256()
    for _ in range(blocks):
        digest.update(block)

    def routes(server: Server) -> list[web.RouteDef]:
        async def big(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={
                "Content-Type": "application/pdf",
                "Content-Disposition": 'attachment; filename="scan 40 MB.pdf"'})
            if declared:
                response.content_length = blocks * len(block)
            await response.prepare(request)
            for _ in range(blocks):
                await response.write(block)
            await response.write_eof()
            return response

        return [web.get("/attachments/big", big)]

    with Server(routes) as server:
        with DirectFetcher(server.base, [], timeout=30) as fetcher:
            got = fetcher.fetch("/attachments/big", tmp_path / "in")
    assert got.size == blocks * len(block) == got.path.stat().st_size
    assert got.sha256 == digest.hexdigest() and got.filename == "scan 40 MB.pdf"
