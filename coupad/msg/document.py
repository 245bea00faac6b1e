"""The HTML document the renderer prints: the mail's headers, attachment list, body, nested mails.

Every value from the mail is escaped; the body goes through :func:`clean_html` (or, plain,
into a ``<pre>``); inline images become ``data:`` URIs. The Content-Security-Policy comes
first in ``<head>``, before anything from the mail, so that nothing — not even what the
sanitiser might miss — may load from anywhere but ``data:``, and no script may run.
"""

from __future__ import annotations

import base64
import html

from coupad.msg.message import Message
from coupad.msg.sanitize import clean_html

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"

# Droid Sans Fallback (Debian's fonts-droid-fallback) covers CJK where DejaVu has no glyphs.
STYLE = """
@page { size: A4; margin: 14mm 12mm; }
body { font-family: "DejaVu Sans", "Liberation Sans", "Droid Sans Fallback", sans-serif;
       font-size: 10.5pt; color: #000; margin: 0; }
table.coupad-headers { border-collapse: collapse; margin-bottom: 10pt; width: 100%; }
table.coupad-headers th { text-align: left; vertical-align: top; padding: 1pt 8pt 1pt 0;
       white-space: nowrap; color: #444; font-weight: bold; width: 1%; }
table.coupad-headers td { padding: 1pt 0; overflow-wrap: anywhere; }
.coupad-subject { font-size: 14pt; font-weight: bold; margin: 0 0 6pt 0; }
.coupad-rule { border: 0; border-top: 1px solid #888; margin: 6pt 0 10pt 0; }
pre.coupad-plain { white-space: pre-wrap; overflow-wrap: anywhere; font-family: inherit; }
.coupad-nested { break-before: page; }
.coupad-note { color: #666; font-style: italic; }
img { max-width: 100%; }
"""


def build_document(message: Message) -> str:
    """The whole document for ``message``, nested mails after it."""
    parts = [
        "<!DOCTYPE html><html><head>",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta charset="utf-8">',
        f"<title>{_e(message.subject)}</title>",
        f"<style>{STYLE}</style>",
        "</head><body>",
        _mail(message),
        "</body></html>",
    ]
    return "".join(parts)


def _mail(message: Message, attached_as: str | None = None) -> str:
    parts = []
    if attached_as is not None:
        parts.append(
            f'<div class="coupad-nested"><p class="coupad-note">Attached message: '
            f"{_e(attached_as)}</p>"
        )
    parts.append(f'<p class="coupad-subject" dir="auto">{_e(message.subject or "(no subject)")}</p>')
    parts.append('<table class="coupad-headers">')
    rows = [
        ("From", message.sender),
        ("To", message.to),
        ("Cc", message.cc),
        ("Date", message.date.strftime("%Y-%m-%d %H:%M %Z").strip() if message.date else ""),
        ("Subject", message.subject),
    ]
    for label, value in rows:
        if value:
            parts.append(f'<tr><th>{label}</th><td dir="auto">{_e(value)}</td></tr>')
    if message.attachments:
        names = "<br>".join(
            f"{_e(a.name)}" + (f" ({_size(a.size)})" if a.size else "") for a in message.attachments
        )
        parts.append(f'<tr><th>Attachments</th><td dir="auto">{names}</td></tr>')
    parts.append('</table><hr class="coupad-rule">')
    parts.append(_body(message))
    for note in message.notes:
        parts.append(f'<p class="coupad-note">{_e(note)}</p>')
    for name, nested in message.nested:
        parts.append(_mail(nested, attached_as=name))
    if attached_as is not None:
        parts.append("</div>")
    return "".join(parts)


def _body(message: Message) -> str:
    if message.html is not None:
        images = {
            image.content_id: f"data:{image.mimetype};base64,"
            + base64.b64encode(image.data).decode("ascii")
            for image in message.images
            if image.mimetype in ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
        }
        # The mail's own markup sits in a div of its own: unclosed tags end with it.
        return f'<div class="coupad-body" dir="auto">{clean_html(message.html, images)}</div>'
    if message.text is not None:
        return f'<pre class="coupad-plain" dir="auto">{_e(message.text)}</pre>'
    return '<p class="coupad-note">(the mail has no body)</p>'


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1 << 20:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1 << 20):.1f} MB"
