"""What a Coupa page shows: one JavaScript snapshot per look, and its classification.

The engine looks at a tab through :data:`SNAPSHOT_JS` (one ``execute_script`` per look) and
decides with the pure function :func:`classify` what the page is: still loading, the sign-in
page or an identity provider, throttled, a server error, "not found", "access denied", an
unexpected page, or a PO (or requisition) page with content. Only what real Coupa pages have
is relied on (coupa-domain.md): attachment elements whose ``aria-label`` reads
``"<name> file attachment"``, links whose ``href`` contains ``attachment_file`` or
``/attachments/``, a supplier field found by its label, links to ``/requisition_headers/<id>``
and the wording of error pages.

Evidence: :data:`HOOK_JS` is installed in a tab before it navigates (CDP
``Page.addScriptToEvaluateOnNewDocument``), so it sees everything the page's own scripts start:
requests (fetch and its bodies, XMLHttpRequest, scripts and frames inserted after load),
timers of every length with the time each is due, intervals, animation frames and idle
callbacks, sockets, event streams and workers, messages, and DOM changes. Every look reports
what is pending and how long the page has been quiet. :func:`is_idle` says when nothing the
hook sees can change the page within a horizon; the engine uses it, and the attachment list's
signature that every look carries, to decide when a page has shown everything it will show
(the rule is in :mod:`coupad.engine`). When the hook is missing, the snapshot installs it
late and says so: such a page can never count as idle, since what its scripts started
earlier is invisible.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from coupad.urls import is_sign_in_page, origin

QUIET_S = 0.15  # seconds a page must have done nothing, with nothing pending, to be idle
SHORT_PAGE_CHARS = 2000  # an error page's text is short; a PO page's is long
TEXT_SAMPLE_CHARS = 4000
MAX_ATTACHMENTS = 1000
MAX_NAME_CHARS = 1000

_HOOK_BODY = r"""
(function (late) {
  if (window.top !== window || window.__coupadHook) { return; }
  var clock = Date.now.bind(Date);
  var slice = Array.prototype.slice;
  var h = {inflight: 0, last: clock(), late: late};
  try {
    Object.defineProperty(window, '__coupadHook', {value: h, enumerable: false});
  } catch (e) { return; }
  function touch() { h.last = clock(); }
  function opened() {
    h.inflight++;
    var open = true;
    return function () { if (open) { open = false; h.inflight--; touch(); } };
  }
  // Requests: fetch and the reading of its bodies, XMLHttpRequest. A request of the page's
  // own site that failed (network error, 429, 5xx) means the page may be missing a part.
  h.failed = 0;
  h.failure = '';
  function failed(target, status) {
    var u;
    try { u = new URL(String(target), location.href); } catch (e) { return; }
    if (u.origin !== location.origin) { return; }
    if (!h.failed) { h.failure = (status ? 'HTTP ' + status : 'network error') + ' ' + u.pathname; }
    h.failed++;
  }
  function counted(fn, fetching) {
    return function (input) {
      var end = opened(), p;
      try { p = fn.apply(this, arguments); } catch (e) { end(); throw e; }
      if (p && typeof p.then === 'function') {
        p.then(end, end);
        if (fetching) {
          var target = input && input.url ? input.url : input;
          p.then(function (r) {
            if (r && r.type !== 'opaqueredirect' && (r.status === 429 || r.status >= 500)) { failed(target, r.status); }
          }, function (e) {
            if (!e || e.name !== 'AbortError') { failed(target, 0); }
          });
        }
      } else { end(); }
      return p;
    };
  }
  if (window.fetch) { window.fetch = counted(window.fetch, true); }
  if (window.Response) {
    ['json', 'text', 'arrayBuffer', 'blob', 'formData'].forEach(function (m) {
      if (Response.prototype[m]) { Response.prototype[m] = counted(Response.prototype[m], false); }
    });
  }
  if (window.XMLHttpRequest) {
    var xopen = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.open = function (method, url) {
      this.__coupadUrl = url;
      return xopen.apply(this, arguments);
    };
    XMLHttpRequest.prototype.send = function () {
      var end = opened(), xhr = this, aborted = false;
      xhr.addEventListener('abort', function () { aborted = true; });
      xhr.addEventListener('loadend', function () {
        if (!aborted && (xhr.status === 0 || xhr.status === 429 || xhr.status >= 500)) {
          failed(xhr.__coupadUrl, xhr.status);
        }
        end();
      });
      try { return send.apply(this, arguments); } catch (e) { end(); throw e; }
    };
  }
  // Timers of every length, with the time each is due; intervals are due again after each run.
  var due = new Map(), shadow = new Map();
  var setT = window.setTimeout, clearT = window.clearTimeout;
  var setI = window.setInterval, clearI = window.clearInterval;
  function schedule(original, repeat, fn, delay, args) {
    var wait = Math.max(0, Number(delay) || 0), id;
    function ran() {
      if (repeat) { due.set(id, clock() + wait); } else { due.delete(id); }
      touch();
    }
    if (typeof fn === 'function') {
      id = original.call(window, function () { ran(); return fn.apply(this, args); }, wait);
    } else {
      id = original.apply(window, [fn, wait].concat(args));
      shadow.set(id, original.call(window, ran, wait));
    }
    due.set(id, clock() + wait);
    return id;
  }
  function cancel(id) {
    due.delete(id);
    if (shadow.has(id)) { clearT.call(window, shadow.get(id)); clearI.call(window, shadow.get(id)); shadow.delete(id); }
  }
  window.setTimeout = function (fn, delay) { return schedule(setT, false, fn, delay, slice.call(arguments, 2)); };
  window.setInterval = function (fn, delay) { return schedule(setI, true, fn, delay, slice.call(arguments, 2)); };
  window.clearTimeout = function (id) { cancel(id); return clearT.apply(window, arguments); };
  window.clearInterval = function (id) { cancel(id); return clearI.apply(window, arguments); };
  // Animation frames and idle callbacks: due at once.
  var frames = new Set();
  [['requestAnimationFrame', 'cancelAnimationFrame'], ['requestIdleCallback', 'cancelIdleCallback']]
    .forEach(function (pair) {
      var ask = window[pair[0]], drop = window[pair[1]];
      if (!ask || !drop) { return; }
      window[pair[0]] = function (fn) {
        var rest = slice.call(arguments, 1), id;
        id = ask.apply(window, [function () { frames.delete(id); touch(); return fn.apply(this, arguments); }].concat(rest));
        frames.add(id);
        return id;
      };
      window[pair[1]] = function (id) { frames.delete(id); return drop.apply(window, arguments); };
    });
  // Channels that can bring news at any time: sockets, event streams, workers.
  var channels = [];
  ['WebSocket', 'EventSource', 'Worker', 'SharedWorker'].forEach(function (name) {
    var Original = window[name];
    if (!Original) { return; }
    var Wrapped = function () {
      var made = new (Function.prototype.bind.apply(Original, [null].concat(slice.call(arguments))))();
      channels.push({what: name, it: made, ended: false});
      return made;
    };
    Wrapped.prototype = Original.prototype;
    Object.keys(Original).forEach(function (k) { try { Wrapped[k] = Original[k]; } catch (e) {} });
    try { window[name] = Wrapped; } catch (e) {}
  });
  if (window.Worker) {
    var terminate = Worker.prototype.terminate;
    Worker.prototype.terminate = function () {
      for (var i = 0; i < channels.length; i++) { if (channels[i].it === this) { channels[i].ended = true; } }
      return terminate.apply(this, arguments);
    };
  }
  function liveChannels() {
    var n = 0;
    channels.forEach(function (c) {
      if (c.ended) { return; }
      var state = c.it.readyState;
      if (c.what === 'WebSocket' && state === 3) { return; }
      if (c.what === 'EventSource' && state === 2) { return; }
      n++;
    });
    return n;
  }
  // Messages between windows and ports wake a page (schedulers use them between renders).
  window.addEventListener('message', touch, true);
  if (window.MessagePort) {
    var post = MessagePort.prototype.postMessage;
    MessagePort.prototype.postMessage = function () { touch(); return post.apply(this, arguments); };
  }
  // Scripts and frames inserted once the document is complete: in flight until they load.
  function watchLoad(node) {
    if (!node || node.nodeType !== 1 || document.readyState !== 'complete') { return; }
    var tag = node.tagName;
    var src = node.getAttribute && node.getAttribute('src');
    if ((tag === 'SCRIPT' || tag === 'IFRAME') && src && !/^\s*about:/i.test(src)) {
      var end = opened();
      node.addEventListener('load', end);
      node.addEventListener('error', end);
    }
    if (node.querySelectorAll) {
      var inner = node.querySelectorAll('script[src], iframe[src]');
      for (var i = 0; i < inner.length; i++) { watchLoad(inner[i]); }
    }
  }
  try {
    new MutationObserver(function (records) {
      touch();
      records.forEach(function (r) { for (var i = 0; i < r.addedNodes.length; i++) { watchLoad(r.addedNodes[i]); } });
    }).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  } catch (e) {}
  h.report = function () {
    var now = clock(), next = -1;
    due.forEach(function (when) {
      var left = Math.max(0, when - now);
      if (next < 0 || left < next) { next = left; }
    });
    if (frames.size) { next = 0; }
    return {inflight: h.inflight, channels: liveChannels(), timers: due.size + frames.size,
            next: next, quiet: now - h.last, late: h.late, failed: h.failed, failure: h.failure};
  };
})
"""

HOOK_JS = _HOOK_BODY.strip() + "(false);"
"""Installed before navigation: tracks what may still change the page (see the module docstring)."""

# Shared by the snapshot and the click lookup, so both number attachment elements alike.
_ATTACHMENT_ELEMENTS_JS = r"""
function coupadAttachmentElements() {
  var out = [];
  var els = document.querySelectorAll('[aria-label]');
  for (var i = 0; i < els.length; i++) {
    var m = /^([\s\S]*?)\s*file attachment\s*$/i.exec(els[i].getAttribute('aria-label') || '');
    if (m) { out.push({el: els[i], prefix: m[1]}); }
  }
  return out;
}
function coupadClean(t) { return String(t || '').replace(/\s+/g, ' ').trim(); }
"""

SNAPSHOT_JS = (
    "var full = arguments[0];\n"
    + _ATTACHMENT_ELEMENTS_JS
    + "if (!window.__coupadHook) {"
    + _HOOK_BODY.strip()
    + "(true); }\n"
    + r"""
var h = window.__coupadHook || null;
var nav = (performance.getEntriesByType && performance.getEntriesByType('navigation')[0]) || {};
var out = {
  url: String(location.href),
  ready: String(document.readyState),
  status: Number(nav.responseStatus || 0),
  title: coupadClean(document.title).slice(0, 300),
  login: !!document.querySelector('#user_email, #user_password, input[type=password]'),
  hook: h && h.report ? h.report() : null
};

var here = String(location.href).split('#')[0];
function directUrl(a) {
  if (!a) { return null; }
  var raw = (a.getAttribute('href') || '').trim();
  if (!raw || raw.charAt(0) === '#' || !/^https?:/i.test(a.href)) { return null; }
  if (a.href.split('#')[0] === here) { return null; }
  return a.href;
}
var atts = [], seen = {}, reqs = [];
var labelled = coupadAttachmentElements();
for (var i = 0; i < labelled.length && atts.length < MAX_ATTACHMENTS; i++) {
  var el = labelled[i].el;
  var url = directUrl(el.closest('a[href]'));
  if (url) { if (seen[url]) { continue; } seen[url] = true; }
  var name = coupadClean(el.getAttribute('title')) || coupadClean(labelled[i].prefix);
  atts.push({name: name.slice(0, MAX_NAME_CHARS), url: url, index: url ? null : i});
}
var links = document.querySelectorAll('a[href]');
for (var j = 0; j < links.length; j++) {
  var a = links[j], u;
  try { u = new URL(a.href); } catch (e) { continue; }
  if (!/^https?:$/.test(u.protocol)) { continue; }
  var rm = /\/requisition_headers\/(\d+)(?:[\/?#]|$)/.exec(u.pathname);
  if (rm && u.origin === location.origin && reqs.indexOf(rm[1]) < 0) { reqs.push(rm[1]); }
  if (!/attachment_file|\/attachments\//i.test(u.pathname + u.search)) { continue; }
  if (seen[a.href] || atts.length >= MAX_ATTACHMENTS) { continue; }
  seen[a.href] = true;
  var lname = coupadClean(a.getAttribute('title')) || coupadClean(a.innerText || a.textContent);
  if (!lname) {
    var segs = u.pathname.split('/').filter(Boolean);
    try { lname = decodeURIComponent(segs[segs.length - 1] || ''); } catch (e) { lname = ''; }
  }
  atts.push({name: lname.slice(0, MAX_NAME_CHARS), url: a.href, index: null});
}
// Every look carries the list's signature, so a list that grows between looks is noticed.
var sig = 0;
for (var s = 0; s < atts.length; s++) {
  var key = atts[s].name + '\u0000' + (atts[s].url || '#' + atts[s].index) + '\u0001';
  for (var c = 0; c < key.length; c++) { sig = (Math.imul(sig, 31) + key.charCodeAt(c)) | 0; }
}
for (var r = 0; r < reqs.length; r++) {
  for (var d = 0; d < reqs[r].length; d++) { sig = (Math.imul(sig, 31) + reqs[r].charCodeAt(d)) | 0; }
  sig = (Math.imul(sig, 31) + 2) | 0;
}
out.list = {count: atts.length, sig: String(sig >>> 0)};
if (!full) { return out; }
var body = document.body;
var text = body ? String(body.innerText || '') : '';
out.textLength = text.length;
out.text = text.slice(0, TEXT_SAMPLE_CHARS);
out.headings = Array.prototype.slice.call(
  document.querySelectorAll('h1, h2, h3, [role=heading]'), 0, 20
).map(function (e) { return coupadClean(e.innerText || e.textContent).slice(0, 300); });
out.attachments = atts;
out.requisitions = reqs.slice(0, 20);

var LABELS = ['supplier', 'supplier name', 'lieferant', 'fournisseur', 'proveedor',
              'leverancier'];
function isLabel(el) {
  var t = el.textContent || '';
  if (t.length > 40) { return false; }
  t = coupadClean(t).replace(/\s*[:\uff1a]$/, '').toLowerCase();
  return LABELS.indexOf(t) >= 0;
}
function textOf(el) { return coupadClean(el.value || el.innerText || el.textContent); }
function valueFor(el) {
  if (el.tagName === 'LABEL' && el.getAttribute('for')) {
    var target = document.getElementById(el.getAttribute('for'));
    if (target && textOf(target)) { return textOf(target); }
  }
  if (el.id) {
    var all = document.querySelectorAll('[aria-labelledby]');
    for (var k = 0; k < all.length; k++) {
      if ((' ' + all[k].getAttribute('aria-labelledby') + ' ').indexOf(' ' + el.id + ' ') >= 0
          && textOf(all[k])) { return textOf(all[k]); }
    }
  }
  var sib = el.nextElementSibling;
  while (sib && !textOf(sib)) { sib = sib.nextElementSibling; }
  if (sib) { return textOf(sib); }
  var parent = el.parentElement;
  if (parent) {
    var rest = coupadClean(textOf(parent).replace(textOf(el), ''));
    if (rest) { return rest; }
  }
  return null;
}
out.supplier = null;
var cands = document.querySelectorAll('dt, th, label, strong, b, span, div, td, p');
for (var c = 0; c < cands.length && out.supplier === null; c++) {
  if (isLabel(cands[c])) {
    var v = valueFor(cands[c]);
    if (v) { out.supplier = v.replace(/^[:\uff1a]\s*/, '').slice(0, 200) || null; }
  }
}
return out;
""".replace("TEXT_SAMPLE_CHARS", str(TEXT_SAMPLE_CHARS))
    .replace("MAX_ATTACHMENTS", str(MAX_ATTACHMENTS))
    .replace("MAX_NAME_CHARS", str(MAX_NAME_CHARS))
)
"""One look at a tab: ``execute_script(SNAPSHOT_JS, full)``; ``full`` adds text and content."""

CLICK_TARGET_JS = (
    _ATTACHMENT_ELEMENTS_JS
    + r"""
var index = arguments[0], name = arguments[1];
var labelled = coupadAttachmentElements();
function nameOf(item) {
  return coupadClean(item.el.getAttribute('title')) || coupadClean(item.prefix);
}
if (index < labelled.length && nameOf(labelled[index]).slice(0, 1000) === name) {
  return labelled[index].el;
}
for (var i = 0; i < labelled.length; i++) {
  if (nameOf(labelled[i]).slice(0, 1000) === name) { return labelled[i].el; }
}
return null;
"""
)
"""Finds a click-only attachment element again: by position, confirmed (or found) by name."""

SCROLL_TO_CENTRE_JS = "arguments[0].scrollIntoView({block: 'center', inline: 'center'});"

CLICK_POINT_JS = CLICK_TARGET_JS.replace("return labelled[index].el;", "return coupadAim(labelled[index].el);") \
    .replace("if (nameOf(labelled[i]).slice(0, 1000) === name) { return labelled[i].el; }",
             "if (nameOf(labelled[i]).slice(0, 1000) === name) { return coupadAim(labelled[i].el); }") \
    + r"""
function coupadAim(el) {
  el.scrollIntoView({block: 'center', inline: 'center'});
  var r = el.getBoundingClientRect();
  var x = r.left + r.width / 2, y = r.top + r.height / 2;
  var hit = r.width > 0 && r.height > 0 ? document.elementFromPoint(x, y) : null;
  if (hit && (hit === el || el.contains(hit))) { return {x: x, y: y}; }
  el.click();  // covered (the floating toolbar) or not laid out: its own click, without the mouse
  return {clicked: true};
}
"""
"""Finds a click-only attachment element like CLICK_TARGET_JS and aims at it: ``{x, y}`` of
its centre when a mouse click there reaches it, ``{clicked: true}`` after clicking it by script
when something covers it, or null when it is gone."""


class PageKind(enum.Enum):
    """What a tab shows."""

    LOADING = "loading"
    SIGNED_OUT = "signed out"
    THROTTLED = "throttled"
    SERVER_ERROR = "server error"
    NOT_FOUND = "not found"
    ACCESS_DENIED = "access denied"
    UNEXPECTED = "unexpected page"
    CONTENT = "content"


@dataclass(frozen=True)
class Attachment:
    """One attachment as the page shows it."""

    name: str
    url: str | None  # absolute URL for a direct fetch; None when only a click starts it
    index: int | None  # position among the aria-labelled attachment elements, for the click

    def key(self, source: str) -> str:
        """Stable identity across retries, used by the folder's manifest."""
        return f"{source}:{self.url or f'click:{self.index}:{self.name}'}"


@dataclass(frozen=True)
class HookState:
    """What the page hook saw of the page's own activity at one look."""

    inflight: int  # requests, and scripts or frames inserted after load, not yet answered
    timers: int  # timers, intervals, animation frames and idle callbacks pending
    quiet_s: float  # seconds since the page last did anything the hook sees
    late: bool  # installed after the page's scripts had run: blind to what they started
    channels: int = 0  # open sockets, event streams and workers: news may come at any time
    next_due_s: float | None = None  # seconds until the next pending timer is due
    failed: int = 0  # requests to the page's own site that failed (network, 429, 5xx)
    failure: str = ""  # the first of them, such as "HTTP 503 /order_headers/1/attachments"


@dataclass(frozen=True)
class Snapshot:
    """One look at a tab; content fields are empty unless it was a full snapshot."""

    url: str
    ready_state: str
    status: int  # HTTP status of the navigation; 0 when unknown
    title: str
    login_form: bool
    hook: HookState | None
    full: bool = False
    text: str = ""  # a bounded sample of the body's visible text
    text_length: int = 0
    headings: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    supplier: str | None = None
    requisitions: tuple[str, ...] = ()  # requisition ids linked from the page
    # Every look: how many attachments the page lists and a signature of the list (with the
    # requisition links), so that a list that grows or changes between looks is noticed.
    list_count: int = 0
    list_sig: str = ""

    @classmethod
    def from_js(cls, raw: Any) -> Snapshot:
        """Build a snapshot from what the page returned, trusting none of its types."""
        data = raw if isinstance(raw, dict) else {}
        hook_raw = data.get("hook")
        hook = None
        if isinstance(hook_raw, dict):
            next_due = _int(hook_raw.get("next"), default=-1)
            hook = HookState(
                inflight=_int(hook_raw.get("inflight")),
                timers=_int(hook_raw.get("timers")),
                quiet_s=max(0, _int(hook_raw.get("quiet"))) / 1000.0,
                late=bool(hook_raw.get("late")),
                channels=_int(hook_raw.get("channels")),
                next_due_s=next_due / 1000.0 if next_due >= 0 else None,
                failed=_int(hook_raw.get("failed")),
                failure=_str(hook_raw.get("failure"), 300),
            )
        attachments = []
        raw_attachments = data.get("attachments")
        for item in raw_attachments[:MAX_ATTACHMENTS] if isinstance(raw_attachments, list) else []:
            if not isinstance(item, dict):
                continue
            url = item.get("url")
            index = item.get("index")
            attachments.append(
                Attachment(
                    name=_str(item.get("name"), MAX_NAME_CHARS),
                    url=url if isinstance(url, str) and url else None,
                    index=index if isinstance(index, int) and not isinstance(index, bool) else None,
                )
            )
        headings = data.get("headings")
        requisitions = data.get("requisitions")
        supplier = data.get("supplier")
        listed_raw = data.get("list")
        listed: dict[str, Any] = listed_raw if isinstance(listed_raw, dict) else {}
        return cls(
            url=_str(data.get("url"), 4000),
            ready_state=_str(data.get("ready"), 20),
            status=_int(data.get("status")),
            title=_str(data.get("title"), 300),
            login_form=bool(data.get("login")),
            hook=hook,
            full="text" in data,
            text=_str(data.get("text"), TEXT_SAMPLE_CHARS),
            text_length=_int(data.get("textLength")),
            headings=tuple(_str(h, 300) for h in headings[:20]) if isinstance(headings, list) else (),
            attachments=tuple(a for a in attachments if a.url or a.index is not None),
            supplier=(_str(supplier, 200).strip() or None) if isinstance(supplier, str) else None,
            requisitions=tuple(
                r for r in (requisitions[:20] if isinstance(requisitions, list) else [])
                if isinstance(r, str) and r.isascii() and r.isdigit()
            ),
            list_count=_int(listed.get("count")),
            list_sig=_str(listed.get("sig"), 40),
        )

    @property
    def has_content(self) -> bool:
        """Whether the page shows PO content (attachments, a supplier or a requisition link)."""
        return bool(self.attachments or self.supplier or self.requisitions)


@dataclass(frozen=True)
class Verdict:
    """The classification of one snapshot, with a reason in plain words."""

    kind: PageKind
    reason: str = ""


def is_idle(snap: Snapshot, horizon: float) -> bool:
    """Whether nothing the hook sees can still change the page within ``horizon`` seconds.

    The document is complete; the hook was there before the page's scripts ran; no request,
    inserted script or frame is in flight; no socket, event stream or worker is open; no
    timer (of any kind) is due within ``horizon``; and the page has done nothing for
    :data:`QUIET_S` (no DOM change, no timer run, no request ended, no message).
    """
    hook = snap.hook
    if snap.ready_state != "complete" or hook is None or hook.late:
        return False
    if hook.inflight > 0 or hook.channels > 0:
        return False
    if hook.next_due_s is not None and hook.next_due_s <= horizon:
        return False
    return hook.quiet_s >= QUIET_S


def idle_wait(snap: Snapshot, horizon: float) -> float | None:
    """Seconds until :func:`is_idle` can hold if nothing else happens meanwhile: the quiet time
    still to run, after the pending timer that is due within ``horizon``; None when that cannot
    be told (not complete, no hook or a late one, requests in flight, channels open)."""
    hook = snap.hook
    if snap.ready_state != "complete" or hook is None or hook.late:
        return None
    if hook.inflight > 0 or hook.channels > 0:
        return None
    if hook.next_due_s is not None and hook.next_due_s <= horizon:
        return hook.next_due_s + QUIET_S
    return max(0.0, QUIET_S - hook.quiet_s)


def classify(snap: Snapshot, base: str, expected_path: str, *, settled: bool) -> Verdict:
    """Classify what a tab shows after navigating to ``base + expected_path``.

    Before the page has settled only decisive signs count (sign-in, HTTP 429/5xx); the
    wording of error pages is read from a full snapshot of a settled page.
    """
    url = snap.url
    scheme = urlsplit(url).scheme.lower()
    if scheme == "chrome-error":
        if snap.ready_state != "complete":
            return Verdict(PageKind.LOADING)
        return Verdict(PageKind.SERVER_ERROR, "the page could not be loaded (network error)")
    if scheme not in ("http", "https"):
        return Verdict(PageKind.LOADING)
    if is_sign_in_page(url, base):
        where = str(origin(url) or "another site") if origin(url) != origin(base) else urlsplit(url).path
        return Verdict(PageKind.SIGNED_OUT, f"Coupa asked for sign-in ({where})")
    if snap.status == 429:
        return Verdict(PageKind.THROTTLED, "Coupa answered 429 Too Many Requests")
    if snap.status >= 500:
        return Verdict(PageKind.SERVER_ERROR, f"Coupa answered HTTP {snap.status}")
    if snap.status == 401:
        return Verdict(PageKind.SIGNED_OUT, "Coupa answered 401 Unauthorized")
    if not settled or not snap.full:
        if snap.login_form and snap.ready_state == "complete":
            return Verdict(PageKind.SIGNED_OUT, "Coupa showed a sign-in form")
        return Verdict(PageKind.LOADING)
    if snap.status in (404, 410):
        return Verdict(PageKind.NOT_FOUND, f"Coupa answered HTTP {snap.status}")
    if snap.status == 403:
        return Verdict(PageKind.ACCESS_DENIED, "Coupa answered 403 Forbidden")
    if snap.login_form and not snap.has_content:
        return Verdict(PageKind.SIGNED_OUT, "Coupa showed a sign-in form")
    if not snap.has_content:
        phrase_kind = _error_phrase(snap)
        if phrase_kind is not None:
            return phrase_kind
    path = urlsplit(url).path.rstrip("/")
    expected = expected_path.rstrip("/")
    if not (path == expected or path.startswith(expected + "/")):
        return Verdict(PageKind.UNEXPECTED, f"Coupa showed {path or '/'} instead of {expected}")
    if 400 <= snap.status < 500:
        return Verdict(PageKind.UNEXPECTED, f"Coupa answered HTTP {snap.status}")
    return Verdict(PageKind.CONTENT)


# Wording of Coupa's error pages, compared without accents and with straight apostrophes.
THROTTLE_PHRASES = ("too many requests", "rate limit", "slow down", "zu viele anfragen",
                    "trop de requetes", "demasiadas solicitudes", "te veel verzoeken")
ACCESS_DENIED_PHRASES = (
    "not authorized", "not authorised", "access denied", "permission denied",
    "don't have permission", "do not have permission", "don't have access",
    "do not have access", "keine berechtigung", "nicht berechtigt", "zugriff verweigert",
    "acces refuse", "pas autorise", "non autorise", "pas l'autorisation",
    "acceso denegado", "no autorizado", "no tiene permiso",
    "geen toegang", "niet gemachtigd", "toegang geweigerd", "niet bevoegd",
)
NOT_FOUND_PHRASES = (
    "couldn't find what you wanted", "could not find what you wanted",
    "page you were looking for doesn't exist", "page you were looking for does not exist",
    "not found", "doesn't exist", "does not exist", "no longer exists",
    "konnten nicht finden", "nicht gefunden", "existiert nicht",
    "introuvable", "n'existe pas", "pas pu trouver", "non trouve",
    "no pudimos encontrar", "no encontrad", "no existe",
    "niet gevonden", "bestaat niet", "konden niet vinden",
)


def normalise_text(text: str) -> str:
    """Lower case, no accents, straight apostrophes, single spaces: for phrase matching."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = plain.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return re.sub(r"\s+", " ", plain).lower()


def _error_phrase(snap: Snapshot) -> Verdict | None:
    """An error verdict from the page's wording, for a page without PO content."""
    prominent = normalise_text(" | ".join((snap.title, *snap.headings)))
    places = [prominent]
    if snap.text_length <= SHORT_PAGE_CHARS:
        places.append(normalise_text(snap.text))
    for place in places:
        for phrases, kind in (
            (THROTTLE_PHRASES, PageKind.THROTTLED),
            (ACCESS_DENIED_PHRASES, PageKind.ACCESS_DENIED),
            (NOT_FOUND_PHRASES, PageKind.NOT_FOUND),
        ):
            for phrase in phrases:
                if phrase in place:
                    return Verdict(kind, f'Coupa says "{_quote(snap, phrase)}"')
    return None


def _quote(snap: Snapshot, phrase: str) -> str:
    """The sentence of the page that holds the phrase, for the result's reason."""
    for line in (snap.title, *snap.headings, *snap.text.splitlines()):
        if phrase in normalise_text(line):
            return line.strip()[:160]
    return phrase


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value == value and abs(value) < 1e15:
        return int(value)
    return default


def _str(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""
