"""What a Coupa page shows: one JavaScript snapshot per look, and its classification.

The engine looks at a tab through :data:`SNAPSHOT_JS` (one ``execute_script`` per look) and
decides with the pure function :func:`classify` what the page is: still loading, the sign-in
page or an identity provider, throttled, a server error, "not found", "access denied", an
unexpected page, or a PO (or requisition) page with content. Only what real Coupa pages have
is relied on (coupa-domain.md): attachment elements whose ``aria-label`` reads
``"<name> file attachment"``, links whose ``href`` contains ``attachment_file`` or
``/attachments/``, a supplier field found by its label, links to ``/requisition_headers/<id>``
and the wording of error pages.

Settling: :data:`HOOK_JS` is installed in a tab before it navigates (CDP
``Page.addScriptToEvaluateOnNewDocument``). It counts requests in flight (fetch, response
bodies, XMLHttpRequest), pending short ``setTimeout`` timers (delay of 5 s or less) and
records the time of the last DOM mutation. :func:`is_settled` says a page is settled when
``readyState`` is complete, no request is in flight and the DOM has been quiet for
:data:`QUIET_S` with no short timer pending (or quiet for :data:`LONG_QUIET_S` whatever the
timers, so a page that polls with timers is not held up). When the hook is missing, the
snapshot installs it late; then requests that started earlier are invisible, so a longer
quiet period is required. The engine bounds all of this with ``coupa.settle_timeout``.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from coupad.signin import is_sign_in_url, origin

QUIET_S = 0.15
LONG_QUIET_S = 1.0
LATE_HOOK_QUIET_S = 0.5
SHORT_PAGE_CHARS = 2000  # an error page's text is short; a PO page's is long
TEXT_SAMPLE_CHARS = 4000
MAX_ATTACHMENTS = 1000
MAX_NAME_CHARS = 1000

_HOOK_BODY = r"""
(function (late) {
  if (window.top !== window || window.__coupadHook) { return; }
  var h = {inflight: 0, timers: 0, lastMutation: Date.now(), late: late};
  try {
    Object.defineProperty(window, '__coupadHook', {value: h, enumerable: false});
  } catch (e) { return; }
  function counted(fn) {
    return function () {
      h.inflight++;
      var open = true;
      function end() { if (open) { open = false; h.inflight--; } }
      var p;
      try { p = fn.apply(this, arguments); } catch (e) { end(); throw e; }
      if (p && typeof p.then === 'function') { p.then(end, end); } else { end(); }
      return p;
    };
  }
  if (window.fetch) { window.fetch = counted(window.fetch); }
  if (window.Response) {
    ['json', 'text', 'arrayBuffer', 'blob', 'formData'].forEach(function (m) {
      if (Response.prototype[m]) { Response.prototype[m] = counted(Response.prototype[m]); }
    });
  }
  if (window.XMLHttpRequest) {
    var send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function () {
      h.inflight++;
      var open = true;
      function end() { if (open) { open = false; h.inflight--; } }
      this.addEventListener('loadend', end);
      try { return send.apply(this, arguments); } catch (e) { end(); throw e; }
    };
  }
  var pending = new Set();
  var setT = window.setTimeout, clearT = window.clearTimeout;
  window.setTimeout = function (fn, delay) {
    if (typeof fn !== 'function' || Number(delay) > 5000) {
      return setT.apply(window, arguments);
    }
    var args = Array.prototype.slice.call(arguments, 2);
    var id = setT.call(window, function () {
      if (pending.delete(id)) { h.timers--; }
      return fn.apply(this, args);
    }, delay);
    pending.add(id);
    h.timers++;
    return id;
  };
  window.clearTimeout = function (id) {
    if (pending.delete(id)) { h.timers--; }
    return clearT.apply(window, arguments);
  };
  try {
    new MutationObserver(function () { h.lastMutation = Date.now(); }).observe(document, {
      subtree: true, childList: true, attributes: true, characterData: true});
  } catch (e) {}
})
"""

HOOK_JS = _HOOK_BODY.strip() + "(false);"
"""Installed before navigation: counts requests, short timers and DOM mutations."""

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
  hook: h ? {inflight: h.inflight, timers: h.timers, quiet: Date.now() - h.lastMutation,
             late: !!h.late} : null
};
if (!full) { return out; }
var body = document.body;
var text = body ? String(body.innerText || '') : '';
out.textLength = text.length;
out.text = text.slice(0, TEXT_SAMPLE_CHARS);
out.headings = Array.prototype.slice.call(
  document.querySelectorAll('h1, h2, h3, [role=heading]'), 0, 20
).map(function (e) { return coupadClean(e.innerText || e.textContent).slice(0, 300); });

var here = String(location.href).split('#')[0];
function directUrl(a) {
  if (!a) { return null; }
  var raw = (a.getAttribute('href') || '').trim();
  if (!raw || raw.charAt(0) === '#' || !/^https?:/i.test(a.href)) { return null; }
  if (a.href.split('#')[0] === here) { return null; }
  return a.href;
}
var atts = [], seen = {};
var labelled = coupadAttachmentElements();
for (var i = 0; i < labelled.length && atts.length < MAX_ATTACHMENTS; i++) {
  var el = labelled[i].el;
  var url = directUrl(el.closest('a[href]'));
  if (url) { if (seen[url]) { continue; } seen[url] = true; }
  var name = coupadClean(el.getAttribute('title')) || coupadClean(labelled[i].prefix);
  atts.push({name: name.slice(0, MAX_NAME_CHARS), url: url, index: url ? null : i});
}
var links = document.querySelectorAll('a[href]');
var reqs = [];
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
    """The settle hook's counters as last seen."""

    inflight: int
    timers: int
    quiet_s: float
    late: bool


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

    @classmethod
    def from_js(cls, raw: Any) -> Snapshot:
        """Build a snapshot from what the page returned, trusting none of its types."""
        data = raw if isinstance(raw, dict) else {}
        hook_raw = data.get("hook")
        hook = None
        if isinstance(hook_raw, dict):
            hook = HookState(
                inflight=_int(hook_raw.get("inflight")),
                timers=_int(hook_raw.get("timers")),
                quiet_s=_int(hook_raw.get("quiet")) / 1000.0,
                late=bool(hook_raw.get("late")),
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


def settle_wait(snap: Snapshot) -> float:
    """Seconds until the page can count as settled if nothing on it changes meanwhile; 0 when
    that cannot be told yet (not complete, requests in flight, short timers pending), so the
    caller looks again soon rather than at a predicted time."""
    hook = snap.hook
    if snap.ready_state != "complete" or hook is None or hook.inflight > 0 or hook.timers > 0:
        return 0.0
    return max(0.0, _quiet_needed(hook) - hook.quiet_s)


def _quiet_needed(hook: HookState) -> float:
    """DOM quiet that settles a page with nothing in flight and no short timer pending."""
    return max(LATE_HOOK_QUIET_S, QUIET_S) if hook.late else QUIET_S


def is_settled(snap: Snapshot) -> bool:
    """Whether the page's dynamic content has settled (see the module docstring)."""
    if snap.ready_state != "complete":
        return False
    hook = snap.hook
    if hook is None:
        return False
    if hook.inflight > 0:
        return False
    if hook.timers == 0:
        return hook.quiet_s >= _quiet_needed(hook)
    # Short timers pending: a late hook still needs its own quiet; either way a long one.
    return hook.quiet_s >= max(_quiet_needed(hook), LONG_QUIET_S)


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
    if is_sign_in_url(url, base):
        where = origin(url) if origin(url) != origin(base) else urlsplit(url).path
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


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value == value and abs(value) < 1e15:
        return int(value)
    return 0


def _str(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""
