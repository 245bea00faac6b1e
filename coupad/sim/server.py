"""The simulated Coupa tenant, its identity provider and its file storage: aiohttp apps.

The tenant serves sign-in, PO and requisition pages, attachment downloads and the admin API
under ``/_sim/``; the identity provider runs on another port (another origin) for SSO mode;
the file-storage origin (:mod:`coupad.sim.storage`) serves redirected downloads from another
host. All live on one event loop; everything is served from memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from coupad.sim import content, pages
from coupad.sim.catalogue import (
    DECOY_FILES,
    REQUISITION_MODES,
    Attachment,
    Catalogue,
    ErrorPage,
    Latency,
    PageStyle,
    PurchaseOrder,
    Requisition,
    examples,
    is_number,
    slices,
)
from coupad.sim.scenario import ScenarioError, parse_trouble
from coupad.sim.sessions import (
    HOME,
    IDP_COOKIE,
    SESSION_COOKIE,
    Sessions,
    SignInMode,
    safe_return_to,
)
from coupad.sim.storage import Storage, storage_host
from coupad.sim.trouble import Trouble, TroubleMaker, Verdict

log = logging.getLogger("coupad.sim")
idp_log = logging.getLogger("coupad.sim.idp")
storage_log = logging.getLogger("coupad.sim.storage")

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'
SHUTDOWN_TIMEOUT = 2.0  # downloads still running at stop are cut after this


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Everything the simulator needs; built by testing.sim_server or the CLI."""

    catalogue: Catalogue = dataclasses.field(default_factory=Catalogue)
    latency: Latency = dataclasses.field(default_factory=Latency)
    trouble: Trouble = dataclasses.field(default_factory=Trouble)
    sign_in: SignInMode = SignInMode.FORM
    session_lifetime: float | None = None
    render_delay: float | None = None  # overrides latency.render_delay when set
    username: str = "buyer@example.com"
    password: str = "coupa-sim"
    seed: int = 0


class Simulator:
    """The tenant and identity-provider applications over one shared state."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.catalogue = config.catalogue
        self.sessions = Sessions(config.session_lifetime)
        self.idp_sessions = Sessions(config.session_lifetime)
        self.trouble = TroubleMaker(config.trouble, seed=config.seed)
        self.paths: Counter[str] = Counter()
        self.downloads: Counter[str] = Counter()
        self.base_url = ""
        self.idp_url = ""
        self.storage = Storage(self.catalogue.attachment, self._send)
        self._sso_codes: set[str] = set()
        self._stopping: asyncio.Event | None = None
        self._runners: list[web.AppRunner] = []

    @property
    def storage_url(self) -> str:
        return self.storage.url

    # ---- lifecycle -------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, idp_port: int = 0, storage_port: int = 0
    ) -> None:
        """Bind the applications; ``base_url``, ``idp_url`` and ``storage_url`` carry the
        real ports."""
        self._stopping = asyncio.Event()
        tenant = await self._serve(self.tenant_app(), host, port, log)
        idp = await self._serve(self.idp_app(), host, idp_port, idp_log)
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{tenant}"
        self.idp_url = f"http://{shown}:{idp}"
        # Another host name for the same machine, so that the tenant's cookies stay behind.
        storage_name = storage_host(host)
        bind = "127.0.0.1" if storage_name == "127.0.0.1" else host
        also = "::1" if bind == "127.0.0.1" else None  # "localhost" may resolve to ::1 first
        stored = await self._serve(self.storage.app(), bind, storage_port, storage_log, also)
        self.storage.url = f"http://{storage_name}:{stored}"

    async def _serve(
        self,
        app: web.Application,
        host: str,
        port: int,
        logger: logging.Logger,
        also: str | None = None,
    ) -> int:
        runner = web.AppRunner(
            app,
            access_log=logger,
            access_log_format=ACCESS_LOG_FORMAT,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            handle_signals=False,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=256)
        await site.start()
        self._runners.append(runner)
        bound = int(runner.addresses[0][1])
        if also is not None:
            try:
                await web.TCPSite(runner, also, bound, backlog=256).start()
            except OSError:
                pass  # no IPv6 loopback here; the first address serves alone
        return bound

    async def stop(self) -> None:
        """Release hanging requests, stop listening and close every connection."""
        if self._stopping is not None:
            self._stopping.set()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def _hang(self) -> web.Response:
        assert self._stopping is not None
        await self._stopping.wait()
        return self._server_error(503)

    # ---- applications ----------------------------------------------------------------

    def tenant_app(self) -> web.Application:
        app = web.Application(middlewares=[self._count_and_trouble])
        app.router.add_get("/", self.root)
        app.router.add_get("/sessions/new", self.sign_in_page)
        app.router.add_post("/sessions", self.sign_in_submit)
        app.router.add_get("/sso/callback", self.sso_callback)
        app.router.add_get(HOME, self.home)
        app.router.add_get("/order_headers/{digits}", self.po_page)
        app.router.add_get("/order_headers/{digits}/attachments.json", self.po_attachments)
        app.router.add_get("/order_headers/{digits}/print.pdf", self.decoy_pdf)
        app.router.add_get("/order_headers/{digits}/export.csv", self.decoy_csv)
        for name in DECOY_FILES.values():
            app.router.add_get(f"/order_headers/{{owner}}/{name}", self.decoy_file)
            app.router.add_get(f"/requisition_headers/{{owner}}/{name}", self.decoy_file)
        app.router.add_get("/requisition_headers/{req_id}/print.pdf", self.decoy_pdf)
        app.router.add_get("/requisition_headers/{req_id}/export.csv", self.decoy_csv)
        app.router.add_get("/requisition_headers/{req_id}", self.requisition_page)
        app.router.add_get(
            "/requisition_headers/{req_id}/attachments.json", self.requisition_attachments
        )
        app.router.add_get("/attachment_file/{att_id}/download", self.download)
        app.router.add_get("/attachments/{att_id}/download", self.download)
        app.router.add_get("/_sim/health", self.admin_health)
        app.router.add_get("/_sim/truth/{digits}", self.admin_truth)
        app.router.add_get("/_sim/counters", self.admin_counters)
        app.router.add_post("/_sim/counters/reset", self.admin_reset_counters)
        app.router.add_get("/_sim/storage-requests", self.admin_storage_requests)
        app.router.add_post("/_sim/expire-sessions", self.admin_expire_sessions)
        app.router.add_post("/_sim/sessions", self.admin_new_session)
        app.router.add_get("/_sim/trouble", self.admin_get_trouble)
        app.router.add_post("/_sim/trouble", self.admin_set_trouble)
        app.router.add_get("/_sim/examples", self.admin_examples)
        return app

    def idp_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/sso/authorize", self.idp_authorize)
        app.router.add_post("/sso/login", self.idp_login)
        app.router.add_get("/_sim/health", self.admin_health)
        return app

    @web.middleware
    async def _count_and_trouble(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_sim/"):
            return await handler(request)
        self.paths[path] += 1
        if not path.startswith(("/sessions", "/sso/")):
            verdict = self.trouble.for_request(path, time.time())
            if verdict is not Verdict.OK:
                return await self._trouble_response(verdict)
        response: web.StreamResponse = await handler(request)
        return response

    async def _trouble_response(self, verdict: Verdict) -> web.Response:
        if verdict is Verdict.HANG:
            return await self._hang()
        if verdict is Verdict.THROTTLE_429:
            return web.Response(
                status=429,
                text=pages.throttled(),
                content_type="text/html",
                headers={"Retry-After": "1"},
            )
        if verdict is Verdict.THROTTLE_PAGE:
            return _html(pages.throttled())
        return self._server_error(int(verdict.value))

    @staticmethod
    def _server_error(status: int) -> web.Response:
        headers = {"Retry-After": "1"} if status == 503 else {}
        return web.Response(
            status=status,
            text=pages.server_error(status),
            content_type="text/html",
            headers=headers,
        )

    # ---- sign-in ---------------------------------------------------------------------

    def _require_session(self, request: web.Request) -> None:
        if not self.sessions.valid(request.cookies.get(SESSION_COOKIE)):
            raise web.HTTPFound("/sessions/new?" + urlencode({"return_to": request.path_qs}))

    def _signed_in(self, target: str) -> web.Response:
        response = _redirect(safe_return_to(target))
        response.set_cookie(
            SESSION_COOKIE, self.sessions.create(), path="/", httponly=True, samesite="Lax"
        )
        return response

    async def root(self, request: web.Request) -> web.Response:
        return _redirect(HOME)

    # The sign-in pages cost the tenant's server time like any other page: a browser that
    # signs in for every PO (the one-shot way) pays it two or three times per PO.

    async def sign_in_page(self, request: web.Request) -> web.Response:
        return_to = safe_return_to(request.query.get("return_to"))
        await self._page_delay()
        if self.config.sign_in is SignInMode.SSO:
            query = urlencode({"redirect_uri": f"{self.base_url}/sso/callback", "state": return_to})
            return _redirect(f"{self.idp_url}/sso/authorize?{query}")
        return _html(pages.sign_in(return_to))

    async def sign_in_submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        return_to = safe_return_to(str(form.get("return_to", "")))
        await self._page_delay()
        if self.config.sign_in is SignInMode.FORM and (
            form.get("user[login]") == self.config.username
            and form.get("user[password]") == self.config.password
        ):
            return self._signed_in(return_to)
        return _html(pages.sign_in(return_to, error=pages.SIGN_IN_FAILED))

    async def sso_callback(self, request: web.Request) -> web.Response:
        code = request.query.get("code", "")
        await self._page_delay()
        if code not in self._sso_codes:
            return _redirect("/sessions/new")
        self._sso_codes.discard(code)
        return self._signed_in(request.query.get("state", HOME))

    async def idp_authorize(self, request: web.Request) -> web.Response:
        redirect_uri = request.query.get("redirect_uri", "")
        state = request.query.get("state", "")
        if redirect_uri != f"{self.base_url}/sso/callback":
            return web.Response(status=400, text="unknown redirect_uri")
        if self.idp_sessions.valid(request.cookies.get(IDP_COOKIE)):
            return self._back_to_tenant(redirect_uri, state)
        return _html(pages.idp_sign_in(redirect_uri, state))

    async def idp_login(self, request: web.Request) -> web.Response:
        form = await request.post()
        redirect_uri = str(form.get("redirect_uri", ""))
        state = str(form.get("state", ""))
        if redirect_uri != f"{self.base_url}/sso/callback":
            return web.Response(status=400, text="unknown redirect_uri")
        if (
            form.get("username") != self.config.username
            or form.get("password") != self.config.password
        ):
            return _html(pages.idp_sign_in(redirect_uri, state, error=pages.IDP_FAILED))
        response = self._back_to_tenant(redirect_uri, state)
        response.set_cookie(
            IDP_COOKIE, self.idp_sessions.create(), path="/", httponly=True, samesite="Lax"
        )
        return response

    def _back_to_tenant(self, redirect_uri: str, state: str) -> web.Response:
        code = secrets.token_urlsafe(16)
        self._sso_codes.add(code)
        return _redirect(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")

    # ---- pages -----------------------------------------------------------------------

    async def _page_delay(self, po: PurchaseOrder | None = None) -> None:
        delay = self.config.latency.page_delay
        if po is not None and po.trouble.page_delay is not None:
            delay = po.trouble.page_delay
        delay += self.trouble.page_delay(time.time())
        if delay > 0:
            await asyncio.sleep(delay)

    async def home(self, request: web.Request) -> web.Response:
        self._require_session(request)
        await self._page_delay()
        return _html(pages.home(self.config.username))

    def _po(self, request: web.Request) -> PurchaseOrder | None:
        digits = request.match_info["digits"]
        return self.catalogue.po(digits) if is_number(digits) else None

    async def po_page(self, request: web.Request) -> web.StreamResponse:
        self._require_session(request)
        po = self._po(request)
        if po is None:
            await self._page_delay()
            return _html(pages.error(_NOT_FOUND))
        verdict = self.trouble.for_visit(f"po:{po.digits}", po.trouble)
        if verdict is not Verdict.OK:
            return await self._trouble_response(verdict)
        await self._page_delay(po)
        if po.error is not None:
            return _html(pages.error(po.error))
        return _html(pages.purchase_order(po, self._render_delay(po)))

    async def _attachment_list(
        self, attachments: tuple[Attachment, ...], delay: float
    ) -> web.Response:
        if delay > 0:
            await asyncio.sleep(delay)
        data = [
            {"name": a.name, "size": a.size, "shape": a.shape.value, "url": a.path}
            for a in attachments
        ]
        return web.json_response({"attachments": data})

    def _render_delay(self, page: PurchaseOrder | Requisition | None = None) -> float:
        if page is not None and page.render_delay is not None:
            return page.render_delay
        if self.config.render_delay is not None:
            return self.config.render_delay
        return self.config.latency.render_delay

    async def _slice(
        self,
        request: web.Request,
        attachments: tuple[Attachment, ...],
        style: PageStyle,
        render_delay: float,
    ) -> web.Response:
        """Slice ``?part=`` of the list (the whole list of a page that does not grow), once
        it is due: slices after the first are asked for when the one before is shown."""
        offsets = style.offsets(render_delay)
        part = request.query.get("part", "0")
        if not is_number(part) or int(part) >= len(offsets):
            raise web.HTTPNotFound(text="no such part")
        n = int(part)
        delay = offsets[n] - (offsets[n - 1] if n else 0.0)
        return await self._attachment_list(slices(attachments, len(offsets))[n], delay)

    async def po_attachments(self, request: web.Request) -> web.Response:
        self._require_session(request)
        po = self._po(request)
        if po is None or po.error is not None:
            return await self._attachment_list((), 0.0)
        return await self._slice(request, po.attachments, po.page, self._render_delay(po))

    async def decoy_pdf(self, request: web.Request) -> web.Response:
        self._require_session(request)
        owner = request.match_info.get("digits") or request.match_info["req_id"]
        body = content.content(f"print-{owner}", 4096, pdf=True)
        return web.Response(
            body=body,
            content_type="application/pdf",
            headers={"Content-Disposition": 'inline; filename="order.pdf"'},
        )

    async def decoy_csv(self, request: web.Request) -> web.Response:
        self._require_session(request)
        return web.Response(
            text="line,item,qty\n1,Item,1\n",
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="order_lines.csv"'},
        )

    async def decoy_file(self, request: web.Request) -> web.Response:
        """A download that is not an attachment: "Download all", an Excel export, terms."""
        self._require_session(request)
        name = request.path.rsplit("/", 1)[1]
        body = content.content(f"decoy-{request.match_info['owner']}-{name}", 2048)
        return web.Response(
            body=body,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    def _requisition_id(self, request: web.Request) -> str | None:
        req_id = request.match_info["req_id"]
        return req_id if is_number(req_id) else None

    async def requisition_page(self, request: web.Request) -> web.Response:
        self._require_session(request)
        req_id = self._requisition_id(request)
        await self._page_delay()
        if req_id is None:
            return _html(pages.error(_NOT_FOUND))
        req = self.catalogue.requisition(req_id)
        return _html(pages.requisition(req, self._render_delay(req)))

    async def requisition_attachments(self, request: web.Request) -> web.Response:
        self._require_session(request)
        req_id = self._requisition_id(request)
        if req_id is None:
            return await self._attachment_list((), 0.0)
        req = self.catalogue.requisition(req_id)
        return await self._slice(request, req.attachments, req.page, self._render_delay(req))

    # ---- downloads -------------------------------------------------------------------

    async def download(self, request: web.Request) -> web.StreamResponse:
        self._require_session(request)
        att = self.catalogue.attachment(request.match_info["att_id"])
        if att is None:
            raise web.HTTPNotFound(text="no such attachment")
        if att.broken is not None:
            # A permanent problem: the same answer every time, never the bytes.
            return web.Response(
                status=att.broken.status,
                text=pages.download_refused(att.broken.status),
                content_type="text/html",
            )
        if att.redirect:
            return _redirect(self.storage.signed_url(att.id))
        return await self._send(request, att)

    def _bandwidth(self, att: Attachment) -> int:
        """Bytes/s for this file: its own, else its PO's trouble, else the preset's."""
        if att.bandwidth:
            return att.bandwidth
        owner = att.id.rpartition("-")[0]
        if is_number(owner):
            po_bandwidth = self.catalogue.po(owner).trouble.bandwidth
            if po_bandwidth:
                return po_bandwidth
        return self.config.latency.bandwidth

    async def _send(self, request: web.Request, att: Attachment) -> web.StreamResponse:
        """Stream the attachment's bytes, paced to its bandwidth; with ``no_length`` the body
        has no Content-Length and ends when the server closes the connection."""
        bandwidth = self._bandwidth(att)
        headers = {"Content-Disposition": att.content_disposition()}
        response = _CloseDelimited(headers=headers) if att.no_length else web.StreamResponse(
            headers=headers
        )
        response.content_type = att.content_type
        if att.no_length:
            response.force_close()
        else:
            response.content_length = att.size
        await response.prepare(request)
        if request.method != "GET":
            return response
        self.downloads[att.id] += 1
        chunk = content.CHUNK if not bandwidth else max(1024, min(content.CHUNK, bandwidth // 20))
        started = time.monotonic()
        sent = 0
        assert self._stopping is not None
        try:
            for piece in att.chunks(chunk):
                if self._stopping.is_set():
                    break
                await response.write(piece)
                sent += len(piece)
                if bandwidth:
                    # Pace against the start time, so that sleep overshoot does not accumulate.
                    ahead = started + sent / bandwidth - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            await response.write_eof()
        except ConnectionResetError:
            log.info("download of %s cut by the client after %d bytes", att.id, sent)
        return response

    # ---- admin -----------------------------------------------------------------------

    async def admin_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def admin_truth(self, request: web.Request) -> web.Response:
        digits = request.match_info["digits"]
        if not is_number(digits):
            raise web.HTTPBadRequest(text="digits expected")
        mode = request.query.get("requisition_attachments", "when_po_has_none")
        if mode not in REQUISITION_MODES:
            raise web.HTTPBadRequest(
                text=f"requisition_attachments: expected one of {', '.join(REQUISITION_MODES)}"
            )
        return web.json_response(self.catalogue.truth(digits, self.base_url, mode))

    async def admin_counters(self, request: web.Request) -> web.Response:
        return web.json_response({"paths": dict(self.paths), "attachments": dict(self.downloads)})

    async def admin_reset_counters(self, request: web.Request) -> web.Response:
        self.paths.clear()
        self.downloads.clear()
        self.storage.reset()
        return web.json_response({"ok": True})

    async def admin_storage_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"url": self.storage.url, "requests": self.storage.requests()})

    async def admin_expire_sessions(self, request: web.Request) -> web.Response:
        self.sessions.clear()
        self.idp_sessions.clear()
        return web.json_response({"ok": True})

    async def admin_new_session(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": SESSION_COOKIE, "value": self.sessions.create(), "path": "/"}
        )

    async def admin_get_trouble(self, request: web.Request) -> web.Response:
        return web.json_response(dataclasses.asdict(self.trouble.trouble))

    async def admin_set_trouble(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="a JSON object expected") from None
        try:
            trouble = parse_trouble(data, "trouble")
        except ScenarioError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        self.trouble.set(trouble)
        log.info("trouble set: %s", trouble)
        return web.json_response({"ok": True})

    async def admin_examples(self, request: web.Request) -> web.Response:
        return web.json_response(examples())


# What an address that cannot be a PO or requisition shows.
_NOT_FOUND = ErrorPage.NOT_FOUND


class _CloseDelimited(web.StreamResponse):
    """A response without Content-Length and without chunking: HTTP/1.0-style, the body
    ends when the connection closes (RFC 9112 section 6.3, last rule). aiohttp turns length
    checks off this way for WebSockets only, so the class attribute is set here."""

    _length_check = False


def _redirect(location: str) -> web.Response:
    # A plain response rather than a raised HTTPFound, so that cookies can be set on it.
    return web.Response(status=302, headers={"Location": location})


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")
