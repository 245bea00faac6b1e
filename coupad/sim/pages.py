"""The HTML of the simulated tenant and identity provider, built from the catalogue.

Pages look like Coupa where it matters to a client: a fixed toolbar that covers the top of
the viewport, the supplier in a labelled field, decoy export links, and an attachment list
that arrives as the page's :class:`~coupad.sim.catalogue.PageStyle` says: by default the
page's own JavaScript fetches and renders it after the page has loaded. Every value from the
catalogue is escaped; names are put into the DOM with ``textContent``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape

from coupad.sim.catalogue import (
    DECOY_FILES,
    Arrival,
    Attachment,
    Decoy,
    ErrorPage,
    Markup,
    Noise,
    PageStyle,
    PurchaseOrder,
    Requisition,
    Shape,
    markup_token,
    slices,
)

TOOLBAR_HEIGHT = 120
LINE_ROWS = 30  # enough lines to push the attachments below the fold
HISTORY_ROWS = 40

_STYLE = f"""
body {{ font-family: sans-serif; margin: 0; }}
#toolbar {{ position: fixed; top: 0; left: 0; right: 0; height: {TOOLBAR_HEIGHT}px;
  z-index: 1000; background: #f4f6f8; border-bottom: 1px solid #ccd; }}
#toolbar nav a {{ margin-right: 1.5em; }}
main {{ padding: {TOOLBAR_HEIGHT + 16}px 24px 48px; }}
.banner {{ background: #e8f1fb; border: 1px solid #9bc; padding: 8px; margin: 8px 0; }}
dl.fields {{ display: grid; grid-template-columns: 12em 1fr; }}
table.lines td, table.lines th {{ padding: 4px 12px; height: 20px; }}
#attachment-list li {{ margin: 6px 0; }}
span[role=button] {{ color: #06c; cursor: pointer; text-decoration: underline; }}
"""

_ERROR_TEXT: dict[ErrorPage, tuple[str, str, str]] = {
    ErrorPage.NOT_FOUND: (
        "en",
        "Oops! We couldn't find what you wanted",
        "Check the address, or go back to the previous page.",
    ),
    ErrorPage.NOT_FOUND_VARIANT: (
        "en",
        "The page you were looking for doesn't exist.",
        "You may have mistyped the address or the page may have moved.",
    ),
    ErrorPage.NOT_FOUND_DE: (
        "de",
        "Hoppla! Wir konnten nicht finden, was Sie gesucht haben",
        "Bitte überprüfen Sie die Adresse.",
    ),
    ErrorPage.ACCESS_DENIED: (
        "en",
        "You are not authorized to view this page",
        "Ask your Coupa administrator for access.",
    ),
    ErrorPage.ACCESS_DENIED_VARIANT: (
        "en",
        "Access denied",
        "You don't have permission to access this order.",
    ),
    ErrorPage.ACCESS_DENIED_DE: (
        "de",
        "Sie sind nicht berechtigt, diese Seite anzuzeigen",
        "Wenden Sie sich an Ihren Coupa-Administrator.",
    ),
    ErrorPage.ACCESS_DENIED_FR: (
        "fr",
        "Accès refusé",
        "Vous n'êtes pas autorisé à consulter cette page.",
    ),
}

THROTTLE_TEXT = "Too Many Requests — you have made too many requests, please slow down"
SERVER_ERROR_TEXT = {
    500: "We're sorry, but something went wrong.",
    502: "502 Bad Gateway",
    503: "Service Unavailable — Coupa is temporarily unavailable, please try again later.",
}
SIGN_IN_FAILED = "Invalid email or password."
IDP_FAILED = "Incorrect username or password."

# The attachment list arrives like Coupa's: fetched by the page's own script, rendered late
# by a timer, or in the HTML from the start; and it may grow in slices, each later slice by
# a timer or by a further request. Button-style attachments keep their URL in a closure; it
# never enters the DOM. Its one argument (see _attachment_section) says which.
_ATTACHMENTS_SCRIPT = """
(function (cfg) {
  var list = document.getElementById(cfg.list);
  var ul = null, none = null, shown = 0;
  function download(url) {
    var a = document.createElement("a");
    a.href = url;
    a.setAttribute("download", "");
    a.click();
  }
  function bind(el, url) {
    el.addEventListener("click", function () { download(url); });
    el.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { download(url); }
    });
  }
  function item(att) {
    var li = document.createElement("li");
    var el;
    if (att.shape === "link") {
      el = document.createElement("a");
      el.href = att.url;
      el.className = cfg.cls.link;
      if (cfg.labelLinks) { el.setAttribute("aria-label", att.name + " file attachment"); }
    } else {
      el = document.createElement(cfg.buttonTag);
      if (cfg.buttonTag === "button") {
        el.type = "button";
      } else {
        el.setAttribute("role", "button");
        el.tabIndex = 0;
      }
      el.className = cfg.cls.button;
      el.setAttribute("aria-label", att.name + " file attachment");
      if (cfg.titles) { el.title = att.name; }
      bind(el, att.url);
    }
    el.textContent = att.name;
    li.appendChild(el);
    var size = document.createElement("small");
    size.textContent = " (" + Math.max(1, Math.round(att.size / 1024)) + " KB)";
    li.appendChild(size);
    return li;
  }
  function done(last) {
    if (last && cfg.busy) { list.setAttribute("aria-busy", "false"); }
  }
  function show(atts, last) {
    if (ul === null) {
      list.textContent = "";
      if (!atts.length) {
        none = document.createElement("span");
        none.className = cfg.cls.none;
        none.textContent = "None";
        list.appendChild(none);
      }
      ul = document.createElement("ul");
      list.appendChild(ul);
    } else if (none !== null && atts.length) {
      list.removeChild(none);
      none = null;
    }
    atts.forEach(function (att) { ul.appendChild(item(att)); });
    shown += atts.length;
    done(last);
  }
  function adopt(atts, last) {
    // The first slice is in the served HTML: give its buttons their downloads.
    ul = list.querySelector("ul");
    none = list.querySelector("." + cfg.cls.none);
    atts.forEach(function (att, k) {
      if (att.shape !== "link") { bind(ul.children[k].firstChild, att.url); }
    });
    shown += atts.length;
    done(last);
  }
  function failed() {
    list.textContent = "Attachments could not be loaded.";
    done(true);
  }
  function request(part, then) {
    fetch(cfg.dataUrl + (part ? "?part=" + part : ""),
          {credentials: "same-origin", redirect: "manual",
           headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.type === "opaqueredirect") {
          location.assign("/sessions/new?return_to=" + encodeURIComponent(location.pathname));
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) { if (data) { then(data.attachments); } })
      .catch(failed);
  }
  function slice(i) {
    // Slice i is due cfg.offsets[i] s after this script ran; slice i - 1 is on the page.
    if (i >= cfg.offsets.length) { return; }
    var last = i === cfg.offsets.length - 1;
    var how = i === 0 ? cfg.arrival : cfg.growth;
    function arrive(atts) { show(atts, last); slice(i + 1); }
    if (how === "inline") {
      adopt(cfg.slices[0], last);
      slice(1);
    } else if (how === "timer" || how === "frame") {
      var wait = (cfg.offsets[i] - (i ? cfg.offsets[i - 1] : 0)) * 1000;
      setTimeout(function () {
        if (how === "timer") { arrive(cfg.slices[i]); return; }
        requestAnimationFrame(function () { arrive(cfg.slices[i]); });
      }, Math.max(0, wait));
    } else if (how === "visible" && document.visibilityState !== "visible") {
      document.addEventListener("visibilitychange", function seen() {
        if (document.visibilityState !== "visible") { return; }
        document.removeEventListener("visibilitychange", seen);
        request(i, arrive);
      });
    } else {
      request(i, arrive);  // the server answers part i when it is due
    }
  }
  slice(0);
})
"""

# The ticker rewrites one line every 500 ms, for as long as the page is open.
_TICKER_SCRIPT = """
(function (id) {
  var el = document.getElementById(id), n = 0;
  setInterval(function () {
    n += 1;
    el.textContent = "Last refreshed " + (n / 2).toFixed(1) + " s ago";
  }, 500);
})
"""

# A session warning a minute after load, as Coupa shows one before the session ends.
_LONG_TIMER_SCRIPT = """
(function (id) {
  setTimeout(function () {
    var box = document.getElementById(id);
    box.textContent = "Your session will end soon. Save your work.";
    box.hidden = false;
  }, 60000);
})
"""

# A print control that downloads the printable order: a decoy, not an attachment.
_PRINT_SCRIPT = """
(function (id, url) {
  document.getElementById(id).addEventListener("click", function () {
    var a = document.createElement("a");
    a.href = url;
    a.setAttribute("download", "");
    a.click();
  });
})
"""


def text(value: str) -> str:
    """Escape for a text node: apostrophes stay readable in the served HTML, as Coupa serves them."""
    return escape(value, quote=False)


def layout(title: str, body: str, *, lang: str = "en", toolbar: bool = True) -> str:
    """A complete page with Coupa's chrome around ``body``."""
    bar = ""
    if toolbar:
        bar = (
            '<div id="toolbar" class="floating-toolbar"><nav>'
            '<a href="/user/home">Home</a><a href="/requisition_headers">Requests</a>'
            '<a href="/order_headers">Orders</a><a href="/invoices">Invoices</a>'
            '<input type="search" placeholder="Search" aria-label="Search"></nav></div>'
        )
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{text(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{bar}<main>{body}</main></body></html>"
    )


def sign_in(return_to: str, error: str | None = None) -> str:
    """Coupa's native sign-in form."""
    message = f'<div class="flash error" role="alert">{text(error)}</div>' if error else ""
    body = (
        f"<h1>Sign in to Coupa</h1>{message}"
        '<form id="login_form" action="/sessions" method="post">'
        f'<input type="hidden" name="return_to" value="{escape(return_to)}">'
        '<label for="user_email">Email</label>'
        '<input id="user_email" name="user[login]" type="text" autocomplete="username"><br>'
        '<label for="user_password">Password</label>'
        '<input id="user_password" name="user[password]" type="password" '
        'autocomplete="current-password"><br>'
        '<button type="submit" id="login_button" name="commit">Sign In</button></form>'
    )
    return layout("Sign In - Coupa", body, toolbar=False)


def idp_sign_in(redirect_uri: str, state: str, error: str | None = None) -> str:
    """The identity provider's own form (different ids than Coupa's, as with Okta or Azure)."""
    message = f'<p class="idp-error" role="alert">{text(error)}</p>' if error else ""
    body = (
        f"<h1>Example Identity</h1><p>Sign in to continue to Coupa</p>{message}"
        '<form id="idp-form" action="/sso/login" method="post">'
        f'<input type="hidden" name="redirect_uri" value="{escape(redirect_uri)}">'
        f'<input type="hidden" name="state" value="{escape(state)}">'
        '<label for="idp-username">Username</label>'
        '<input id="idp-username" name="username" type="text"><br>'
        '<label for="idp-password">Password</label>'
        '<input id="idp-password" name="password" type="password"><br>'
        '<button type="submit" id="idp-submit">Next</button></form>'
    )
    return layout("Sign in - Example Identity", body, toolbar=False)


def home(username: str) -> str:
    """The landing page after sign-in."""
    return layout("Home - Coupa", f"<h1>Welcome back, {text(username)}</h1><p>Your tasks.</p>")


def _fields(rows: list[tuple[str, str]]) -> str:
    return '<dl class="fields">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _lines(seed: int) -> str:
    rows = "".join(
        f"<tr><td>{n}</td><td>Item {seed % 997 + n}</td><td>{(seed + n) % 40 + 1}</td>"
        f"<td>{(seed * n) % 9000 / 10 + 1:.2f} EUR</td></tr>"
        for n in range(1, LINE_ROWS + 1)
    )
    return (
        '<table class="lines"><thead><tr><th>Line</th><th>Item</th><th>Qty</th><th>Price</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _history(seed: int) -> str:
    # Content below the attachments, so that aligning one to the top of the viewport is
    # possible and puts it under the toolbar, as on real pages.
    events = "".join(
        f"<li>Event {n}: {('Approved', 'Sent to supplier', 'Comment added', 'Revised')[(seed + n) % 4]}</li>"
        for n in range(1, HISTORY_ROWS + 1)
    )
    return f'<section id="history"><h2>History</h2><ul>{events}</ul></section>'


def _js(value: object) -> str:
    """A value for inline JavaScript: JSON that cannot close the <script> element."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def _script(function: str, *args: object) -> str:
    """A <script> element that calls one of the functions above with ``args``."""
    return f"<script>{function.strip()}({', '.join(_js(a) for a in args)});</script>"


def _item_data(att: Attachment) -> dict[str, object]:
    return {"name": att.name, "size": att.size, "shape": att.shape.value, "url": att.path}


@dataclass(frozen=True)
class _Markup:
    """The ids, classes and element kinds of one page's attachment list."""

    section: str
    list: str
    link: str
    button: str
    none: str
    button_tag: str = "span"
    label_links: bool = False
    titles: bool = True
    busy: bool = True

    @classmethod
    def of(cls, style: PageStyle, owner: str) -> _Markup:
        if style.markup is Markup.CLASSIC:
            return cls("attachments", "attachment-list", "attachment-link", "attachment-button",
                       "none")
        token = markup_token(owner)
        bits = int(token, 16)
        return cls(
            section=f"s{token}",
            list=f"l{token[::-1]}",
            link=f"k{token[:4]}",
            button=f"k{token[4:]}",
            none=f"n{token[2:6]}",
            button_tag=("span", "div", "button")[bits % 3],
            label_links=bool(bits & 8),
            titles=not bits & 16,
            busy=False,
        )


def _inline_items(atts: tuple[Attachment, ...], markup: _Markup) -> str:
    """The first slice as served HTML, built as the script builds later slices."""
    if not atts:
        return f'<span class="{markup.none}">None</span><ul></ul>'
    items = []
    for att in atts:
        label = escape(att.name + " file attachment")
        if att.shape is Shape.LINK:
            extra = f' aria-label="{label}"' if markup.label_links else ""
            element = f'<a href="{escape(att.path)}" class="{markup.link}"{extra}>{text(att.name)}</a>'
        else:
            tag = markup.button_tag
            role = ' type="button"' if tag == "button" else ' role="button" tabindex="0"'
            title = f' title="{escape(att.name)}"' if markup.titles else ""
            element = (
                f'<{tag}{role} class="{markup.button}" aria-label="{label}"{title}>'
                f"{text(att.name)}</{tag}>"
            )
        items.append(f"<li>{element}<small> ({max(1, round(att.size / 1024))} KB)</small></li>")
    return "<ul>" + "".join(items) + "</ul>"


def _attachment_section(
    base: str, owner: str, attachments: tuple[Attachment, ...], style: PageStyle,
    render_delay: float,
) -> str:
    markup = _Markup.of(style, owner)
    offsets = style.offsets(render_delay)
    parts = slices(attachments, len(offsets))
    embedded: list[list[dict[str, object]] | None] = []
    for n, part in enumerate(parts):
        how = style.arrival if n == 0 else style.growth
        # Only what the page's script renders itself is in the page; requested slices are not.
        requested = how in (Arrival.REQUEST, Arrival.VISIBLE)
        embedded.append(None if requested else [_item_data(a) for a in part])
    config = {
        "list": markup.list,
        "cls": {"link": markup.link, "button": markup.button, "none": markup.none},
        "buttonTag": markup.button_tag,
        "labelLinks": markup.label_links,
        "titles": markup.titles,
        "busy": markup.busy,
        "arrival": style.arrival.value,
        "growth": style.growth.value,
        "offsets": list(offsets),
        "slices": embedded,
        "dataUrl": base + "/attachments.json",
    }
    if style.arrival is Arrival.INLINE:
        body = _inline_items(parts[0], markup)
    elif markup.busy:
        body = '<span class="loading">Loading…</span>'
    else:
        body = ""
    busy = ' aria-busy="true"' if markup.busy else ""
    beside = "".join(_decoy_beside_list(base, decoy) for decoy in style.decoys)
    return (
        f'<section id="{markup.section}"><h2>Attachments</h2>'
        f'<div id="{markup.list}"{busy}>{body}</div>{beside}'
        f"</section>{_script(_ATTACHMENTS_SCRIPT, config)}"
    )


def _decoy_beside_list(base: str, decoy: Decoy) -> str:
    if decoy is Decoy.DOWNLOAD_ALL:
        return f'<p><a class="bulk" href="{base}/{DECOY_FILES[decoy]}">Download all</a></p>'
    if decoy is Decoy.TERMS_PDF:
        return (
            f'<p>Terms: <a href="{base}/{DECOY_FILES[decoy]}">Terms and conditions.pdf</a></p>'
        )
    return ""


def _actions(base: str, style: PageStyle) -> str:
    """The export links every PO page has, and the style's decoys among them."""
    links = [
        f'<a class="export" href="{base}/print.pdf">Export to PDF</a>',
        f'<a class="export" href="{base}/export.csv">Download</a>',
    ]
    scripts = ""
    if Decoy.EXPORT_XLSX in style.decoys:
        links.append(
            f'<a class="export" href="{base}/{DECOY_FILES[Decoy.EXPORT_XLSX]}" download>'
            "Download as Excel</a>"
        )
    if Decoy.PRINT_BUTTON in style.decoys:
        links.append(
            '<span id="print-order" role="button" tabindex="0" aria-label="Print this order" '
            'title="Print">Print</span>'
        )
        scripts = _script(_PRINT_SCRIPT, "print-order", f"{base}/print.pdf")
    return f'<div class="actions">{" | ".join(links)}</div>{scripts}'


def _noise(style: PageStyle) -> str:
    parts = []
    if Noise.TICKER in style.noise:
        parts.append('<p class="refreshed" id="refreshed">Last refreshed just now</p>')
        parts.append(_script(_TICKER_SCRIPT, "refreshed"))
    if Noise.LONG_TIMER in style.noise:
        parts.append('<div class="banner warning" id="session-warning" hidden></div>')
        parts.append(_script(_LONG_TIMER_SCRIPT, "session-warning"))
    return "".join(parts)


def purchase_order(po: PurchaseOrder, render_delay: float = 0.0) -> str:
    """The PO page; its attachments arrive as its page style says (see PageStyle)."""
    base = f"/order_headers/{po.digits}"
    banner = f'<div class="banner info" role="status">{text(po.banner)}</div>' if po.banner else ""
    rows = [
        ("PO Number", text(po.digits)),
        ("Status", "Issued"),
        ("Supplier", f'<span class="supplier-name">{text(po.supplier or "")}</span>'),
    ]
    if po.requisition:
        req = text(po.requisition)
        rows.append(("Requisition", f'<a href="/requisition_headers/{req}">Requisition #{req}</a>'))
    section = _attachment_section(base, po.digits, po.attachments, po.page, render_delay)
    body = (
        f"<h1>Purchase Order #{text(po.digits)}</h1>{banner}{_noise(po.page)}"
        f"{_actions(base, po.page)}"
        f"{_fields(rows)}{_lines(int(po.digits))}{section}{_history(int(po.digits))}"
    )
    return layout(f"Purchase Order #{po.digits} - Coupa", body)


def requisition(req: Requisition, render_delay: float = 0.0) -> str:
    """The requisition page, structured like the PO page."""
    base = f"/requisition_headers/{req.id}"
    section = _attachment_section(base, "R" + req.id, req.attachments, req.page, render_delay)
    decoys = _actions(base, req.page) if req.page.decoys else ""
    body = (
        f"<h1>Requisition #{text(req.id)}</h1>{_noise(req.page)}{decoys}"
        f"{_fields([('Requisition', text(req.id)), ('Status', 'Ordered')])}"
        f"{_lines(int(req.id))}{section}{_history(int(req.id))}"
    )
    return layout(f"Requisition #{req.id} - Coupa", body)


def error(page: ErrorPage) -> str:
    """A Coupa error page; it is served with HTTP 200, as Coupa does."""
    lang, headline, detail = _ERROR_TEXT[page]
    body = f'<div class="error-page"><h1>{text(headline)}</h1><p>{text(detail)}</p></div>'
    return layout(headline, body, lang=lang)


def throttled() -> str:
    """The throttling page (served as HTTP 429, or as HTTP 200 by the throttle-page trouble)."""
    body = (
        f'<div class="error-page throttled"><h1>Too Many Requests</h1><p>{THROTTLE_TEXT}.</p></div>'
    )
    return layout("Too Many Requests", body, toolbar=False)


def download_refused(status: int) -> str:
    """What a broken attachment's download URL answers (404 or 403), every time."""
    message = "The file you requested could not be found." if status == 404 else (
        "You do not have permission to download this file."
    )
    return layout(f"{status} Error", f"<h1>{text(message)}</h1>", toolbar=False)


def server_error(status: int) -> str:
    """An HTML 5xx page."""
    message = SERVER_ERROR_TEXT.get(status, "Server error")
    return layout(f"{status} Error", f"<h1>{text(message)}</h1>", toolbar=False)
