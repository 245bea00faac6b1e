"""The engine against a hostile tenant: evil names, redirects away, lying lengths, expiry.

A small aiohttp "tenant" on 127.0.0.1 serves PO pages whose attachments misbehave; a second
server on localhost (another origin) records every request that reaches it. The engine runs
in profile mode (the tenant sets its session cookie on the PO page).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from coupad.engine import Engine, Outcome
from coupad.names import safe_name
from enginekit import config_for, engine_for, files_under, job, name_variants, run_all

pytestmark = [pytest.mark.browser]

GOOD = b"good bytes " * 300
STORED = b"bytes kept on the file store " * 40
SESSION = "s3cret-session-value"
EVIL_NAMES = {
    "dotdot": "../../etc/passwd",
    "absolute": "/etc/shadow",
    "nul": "report\x00.pdf.exe",
    "long": "L" * 300 + ".pdf",
    "reserved": "CON.txt",
    "backslash": "..\\..\\windows\\system.ini",
}


class Servers:
    """The hostile tenant and the other origin, in one event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.elsewhere_requests: list[dict[str, Any]] = []
        self.tenant_cookies: dict[str, str] = {}
        self.tenant_port = 0
        self.elsewhere_port = 0
        self._runners: list[web.AppRunner] = []
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.tenant_port}"

    @property
    def elsewhere(self) -> str:
        return f"http://localhost:{self.elsewhere_port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._stopping = asyncio.Event()
        self.tenant_port = self.loop.run_until_complete(self._serve(self._tenant(), "127.0.0.1"))
        self.elsewhere_port = self.loop.run_until_complete(self._serve(self._other(), "localhost"))
        self._ready.set()
        self.loop.run_forever()

    async def _serve(self, app: web.Application, host: str) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        self._runners.append(runner)
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def _other(self) -> web.Application:
        async def record(request: web.Request) -> web.Response:
            self.elsewhere_requests.append({"path": request.path, "cookies": dict(request.cookies)})
            return web.Response(body=STORED, headers={"Content-Disposition": 'attachment; filename="away.pdf"'})

        app = web.Application()
        app.router.add_get("/{tail:.*}", record)
        return app

    def _tenant(self) -> web.Application:
        servers = self

        def page(links: list[tuple[str, str]], buttons: list[tuple[str, str]]) -> str:
            parts = [f'<a href="{href}">{text}</a><br>' for href, text in links]
            for name, href in buttons:
                label = name.replace("&", "&amp;").replace('"', "&quot;")
                parts.append(
                    f'<span role="button" tabindex="0" aria-label="{label} file attachment" '
                    f'title="{label}" data-u="{quote(href)}">{label[:20]}</span><br>'
                )
            return (
                "<html><head><title>PO</title></head><body><h1>Purchase Order</h1>"
                "<dl><dt>Supplier</dt><dd>Hostile Inc</dd></dl>"
                + "".join(parts)
                + "<script>document.querySelectorAll('span[role=button]').forEach(function (s) {"
                "var u = decodeURIComponent(s.dataset.u); s.removeAttribute('data-u');"
                "s.addEventListener('click', function () { var a = document.createElement('a');"
                "a.href = u; document.body.appendChild(a); a.click(); a.remove(); }); });"
                "</script></body></html>"
            )

        pages = {
            "41000001": page(
                [("/attachment_file/ok", "good.pdf"),
                 ("/attachment_file/away", "away.pdf"),
                 ("/attachment_file/shorter", "shorter.pdf"),
                 ("/attachment_file/longer", "longer.pdf"),
                 (f"{self.elsewhere}/attachment_file/direct", "direct.pdf")],
                [],
            ),
            "41000002": page(
                [(f"/attachment_file/evil/{key}", "evil") for key in EVIL_NAMES],
                [(name, f"/click/{key}") for key, name in EVIL_NAMES.items()],
            ),
            "41000003": page(
                [("/attachment_file/ok", "good.pdf"), ("/attachment_file/expired", "expired.pdf")], []
            ),
        }

        async def po(request: web.Request) -> web.Response:
            html = pages.get(request.match_info["digits"])
            if html is None:
                return web.Response(text="<h1>Oops! We couldn't find what you wanted</h1>",
                                    content_type="text/html")
            response = web.Response(text=html, content_type="text/html")
            response.set_cookie("_coupa_session", SESSION, httponly=True, path="/")
            return response

        def attachment(body: bytes, filename_star: str) -> web.Response:
            return web.Response(body=body, headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename_star, safe='')}",
            })

        async def ok(request: web.Request) -> web.Response:
            servers.tenant_cookies.update(request.cookies)
            return attachment(GOOD, "good.pdf")

        async def away(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"{servers.elsewhere}/signed/away?expires=1&sig=abc")

        async def expired(request: web.Request) -> web.Response:
            raise web.HTTPFound("/sessions/new?return_to=%2Fattachment_file%2Fexpired")

        async def raw(request: web.Request, declared: int, sent: int) -> web.Response:
            assert request.transport is not None and servers._stopping is not None
            request.transport.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: {declared}\r\n"
                "Content-Disposition: attachment; filename=\"lying.pdf\"\r\n\r\n".encode()
                + b"x" * sent
            )
            request.transport.close()
            await servers._stopping.wait()  # answering through aiohttp would add bytes
            return web.Response()

        async def shorter(request: web.Request) -> web.Response:
            return await raw(request, 1000, 400)

        async def longer(request: web.Request) -> web.Response:
            return await raw(request, 1000, 1500)

        async def evil(request: web.Request) -> web.Response:
            key = request.match_info["key"]
            return attachment(key.encode() * 50, EVIL_NAMES[key])

        async def click(request: web.Request) -> web.Response:
            key = request.match_info["key"]
            return attachment(b"click-" + key.encode() * 40, EVIL_NAMES[key])

        async def sign_in(request: web.Request) -> web.Response:
            return web.Response(text="<form><input id=user_email><input id=user_password "
                                "type=password></form>", content_type="text/html")

        app = web.Application()
        app.router.add_get("/order_headers/{digits}", po)
        app.router.add_get("/attachment_file/ok", ok)
        app.router.add_get("/attachment_file/away", away)
        app.router.add_get("/attachment_file/expired", expired)
        app.router.add_get("/attachment_file/shorter", shorter)
        app.router.add_get("/attachment_file/longer", longer)
        app.router.add_get("/attachment_file/evil/{key}", evil)
        app.router.add_get("/click/{key}", click)
        app.router.add_get("/sessions/new", sign_in)
        return app

    def __enter__(self) -> Servers:
        self._thread.start()
        assert self._ready.wait(10), "test servers did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._stopping is not None
            self._stopping.set()
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


@pytest.fixture(scope="module")
def engine(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    root = tmp_path_factory.mktemp("hostile")
    config = config_for(root, servers.base, sign_in="profile")
    eng = engine_for(config, root, tabs=2)
    try:
        eng.start()
        yield eng
    finally:
        eng.close()


@pytest.mark.timeout(90)
def test_hostile_downloads_stay_in_the_po_folder_and_say_why(engine: Engine, servers: Servers) -> None:
    downloads = engine.config.paths.downloads
    result = run_all(engine, [job("41000001")])["41000001"]
    # Lengths that lie may be right next time; a listed URL on another site never will.
    assert result.outcome is Outcome.ERROR and result.outcome.retryable
    reason = result.reason
    assert "declared 1000 bytes but sent only 400" in reason
    assert "declared 1000 bytes but sent more" in reason
    assert "refusing to fetch from http://localhost" in reason
    assert (result.found, result.downloaded) == (5, 2)
    assert result.partial
    work = downloads / "PO41000001__WORK"
    assert result.folder == work
    assert sorted(p.name for p in work.iterdir()) == ["away.pdf", "good.pdf", "manifest.json"]
    assert hashlib.sha256((work / "good.pdf").read_bytes()).digest() == hashlib.sha256(GOOD).digest()
    assert (work / "away.pdf").read_bytes() == STORED
    manifest = json.loads((work / "manifest.json").read_text())
    away = next(f for f in manifest["files"] if f["name"] == "away.pdf")
    assert away["source_url"] == f"{servers.base}/attachment_file/away", "the URL it was listed under"
    # The session cookie went to the tenant; the storage redirect was followed without it, and
    # the listed URL on the other site was never requested.
    assert servers.tenant_cookies.get("_coupa_session") == SESSION
    assert servers.elsewhere_requests[-1:] == [{"path": "/signed/away", "cookies": {}}]
    assert all(p.parent == work for p in files_under(downloads))


@pytest.mark.timeout(90)
def test_evil_names_become_safe_names_inside_the_folder(engine: Engine, servers: Servers) -> None:
    downloads = engine.config.paths.downloads
    elsewhere_before = len(servers.elsewhere_requests)
    result = run_all(engine, [job("41000002")])["41000002"]
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert (result.found, result.downloaded) == (12, 12)
    folder = downloads / "PO41000002_COMPLETED"
    assert result.folder == folder
    on_disk = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    assert len(on_disk) == 12
    for name in on_disk:
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert name not in (".", "..") and len(name.encode()) <= 180
    # Header names arrive intact; the HTML parser turns a NUL in the page's title into U+FFFD.
    from_headers = {safe_name(n) for n in EVIL_NAMES.values()}
    from_page = {safe_name(n.replace("\x00", "\ufffd")) for n in EVIL_NAMES.values()}
    allowed = set().union(*(name_variants(n) for n in from_headers | from_page))
    assert from_headers <= set(on_disk) and from_page <= set(on_disk) | {
        n for n in allowed if n in on_disk
    }
    assert set(on_disk) <= allowed
    assert all(p.parent == folder for p in files_under(downloads) if "41000002" in str(p))
    assert not any("passwd" in str(p) or "shadow" in str(p)
                   for p in files_under(downloads.parent) if downloads not in p.parents)
    assert len(servers.elsewhere_requests) == elsewhere_before


@pytest.mark.timeout(90)
def test_attachment_redirecting_to_sign_in_means_signed_out(engine: Engine, servers: Servers) -> None:
    downloads = engine.config.paths.downloads
    result = run_all(engine, [job("41000003")])["41000003"]
    assert result.outcome is Outcome.SIGNED_OUT, result.reason
    assert "sign in" in result.reason
    assert [p.name for p in downloads.glob("PO41000003*")] == ["PO41000003__WORK"], (
        "no final folder while signed out"
    )
    # The file fetched before the expiry showed stays for the retry.
    work = downloads / "PO41000003__WORK"
    assert sorted(p.name for p in work.iterdir()) == ["good.pdf", "manifest.json"]
