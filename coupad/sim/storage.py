"""The file-storage origin that redirected downloads come from, as cloud storage serves them.

An attachment with ``redirect = true`` is not served by the tenant: its download URL answers
302 to a time-limited signed URL here (``/blobs/<id>?expires=<epoch>&signature=<hmac>``).
The storage origin runs on another *host* than the tenant (``localhost`` beside the tenant's
``127.0.0.1``), because browsers keep cookies per host, not per port: a Coupa cookie must
not reach it, and the request log below shows whether a client sent one anyway. It serves
the same bytes with the same Content-Disposition as the tenant would, and only with a valid,
unexpired signature; anything else is 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from coupad.sim.catalogue import Attachment

SIGNED_URL_TTL = 300.0  # seconds a signed URL stays valid
MAX_LOGGED_REQUESTS = 10_000  # the request log keeps the newest this many

Lookup = Callable[[str], Attachment | None]
Sender = Callable[[web.Request, Attachment], Awaitable[web.StreamResponse]]


def storage_host(tenant_host: str) -> str:
    """The host name the storage origin is advertised under: never the tenant's own."""
    return "127.0.0.1" if tenant_host == "localhost" else "localhost"


class Storage:
    """Signs blob URLs for the tenant and serves them, logging who asked with what."""

    def __init__(self, lookup: Lookup, send: Sender) -> None:
        self._lookup = lookup
        self._send = send
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self.url = ""  # set once the app listens

    def signed_url(self, attachment_id: str, ttl: float = SIGNED_URL_TTL) -> str:
        """A URL for the blob that stops working ``ttl`` seconds from now."""
        expires = int(time.time() + ttl)
        query = urlencode({"expires": expires, "signature": self._sign(attachment_id, expires)})
        return f"{self.url}/blobs/{attachment_id}?{query}"

    def _sign(self, attachment_id: str, expires: int) -> str:
        message = f"{attachment_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def verify(self, attachment_id: str, expires: str, signature: str) -> bool:
        """Whether a URL's ``expires`` and ``signature`` are this storage's and still valid."""
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            return False
        if int(expires) < time.time():
            return False
        return hmac.compare_digest(self._sign(attachment_id, int(expires)), signature)

    def requests(self) -> list[dict[str, Any]]:
        """Every request so far: path, status and the Cookie, Authorization and Referer sent."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/blobs/{att_id}", self.blob)
        app.router.add_get("/_sim/health", self.health)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        status = 500
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if not request.path.startswith("/_sim/"):
                entry = {
                    "path": request.path,
                    "status": status,
                    "cookie": request.headers.get("Cookie"),
                    "authorization": request.headers.get("Authorization"),
                    "referer": request.headers.get("Referer"),
                }
                with self._lock:
                    self._requests.append(entry)
                    del self._requests[:-MAX_LOGGED_REQUESTS]

    async def blob(self, request: web.Request) -> web.StreamResponse:
        attachment_id = request.match_info["att_id"]
        expires = request.query.get("expires", "")
        signature = request.query.get("signature", "")
        if not self.verify(attachment_id, expires, signature):
            raise web.HTTPForbidden(
                text="<Error><Code>AccessDenied</Code>"
                "<Message>Request has expired or the signature does not match</Message></Error>",
                content_type="application/xml",
            )
        attachment = self._lookup(attachment_id)
        if attachment is None:
            raise web.HTTPNotFound(text="no such blob")
        return await self._send(request, attachment)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})
