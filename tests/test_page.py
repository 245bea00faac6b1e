"""Page snapshots and their classification: pure unit tests, then the JavaScript in Chromium."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from coupad.browser import Browser, BrowserSpec
from coupad.page import (
    CLICK_TARGET_JS,
    HOOK_JS,
    SNAPSHOT_JS,
    Attachment,
    HookState,
    PageKind,
    Snapshot,
    classify,
    idle_wait,
    is_idle,
)
from util import wait_until

BASE = "https://acme.coupahost.com"
PO_PATH = "/order_headers/15262984"


def snap(**kw: Any) -> Snapshot:
    """A settled, full snapshot of the PO page, with fields overridden."""
    values: dict[str, Any] = dict(
        url=BASE + PO_PATH,
        ready_state="complete",
        status=200,
        title="PO 15262984",
        login_form=False,
        hook=HookState(inflight=0, timers=0, quiet_s=1.0, late=False),
        full=True,
        text="Purchase Order 15262984 " * 200,
        text_length=4800,
        headings=("Purchase Order #15262984",),
        attachments=(),
        supplier="ACME Corp",
        requisitions=(),
    )
    values.update(kw)
    return Snapshot(**values)


def kind(s: Snapshot, *, settled: bool = True) -> PageKind:
    return classify(s, BASE, PO_PATH, settled=settled).kind


# ---- classification of hostile and ordinary snapshots --------------------------------------

def test_po_page_with_supplier_is_content() -> None:
    assert kind(snap()) is PageKind.CONTENT


def test_po_page_without_anything_but_long_text_is_content() -> None:
    """A PO with no attachments and no supplier field is content, not an error."""
    assert kind(snap(supplier=None)) is PageKind.CONTENT


@pytest.mark.parametrize(
    "url",
    [
        BASE + "/sessions/new?return_to=%2Forder_headers%2F15262984",
        BASE + "/sessions",
        BASE + "/login",
        BASE + "/SESSIONS/NEW",
        "https://acme.okta.com/app/coupa/sso/saml",
        "https://login.microsoftonline.com/common/oauth2/authorize",
        "http://acme.coupahost.com" + PO_PATH,  # same host, other scheme: another origin
        "https://acme.coupahost.com:8443" + PO_PATH,  # other port: another origin
    ],
)
def test_sign_in_page_or_identity_provider_is_signed_out(url: str) -> None:
    assert kind(snap(url=url)) is PageKind.SIGNED_OUT
    assert kind(snap(url=url, full=False), settled=False) is PageKind.SIGNED_OUT


def test_login_form_on_the_po_url_is_signed_out() -> None:
    s = snap(login_form=True, supplier=None, text="Sign in", text_length=7, headings=())
    assert kind(s) is PageKind.SIGNED_OUT
    assert kind(s, settled=False) is PageKind.SIGNED_OUT


def test_sessions_lookalike_paths_are_not_sign_in() -> None:
    assert kind(snap(url=BASE + PO_PATH + "?q=/sessions/new")) is PageKind.CONTENT


def test_http_429_is_throttled_even_before_settling() -> None:
    assert kind(snap(status=429, full=False), settled=False) is PageKind.THROTTLED


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_is_server_error(status: int) -> None:
    assert kind(snap(status=status, full=False), settled=False) is PageKind.SERVER_ERROR


def test_throttling_page_served_with_200() -> None:
    s = snap(
        supplier=None, title="Too Many Requests", headings=("Too Many Requests",),
        text="You have made too many requests, please slow down.", text_length=52,
    )
    assert kind(s) is PageKind.THROTTLED


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Oops! We couldn't find what you wanted.", PageKind.NOT_FOUND),
        ("Oops! We couldn\u2019t find what you wanted.", PageKind.NOT_FOUND),
        ("The page you were looking for doesn't exist.", PageKind.NOT_FOUND),
        ("Hoppla! Wir konnten nicht finden, was Sie gesucht haben.", PageKind.NOT_FOUND),
        ("Oups ! La page est introuvable.", PageKind.NOT_FOUND),
        ("¡Vaya! No pudimos encontrar lo que buscaba.", PageKind.NOT_FOUND),
        ("Oeps! De pagina is niet gevonden.", PageKind.NOT_FOUND),
        ("You are not authorized to view this page.", PageKind.ACCESS_DENIED),
        ("Access denied", PageKind.ACCESS_DENIED),
        ("Sie sind nicht berechtigt, diese Seite anzuzeigen.", PageKind.ACCESS_DENIED),
        ("Accès refusé", PageKind.ACCESS_DENIED),
        ("ACCES REFUSE", PageKind.ACCESS_DENIED),
        ("Acceso denegado", PageKind.ACCESS_DENIED),
        ("U heeft geen toegang tot deze pagina.", PageKind.ACCESS_DENIED),
    ],
)
def test_error_pages_served_with_200(text: str, expected: PageKind) -> None:
    s = snap(supplier=None, title="Coupa", headings=(), text=text, text_length=len(text))
    assert kind(s) is expected
    verdict = classify(s, BASE, PO_PATH, settled=True)
    assert text.strip()[:20].lower() in verdict.reason.lower()


def test_error_wording_waits_for_the_page_to_settle() -> None:
    s = snap(supplier=None, text="Access denied", text_length=13)
    assert kind(s, settled=False) is PageKind.LOADING


def test_banner_saying_not_found_on_a_valid_po_is_not_an_error() -> None:
    """Regression: an informational banner on a valid PO must not be read as an error page."""
    banner = "This order was revised: the previous revision was not found in the archive."
    s = snap(text=banner, text_length=len(banner), headings=(banner,),
             attachments=(Attachment("quote.pdf", BASE + "/attachment_file/1", None),))
    assert kind(s) is PageKind.CONTENT
    s = snap(text=banner, text_length=len(banner), headings=(banner,))  # supplier only
    assert kind(s) is PageKind.CONTENT


def test_long_page_mentioning_not_found_in_body_is_content() -> None:
    text = ("Line item description: part not found in catalog. " * 60)
    assert kind(snap(supplier=None, text=text, text_length=len(text))) is PageKind.CONTENT


def test_error_phrase_in_the_title_of_a_long_page_is_an_error() -> None:
    s = snap(supplier=None, title="Access Denied | Coupa", text="menu " * 1000, text_length=5000)
    assert kind(s) is PageKind.ACCESS_DENIED


def test_another_page_on_the_same_origin_is_unexpected_not_empty() -> None:
    """Regression: a redirect to the dashboard must never read as a PO without attachments."""
    assert kind(snap(url=BASE + "/user/home", supplier=None)) is PageKind.UNEXPECTED
    assert kind(snap(url=BASE + "/order_headers/152629841")) is PageKind.UNEXPECTED
    assert kind(snap(url=BASE + PO_PATH + "/edit")) is PageKind.CONTENT


def test_http_404_and_403_statuses() -> None:
    assert kind(snap(status=404, supplier=None)) is PageKind.NOT_FOUND
    assert kind(snap(status=403, supplier=None)) is PageKind.ACCESS_DENIED


def test_blank_documents_are_still_loading() -> None:
    assert kind(snap(url="about:blank"), settled=True) is PageKind.LOADING
    assert kind(snap(url="data:text/html,x"), settled=True) is PageKind.LOADING


def test_network_error_page() -> None:
    s = snap(url="chrome-error://chromewebdata/", status=0)
    assert kind(s) is PageKind.SERVER_ERROR


HORIZON = 4.0


def hook(**kw: Any) -> HookState:
    values: dict[str, Any] = dict(inflight=0, timers=0, quiet_s=0.2, late=False)
    values.update(kw)
    return HookState(**values)


def test_a_page_is_idle_only_when_nothing_it_started_can_still_change_it() -> None:
    assert is_idle(snap(hook=hook()), HORIZON)
    assert not is_idle(snap(hook=hook(), ready_state="interactive"), HORIZON)
    assert not is_idle(snap(hook=hook(inflight=1, quiet_s=5)), HORIZON)
    assert not is_idle(snap(hook=hook(quiet_s=0.05)), HORIZON)
    assert not is_idle(snap(hook=hook(channels=1, quiet_s=5)), HORIZON)
    # A timer due within the horizon may still render the list; one due later may not.
    assert not is_idle(snap(hook=hook(timers=1, next_due_s=2.5, quiet_s=5)), HORIZON)
    assert is_idle(snap(hook=hook(timers=1, next_due_s=60.0)), HORIZON)
    # A hook installed after the page's scripts ran cannot tell what they started.
    assert not is_idle(snap(hook=hook(late=True, quiet_s=30)), HORIZON)
    assert not is_idle(snap(hook=None), HORIZON)


def test_the_wait_until_idle_is_predicted_from_the_next_timer_and_the_quiet_time() -> None:
    assert idle_wait(snap(hook=hook(quiet_s=0.05)), HORIZON) == pytest.approx(0.10)
    assert idle_wait(snap(hook=hook(quiet_s=3.0)), HORIZON) == 0.0
    assert idle_wait(snap(hook=hook(timers=1, next_due_s=2.5)), HORIZON) == pytest.approx(2.65)
    assert idle_wait(snap(hook=hook(timers=1, next_due_s=9.0, quiet_s=0.05)), HORIZON) == (
        pytest.approx(0.10))
    # Requests or channels open, not complete, no hook or a late one: it cannot be told.
    assert idle_wait(snap(hook=hook(inflight=1)), HORIZON) is None
    assert idle_wait(snap(hook=hook(channels=2)), HORIZON) is None
    assert idle_wait(snap(hook=hook(), ready_state="interactive"), HORIZON) is None
    assert idle_wait(snap(hook=hook(late=True)), HORIZON) is None
    assert idle_wait(snap(hook=None), HORIZON) is None
    # Waiting the predicted time on an unchanged page makes it idle.
    waiting = snap(hook=hook(quiet_s=0.05))
    later = snap(hook=hook(quiet_s=0.05 + (idle_wait(waiting, HORIZON) or 0)))
    assert is_idle(later, HORIZON)


def test_hook_report_from_hostile_values() -> None:
    s = Snapshot.from_js({"url": "https://a", "hook": {"inflight": "1", "next": float("inf"),
                          "quiet": -5, "failed": [], "failure": 7, "channels": None},
                          "list": {"count": "x", "sig": 12}})
    assert s.hook == HookState(inflight=0, timers=0, quiet_s=0.0, late=False, channels=0,
                               next_due_s=None, failed=0, failure="")
    assert s.list_count == 0 and s.list_sig == ""


@pytest.mark.parametrize(
    "raw",
    [
        None, 42, "x", [], {"url": 5, "hook": "no", "attachments": "all"},
        {"url": "https://a", "attachments": [None, 1, {"name": 5, "url": 7, "index": True}]},
        {"url": "https://a", "status": float("nan"), "supplier": ["x"],
         "requisitions": ["12", "../1", 3, "١٢"], "headings": [1, "h"]},
    ],
)
def test_snapshot_from_hostile_script_results(raw: Any) -> None:
    s = Snapshot.from_js(raw)
    assert isinstance(s.url, str) and isinstance(s.status, int)
    assert all(isinstance(a.name, str) for a in s.attachments)
    assert all(a.url is not None or a.index is not None for a in s.attachments)
    assert all(r.isdigit() and r.isascii() for r in s.requisitions)
    kind(s)  # classification never fails on garbage


def test_attachment_keys() -> None:
    assert Attachment("a.pdf", "https://x/attachment_file/1", None).key("po") == (
        "po:https://x/attachment_file/1"
    )
    assert Attachment("a.pdf", None, 3).key("requisition") == "requisition:click:3:a.pdf"


# ---- the JavaScript in real Chromium -------------------------------------------------------

PO_PAGE = """<!doctype html><html><head><title>PO 15262984</title></head><body>
<div id="toolbar" style="position:fixed;top:0;left:0;right:0;height:120px;z-index:99">Tools</div>
<h1>Purchase Order #15262984</h1>
<div class="banner">This order was revised. Previous revision not found.</div>
<dl><dt>Status</dt><dd>Issued</dd><dt>Supplier:</dt><dd> ACME  Corp </dd></dl>
<a href="/order_headers/15262984/print.pdf">Export to PDF</a>
<a href="/order_headers/15262984/export.csv" download>Download</a>
<a href="/requisition_headers/4711">Requisition 4711</a>
<a href="https://elsewhere.example/requisition_headers/9">foreign</a>
<div id="att"></div>
<script>
setTimeout(function () {
  var att = document.getElementById('att');
  att.innerHTML =
    '<a href="/attachment_file/11/quote.pdf">quote.pdf</a>' +
    '<a href="/attachment_file/11/quote.pdf"><img alt=""></a>' +
    '<span role="button" tabindex="0" aria-label="terms &amp; conditions.docx file attachment"' +
    ' title="terms &amp; conditions.docx">terms</span>' +
    '<a href="/attachments/12" aria-label="both.xlsx File Attachment" title="both.xlsx">both</a>' +
    '<span role="button" aria-label="no title.msg file attachment">x</span>' +
    '<a href="#" aria-label="hash.txt file attachment">hash</a>';
}, RENDER_MS);
</script></body></html>"""

SUPPLIER_SHAPES = {
    "dt": "<dl><dt>Supplier</dt><dd>Dee Tee GmbH</dd></dl>",
    "th": "<table><tr><th>Lieferant</th><td>Tabelle AG</td></tr></table>",
    "label": '<label for="s">Fournisseur</label><input id="s" value="Étiquette SA">',
    "aria": '<span id="lbl">Proveedor</span><div aria-labelledby="lbl">Aria SL</div>',
    "inline": "<p><b>Leverancier:</b> Inline BV</p>",
}


class LocalSite:
    """A tiny web server in a thread, serving fixed HTML pages by path."""

    def __init__(self, pages: dict[str, str], delays: dict[str, float],
                 statuses: dict[str, int] | None = None) -> None:
        self.pages = pages
        self.delays = delays
        self.statuses = statuses or {}
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delays.get(request.path, 0))
        if request.path in self.statuses:
            return web.Response(status=self.statuses[request.path], text="trouble")
        if request.path not in self.pages:
            return web.Response(status=404, text="no")
        return web.Response(text=self.pages[request.path], content_type="text/html")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self.loop.run_forever()

    def __enter__(self) -> LocalSite:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def site() -> Iterator[LocalSite]:
    pages = {
        PO_PATH: PO_PAGE.replace("RENDER_MS", "600"),
        "/static": "<html><head><title>S</title></head><body><p>plain</p></body></html>",
        "/polling": "<html><body><p id=c>0</p><script>(function tick(){"
        "document.getElementById('c').textContent = Date.now();"
        "setTimeout(tick, 2000);})();</script></body></html>",
        "/xhr": "<html><body><div id=o></div><script>var x = new XMLHttpRequest();"
        "x.open('GET', '/slow'); x.onload = function () {"
        "document.getElementById('o').textContent = 'loaded'; }; x.send();</script></body></html>",
        "/slow": "ok",
        "/ticker": "<html><body><p id=c>0</p><script>setInterval(function () {"
        "document.getElementById('c').textContent = Date.now(); }, 500);</script></body></html>",
        "/frames": "<html><body><p id=c>0</p><script>(function spin() {"
        "requestAnimationFrame(spin); })();</script></body></html>",
        "/stream": "<html><body><script>window.addEventListener('load', function () {"
        "window.es = new EventSource('/slow'); });</script></body></html>",
        "/late-script": "<html><body><script>window.addEventListener('load', function () {"
        "setTimeout(function () { var s = document.createElement('script'); s.src = '/slow-js';"
        "document.body.appendChild(s); }, 50); });</script></body></html>",
        "/slow-js": "window.lateScript = true;",
        "/fails": "<html><body><script>fetch('/broken-list'); fetch('/missing');"
        "fetch('http://localhost:9/elsewhere').catch(function () {});"
        "var x = new XMLHttpRequest(); x.open('GET', '/broken-list'); x.send();"
        "</script></body></html>",
        "/notfound": "<html><head><title>Coupa</title></head><body><h1>Oops! We couldn't find "
        "what you wanted.</h1><p>Go back</p></body></html>",
    }
    for shape, html in SUPPLIER_SHAPES.items():
        pages[f"/supplier/{shape}"] = f"<html><body><h1>PO</h1>{html}</body></html>"
    with LocalSite(pages, {"/slow": 0.8, "/slow-js": 3.0}, {"/broken-list": 503}) as running:
        yield running


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("page-browser")
    browser = Browser.start(BrowserSpec(profile_dir=root / "profile", download_dir=root / "dl"))
    try:
        yield browser.driver
    finally:
        browser.quit()


def open_hooked(driver: Any, url: str) -> None:
    driver.switch_to.new_window("tab")
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOK_JS})
    driver.get(url)


def look(driver: Any, full: bool = False) -> Snapshot:
    return Snapshot.from_js(driver.execute_script(SNAPSHOT_JS, full))


def close_tab(driver: Any) -> None:
    driver.close()
    driver.switch_to.window(driver.window_handles[0])


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_snapshot_waits_for_rendered_attachments_and_reads_the_page(driver: Any, site: LocalSite) -> None:
    open_hooked(driver, site.base + PO_PATH)
    try:
        first = wait_until(lambda: (s := look(driver)).ready_state == "complete" and s, 10)
        assert first.hook is not None and not first.hook.late
        assert first.status == 200
        assert not is_idle(first, HORIZON), "idle before the render timer fired"
        assert first.hook is not None and first.hook.next_due_s is not None
        assert first.hook.next_due_s <= 0.6
        settled = wait_until(lambda: (s := look(driver)) and is_idle(s, HORIZON) and s, 10)
        assert settled.hook is not None and settled.hook.timers == 0
        assert settled.list_count == 5
        full = look(driver, full=True)
        names = [(a.name, a.url is not None) for a in full.attachments]
        assert names == [
            ("terms & conditions.docx", False),
            ("both.xlsx", True),
            ("no title.msg", False),
            ("hash.txt", False),
            ("quote.pdf", True),
        ]
        both = full.attachments[1]
        assert both.url == site.base + "/attachments/12" and both.index is None
        assert [a.index for a in full.attachments if a.url is None] == [0, 2, 3]
        assert full.supplier == "ACME Corp"
        assert full.requisitions == ("4711",)
        assert classify(full, site.base, PO_PATH, settled=True).kind is PageKind.CONTENT
        target = driver.execute_script(CLICK_TARGET_JS, 2, "no title.msg")
        assert target.get_attribute("aria-label") == "no title.msg file attachment"
        moved = driver.execute_script(CLICK_TARGET_JS, 0, "hash.txt")
        assert moved.text == "hash"
        assert driver.execute_script(CLICK_TARGET_JS, 0, "absent.pdf") is None
    finally:
        close_tab(driver)


@pytest.mark.browser
@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape", sorted(SUPPLIER_SHAPES))
def test_supplier_found_by_its_label(driver: Any, site: LocalSite, shape: str) -> None:
    expected = {"dt": "Dee Tee GmbH", "th": "Tabelle AG", "label": "Étiquette SA",
                "aria": "Aria SL", "inline": "Inline BV"}[shape]
    open_hooked(driver, f"{site.base}/supplier/{shape}")
    try:
        wait_until(lambda: is_idle(look(driver), HORIZON), 10)
        assert look(driver, full=True).supplier == expected
    finally:
        close_tab(driver)


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_static_page_is_idle_at_once_and_a_polling_page_never(driver: Any, site: LocalSite) -> None:
    open_hooked(driver, site.base + "/static")
    try:
        wait_until(lambda: is_idle(look(driver), HORIZON), 10)
    finally:
        close_tab(driver)
    open_hooked(driver, site.base + "/polling")
    try:
        wait_until(lambda: look(driver).ready_state == "complete", 10)
        seen = [look(driver) for _ in range(5)]
        assert not any(is_idle(s, HORIZON) for s in seen), "a 2 s timer chain never ends"
        assert all(s.hook is not None and s.hook.next_due_s is not None for s in seen)
    finally:
        close_tab(driver)


@pytest.mark.browser
@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["/ticker", "/frames", "/stream", "/late-script"])
def test_what_keeps_a_page_from_being_idle(driver: Any, site: LocalSite, path: str) -> None:
    """An interval, an animation loop, an open event stream and a script inserted after load
    (answered slowly) each keep the page from counting as idle."""
    open_hooked(driver, site.base + path)
    try:
        first = wait_until(lambda: (s := look(driver)).ready_state == "complete" and s, 10)
        assert first.hook is not None
        time.sleep(0.3)  # longer than the quiet time: only the pending work can hold it
        busy = look(driver)
        assert not is_idle(busy, HORIZON), busy.hook
    finally:
        close_tab(driver)


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_a_failed_request_of_the_page_itself_is_reported(driver: Any, site: LocalSite) -> None:
    open_hooked(driver, site.base + "/fails")
    try:
        s = wait_until(lambda: (s := look(driver)) and s.hook and s.hook.failed >= 2 and s, 10)
        assert s.hook is not None
        assert s.hook.failure == "HTTP 503 /broken-list", s.hook.failure
        # A 404 of its own site and a failure of another site are not counted.
        time.sleep(0.3)
        assert look(driver).hook.failed == 2  # type: ignore[union-attr]
    finally:
        close_tab(driver)


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_xhr_in_flight_holds_the_page(driver: Any, site: LocalSite) -> None:
    open_hooked(driver, site.base + "/xhr")
    try:
        wait_until(lambda: look(driver).ready_state == "complete", 10)
        busy = look(driver)
        assert busy.hook is not None and busy.hook.inflight == 1
        assert not is_idle(busy, HORIZON)
        wait_until(lambda: is_idle(look(driver), HORIZON), 10)
        full = look(driver, full=True)
        assert "loaded" in full.text
    finally:
        close_tab(driver)


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_hook_installed_late_when_missing(driver: Any, site: LocalSite) -> None:
    driver.switch_to.new_window("tab")
    try:
        driver.get(site.base + "/notfound")
        wait_until(lambda: look(driver).ready_state == "complete", 10)
        s = look(driver)
        assert s.hook is not None and s.hook.late
        assert not is_idle(s, HORIZON), "a late hook is blind to what the page started"
        full = look(driver, full=True)
        verdict = classify(full, site.base, "/notfound", settled=True)
        assert verdict.kind is PageKind.NOT_FOUND
        assert "couldn't find what you wanted" in verdict.reason
    finally:
        close_tab(driver)

