"""The HTML of the simulated tenant and identity provider, built from the catalogue.

Pages look like Coupa where it matters to a client: a fixed toolbar that covers the top of
the viewport, the supplier in a labelled field, decoy export links, and an attachment list
that the page's own JavaScript fetches and renders after the page has loaded. Every value
from the catalogue is escaped; names are put into the DOM with ``textContent``.
"""

from __future__ import annotations

import json
from html import escape

from coupad.sim.catalogue import ErrorPage, PurchaseOrder, Requisition

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

# The attachment list is loaded like Coupa loads it: by a request after the page is shown.
# Button-style attachments keep their URL in a closure; it never enters the DOM.
_ATTACHMENTS_SCRIPT = """
(function () {
  var list = document.getElementById("attachment-list");
  function download(url) {
    var a = document.createElement("a");
    a.href = url;
    a.setAttribute("download", "");
    a.click();
  }
  function render(data) {
    list.textContent = "";
    if (!data.attachments.length) {
      var none = document.createElement("span");
      none.className = "none";
      none.textContent = "None";
      list.appendChild(none);
    }
    var ul = document.createElement("ul");
    data.attachments.forEach(function (att) {
      var li = document.createElement("li");
      var el;
      if (att.shape === "link") {
        el = document.createElement("a");
        el.href = att.url;
        el.className = "attachment-link";
      } else {
        el = document.createElement("span");
        el.setAttribute("role", "button");
        el.tabIndex = 0;
        el.className = "attachment-button";
        el.setAttribute("aria-label", att.name + " file attachment");
        el.title = att.name;
        var url = att.url;
        el.addEventListener("click", function () { download(url); });
        el.addEventListener("keydown", function (event) {
          if (event.key === "Enter" || event.key === " ") { download(url); }
        });
      }
      el.textContent = att.name;
      li.appendChild(el);
      var size = document.createElement("small");
      size.textContent = " (" + Math.max(1, Math.round(att.size / 1024)) + " KB)";
      li.appendChild(size);
      ul.appendChild(li);
    });
    list.appendChild(ul);
    list.setAttribute("aria-busy", "false");
  }
  fetch(DATA_URL, {credentials: "same-origin", redirect: "manual",
                   headers: {"Accept": "application/json"}})
    .then(function (response) {
      if (response.type === "opaqueredirect") {
        location.assign("/sessions/new?return_to=" + encodeURIComponent(location.pathname));
        return null;
      }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    })
    .then(function (data) { if (data) { render(data); } })
    .catch(function () {
      list.textContent = "Attachments could not be loaded.";
      list.setAttribute("aria-busy", "false");
    });
})();
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


def _attachment_section(data_url: str) -> str:
    return (
        '<section id="attachments"><h2>Attachments</h2>'
        '<div id="attachment-list" aria-busy="true"><span class="loading">Loading…</span></div>'
        f"</section><script>var DATA_URL = {json.dumps(data_url)};{_ATTACHMENTS_SCRIPT}</script>"
    )


def purchase_order(po: PurchaseOrder) -> str:
    """The PO page; the attachments arrive later from ``attachments.json``."""
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
    body = (
        f"<h1>Purchase Order #{text(po.digits)}</h1>{banner}"
        f'<div class="actions"><a class="export" href="{base}/print.pdf">Export to PDF</a> | '
        f'<a class="export" href="{base}/export.csv">Download</a></div>'
        f"{_fields(rows)}{_lines(int(po.digits))}{_attachment_section(base + '/attachments.json')}"
        f"{_history(int(po.digits))}"
    )
    return layout(f"Purchase Order #{po.digits} - Coupa", body)


def requisition(req: Requisition) -> str:
    """The requisition page, structured like the PO page."""
    base = f"/requisition_headers/{req.id}"
    body = (
        f"<h1>Requisition #{text(req.id)}</h1>"
        f"{_fields([('Requisition', text(req.id)), ('Status', 'Ordered')])}"
        f"{_lines(int(req.id))}{_attachment_section(base + '/attachments.json')}{_history(int(req.id))}"
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


def server_error(status: int) -> str:
    """An HTML 5xx page."""
    message = SERVER_ERROR_TEXT.get(status, "Server error")
    return layout(f"{status} Error", f"<h1>{text(message)}</h1>", toolbar=False)
