"""Outlook .msg to PDF (coupad.msg): content, hostile mails, bad files, bounds and restarts.

One warm converter serves the module. Its browser runs with Local Network Access checks off,
as the daemon's never needs to: otherwise Chromium itself would silently block the fetches
this module counts, and a count of zero would prove nothing.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from util import wait_until

from coupad.browser.launch import BROWSER_MARK
from coupad.msg import (
    NOT_INSTALLED,
    Converter,
    ConvertResult,
    Reader,
    Renderer,
    Unconvertible,
    pdf_name,
)
from coupad.msg import reader as reader_module
from coupad.msg.sanitize import clean_html
from coupad.sim.mails import PNG_1X1, Attachment, Mail, big_compressed_rtf, rtf_from_html, write_msg

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

LNA_OFF = ("--disable-features=LocalNetworkAccessChecks",)
UNICODE_SUBJECT = "Überprüfung façade 発注書の承認 אישור הזמנה"
BIDI_MARKS = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


@pytest.fixture(scope="module")
def converter() -> Iterator[Converter]:
    with Converter(Reader(), Renderer(extra_flags=LNA_OFF)) as warm:
        yield warm


class Listener:
    """A loopback HTTP listener that counts every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.paths: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2)
                try:
                    request = conn.recv(4096).decode("latin-1")
                    self.paths.append(request.split(" ")[1] if " " in request else "?")
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    counting = Listener()
    yield counting
    counting.close()


def pdf_text(pdf: Path) -> str:
    done = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True,
                          text=True, timeout=30, check=True)
    return " ".join(done.stdout.translate(BIDI_MARKS).split())


def converted(converter: Converter, msg: Path) -> tuple[ConvertResult, str]:
    result = converter.convert(msg, msg.with_name(pdf_name(msg)))
    assert result.ok, result.reason
    assert result.pdf.read_bytes().startswith(b"%PDF-")
    assert result.sha256 == hashlib.sha256(result.pdf.read_bytes()).hexdigest()
    assert result.size == result.pdf.stat().st_size
    return result, pdf_text(result.pdf)


def three_attachments() -> list[Attachment]:
    return [
        Attachment("quote-2024.pdf", b"%PDF-1.4 not really", "application/pdf"),
        Attachment("prices.xlsx", b"PK\x03\x04" + bytes(100), "application/vnd.ms-excel"),
        Attachment("notes.txt", b"plain notes", "text/plain"),
    ]


def assert_shows(text: str, *needles: str) -> None:
    for needle in needles:
        assert " ".join(needle.split()) in text, f"{needle!r} not in the PDF's text: {text[:600]}"


# ---- what the PDF shows -------------------------------------------------------------------


def test_html_body_with_inline_image_and_three_attachments(converter, tmp_path):
    html = (
        '<html><head><style>p.x { color: #123456 }</style></head><body>'
        '<p class="x">Please approve the attached quote.</p>'
        '<img src="cid:logo@coupad" alt="logo"></body></html>'
    )
    attachments = [*three_attachments(), Attachment("logo.png", PNG_1X1, "image/png", "logo@coupad")]
    msg = write_msg(tmp_path / "approval.msg", Mail(
        subject="Approval for PO15262984", html=html, attachments=attachments,
        cc=[("Carol Controller", "carol@example.com")],
    ))
    original = msg.read_bytes()
    result, text = converted(converter, msg)
    assert result.pdf == tmp_path / "approval.msg.pdf"
    assert_shows(text, "Approval for PO15262984", "Ada Sender <ada@example.com>",
                 "Bob Buyer", "Carol Controller", "2024-05-06",
                 "Please approve the attached quote.",
                 "quote-2024.pdf", "prices.xlsx", "notes.txt", "logo.png")
    assert msg.read_bytes() == original
    images = subprocess.run(["pdfimages", "-list", str(result.pdf)], capture_output=True,
                            text=True, timeout=30, check=True).stdout.splitlines()[2:]
    assert len(images) >= 1, "the inline image is missing from the PDF"


def test_plain_body_is_text_not_markup(converter, tmp_path):
    body = "Line one of the plain body.\n<b>not bold</b> & <script>not run</script>\nLine three."
    msg = write_msg(tmp_path / "plain.msg", Mail(subject="Plain mail", plain=body,
                                                 attachments=three_attachments()))
    _, text = converted(converter, msg)
    assert_shows(text, "Plain mail", "Ada Sender", "Line one of the plain body.",
                 "<b>not bold</b> & <script>not run</script>", "Line three.",
                 "quote-2024.pdf", "prices.xlsx", "notes.txt")


def test_rtf_only_body_is_recovered_as_html(converter, tmp_path):
    rtf = rtf_from_html("<html><body><p>Only RTF holds this body: déjà vu.</p></body></html>")
    msg = write_msg(tmp_path / "rtf.msg", Mail(subject="RTF mail", rtf=rtf,
                                               attachments=three_attachments()))
    _, text = converted(converter, msg)
    assert_shows(text, "RTF mail", "Ada Sender", "Only RTF holds this body: déjà vu.",
                 "quote-2024.pdf", "prices.xlsx", "notes.txt")


def test_nested_message_follows_the_mail(converter, tmp_path):
    inner = Mail(subject="Original quote from supplier", sender_name="Sam Supplier",
                 sender_address="sam@supplier.example", plain="Our price is 42 EUR.",
                 attachments=[Attachment("inner-terms.pdf", b"%PDF-1.4", "application/pdf")])
    msg = write_msg(tmp_path / "forward.msg", Mail(
        subject="FW: quote", html="<p>See the mail below.</p>",
        attachments=[*three_attachments(), Attachment("quote.msg", message=inner)],
    ))
    _, text = converted(converter, msg)
    assert_shows(text, "FW: quote", "See the mail below.", "quote.msg", "notes.txt",
                 "Attached message: quote.msg", "Original quote from supplier",
                 "Sam Supplier <sam@supplier.example>", "Our price is 42 EUR.", "inner-terms.pdf")
    assert text.index("See the mail below.") < text.index("Our price is 42 EUR.")


def test_unicode_subject_and_body_accents_cjk_rtl(converter, tmp_path):
    body = "<p>Grüße aus Zürich. 請確認此訂單。 נא לאשר את ההזמנה.</p>"
    msg = write_msg(tmp_path / "unicode.msg", Mail(
        subject=UNICODE_SUBJECT, sender_name="Zoë Ōtani", html=body,
        attachments=[*three_attachments(), Attachment("見積書.pdf", b"%PDF", "application/pdf")],
    ))
    _, text = converted(converter, msg)
    assert_shows(text, "Überprüfung façade", "発注書の承認", "Zoë Ōtani", "Grüße aus Zürich.",
                 "請確認此訂單。", "見積書.pdf", "quote-2024.pdf")
    # pdftotext gives right-to-left words in reading order or reversed; either is readable.
    for word in ("אישור", "הזמנה", "לאשר"):
        assert word in text or word[::-1] in text, word


# ---- hostile mails ------------------------------------------------------------------------


def hostile_html(port: int, secret: Path) -> str:
    local = f"http://127.0.0.1:{port}"
    return f"""<html><head>
<meta http-equiv="refresh" content="0;url={local}/refresh">
<base href="{local}/base/">
<link rel="stylesheet" href="{local}/link.css"><link rel="stylesheet" href="file://{secret}">
<link rel="prefetch" href="{local}/prefetch"><link rel="icon" href="{local}/icon">
<style>@import url("{local}/import.css"); @import "{local}/import2.css";
@font-face {{ font-family: evil; src: url({local}/font.woff); }}
body {{ background: url('{local}/background.png'); font-family: evil; }}
.set {{ background-image: image-set("{local}/set.png" 1x); }}
.esc {{ background: u\\72l({local}/escaped.png); }}</style>
<script>fetch("{local}/script"); document.write("SCRIPT RAN");</script>
<script src="{local}/script.js"></script>
</head><body onload="fetch('{local}/onload')" background="{local}/body-background">
<p>Hostile body text stays readable.</p>
<img src="{local}/remote.png"><img src="relative-to-base.png">
<img src="http://localhost:{port}/by-name.png"><img src="http://remote.example/x.png">
<img srcset="{local}/srcset.png 1x"><img src="x" onerror="fetch('{local}/onerror')">
<img src="file://{secret}" alt="local file">
<picture><source srcset="{local}/picture.png"><img src="data:,"></picture>
<iframe src="{local}/iframe"></iframe><iframe src="file://{secret}"></iframe>
<iframe srcdoc="&lt;img src={local}/srcdoc&gt;"></iframe>
<object data="{local}/object"></object><object data="file://{secret}"></object>
<embed src="{local}/embed"><video poster="{local}/poster" src="{local}/video"></video>
<audio src="{local}/audio"></audio>
<svg><image href="{local}/svg-image"/><use href="{local}/svg-use#x"/></svg>
<table background="{local}/table-background"><tr><td style="background:url({local}/td)">cell</td></tr></table>
<div class="set esc" style="background-image: url('{local}/inline-style.png')">styled</div>
<form action="{local}/form"><input type="image" src="{local}/input-image"></form>
<a href="{local}/link-not-followed">a link</a> <a href="javascript:fetch('{local}/js')">js</a>
</body></html>"""


def test_hostile_mail_makes_zero_fetches_and_reads_nothing_local(converter, listener, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("LOCAL-SECRET-7f3a9 must never reach a PDF\n")
    html = hostile_html(listener.port, secret)
    msg = write_msg(tmp_path / "hostile.msg", Mail(
        subject='<script>alert(1)</script> Hostile "subject"', html=html,
        attachments=three_attachments(),
    ))
    original = msg.read_bytes()
    result, text = converted(converter, msg)
    assert_shows(text, '<script>alert(1)</script> Hostile "subject"',
                 "Hostile body text stays readable.", "cell", "styled", "notes.txt")
    assert "LOCAL-SECRET" not in text
    assert b"LOCAL-SECRET" not in result.pdf.read_bytes()
    assert "SCRIPT RAN" not in text
    assert msg.read_bytes() == original
    # The browser has finished the document; a fetch it started would have connected by now.
    # Render a second mail to be sure nothing was still in flight from the first.
    converted(converter, write_msg(tmp_path / "after.msg", Mail(plain="after")))
    assert listener.connections == 0, listener.paths


def test_the_hostile_mail_would_fetch_from_the_listener_without_the_protections(listener, tmp_path):
    """The control: an ordinary headless Chromium opening the same HTML reaches the listener."""
    page = tmp_path / "hostile.html"
    page.write_text(hostile_html(listener.port, tmp_path / "secret.txt"))
    profile = tmp_path / "profile"
    chromium = subprocess.Popen(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", *LNA_OFF,
         f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_until(lambda: listener.connections >= 3, timeout=30)
    finally:
        os.killpg(chromium.pid, 9)
        chromium.wait(timeout=30)


def test_sanitiser_keeps_text_escaped_and_drops_active_markup():
    cleaned = clean_html(
        '<p onclick="x()">a &lt;b&gt; <b>bold</b></p><script>s()</script><iframe>in</iframe>'
        '<img src="cid:ID@X"><img src="http://h/x.png" alt="remote"><o:p>word</o:p>'
        '<a href="javascript:x()">j</a><a href="https://example.com/">w</a>',
        {"id@x": "data:image/png;base64,AAAA"},
    )
    assert cleaned == (
        '<p>a &lt;b&gt; <b>bold</b></p><img src="data:image/png;base64,AAAA">[remote]word'
        '<a>j</a><a href="https://example.com/">w</a>'
    )


# ---- files that give no PDF ---------------------------------------------------------------


def assert_refused(converter: Converter, msg: Path, reason: str) -> None:
    original = msg.read_bytes()
    pdf = msg.with_name(pdf_name(msg))
    result = converter.convert(msg, pdf)
    assert not result.ok
    assert result.reason is not None and reason in result.reason, result.reason
    assert msg.read_bytes() == original
    assert sorted(p.name for p in msg.parent.iterdir() if p.name.startswith(pdf.name)
                  or p.name.startswith(f".{pdf.name}")) == []


def test_truncated_file_gives_a_reason_and_no_pdf(converter, tmp_path):
    whole = write_msg(tmp_path / "whole.msg", Mail(html="<p>x</p>" * 2000,
                                                   attachments=three_attachments()))
    data = whole.read_bytes()
    for cut in (len(data) // 2, 4096, 100):
        truncated = tmp_path / f"cut-{cut}.msg"
        truncated.write_bytes(data[:cut])
        assert_refused(converter, truncated, "damaged")


def test_a_file_that_is_not_ole_gives_a_reason_and_no_pdf(converter, tmp_path):
    fake = tmp_path / "not-a-mail.msg"
    fake.write_text("From: someone\nSubject: this is an .eml named .msg\n\nhello\n")
    assert_refused(converter, fake, "not an Outlook .msg file")


def test_a_20_mb_body_is_refused_and_the_worker_goes_on(converter, tmp_path):
    huge = write_msg(tmp_path / "huge.msg", Mail(rtf_compressed=big_compressed_rtf(20 << 20)))
    assert_refused(converter, huge, "the RTF body is too large to render (20.0 MB")
    converted(converter, write_msg(tmp_path / "next.msg", Mail(plain="the next mail")))


def test_an_html_body_above_the_limit_is_refused(converter, tmp_path):
    big = write_msg(tmp_path / "big.msg", Mail(html="<p>" + "big body " * (3 << 17) + "</p>"))
    assert_refused(converter, big, "the HTML body is too large to render (3.4 MB; the limit is 2.0 MB)")


def test_without_extract_msg_no_pdf_and_the_reason_says_how_to_install(converter, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(reader_module, "installed", lambda: False)
    msg = write_msg(tmp_path / "a.msg", Mail(plain="x"))
    assert_refused(converter, msg, NOT_INSTALLED)


# ---- bounds, restarts, processes ----------------------------------------------------------


def test_a_render_time_out_restarts_the_renderer(converter, tmp_path):
    renderer = converter.renderer
    converted(converter, write_msg(tmp_path / "warm.msg", Mail(plain="warm")))
    first = renderer.pid
    assert first is not None
    big = write_msg(tmp_path / "slow.msg", Mail(html="<div>" + "<p>page filler</p>" * 40000))
    renderer.timeout = 0.05
    try:
        assert_refused(converter, big, "rendering took longer than 0.05 s")
    finally:
        renderer.timeout = 30.0
    assert renderer.pid is None and not psutil.pid_exists(first)
    converted(converter, write_msg(tmp_path / "again.msg", Mail(plain="again")))
    assert renderer.pid not in (None, first)


def test_a_renderer_killed_between_mails_is_replaced(converter, tmp_path):
    converted(converter, write_msg(tmp_path / "one.msg", Mail(plain="one")))
    pid = converter.renderer.pid
    assert pid is not None
    os.killpg(pid, 9)
    wait_until(lambda: converter.renderer._process is not None
               and converter.renderer._process.poll() is not None, timeout=10)
    converted(converter, write_msg(tmp_path / "two.msg", Mail(plain="two")))
    assert converter.renderer.pid not in (None, pid)


def test_too_much_renderer_memory_fails_the_mail_and_restarts(converter, tmp_path):
    renderer = converter.renderer
    converted(converter, write_msg(tmp_path / "warm.msg", Mail(plain="warm")))
    limit, renderer.memory_limit = renderer.memory_limit, 1 << 20
    try:
        assert_refused(converter, write_msg(tmp_path / "m.msg", Mail(plain="m")),
                       "rendering needed more than 1 MB")
    finally:
        renderer.memory_limit = limit
    assert renderer.pid is None
    converted(converter, write_msg(tmp_path / "after.msg", Mail(plain="after")))


def test_a_reader_time_out_kills_the_reader_and_the_next_mail_reads(converter, tmp_path):
    reader = converter.reader
    rtf = rtf_from_html("<p>" + "slow paragraph\\par " * 3000 + "</p>")
    slow = write_msg(tmp_path / "slow-rtf.msg", Mail(rtf=rtf))
    child = reader._child
    reader.timeout = 0.01
    try:
        assert_refused(converter, slow, "reading the mail took longer than 0.01 s")
    finally:
        reader.timeout = 30.0
    assert reader._child is None
    assert child is None or child.poll() is not None
    converted(converter, write_msg(tmp_path / "next.msg", Mail(plain="next")))


def test_unconvertible_is_raised_by_the_reader_itself(tmp_path):
    fake = tmp_path / "x.msg"
    fake.write_bytes(b"\0" * 600)
    reader = Reader()
    try:
        with pytest.raises(Unconvertible, match="not an Outlook .msg file"):
            reader.read(fake)
    finally:
        reader.close()


def test_close_leaves_no_process_and_no_profile(tmp_path):
    renderer = Renderer(profile_dir=tmp_path / "profiles")
    try:
        renderer.render("<p>x</p>")
        pid = renderer.pid
        assert pid is not None
        family = [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
        assert len(family) > 1
    finally:
        renderer.close()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in family)
    marked = []
    for process in psutil.process_iter():
        try:
            if str(tmp_path) in process.environ().get(BROWSER_MARK, ""):
                marked.append(process.pid)
        except psutil.Error:
            pass
    assert marked == []
    assert list((tmp_path / "profiles").iterdir()) == []


def test_a_reader_killed_between_mails_is_replaced(converter, tmp_path):
    converted(converter, write_msg(tmp_path / "one.msg", Mail(plain="one")))
    child = converter.reader._child
    assert child is not None
    child.kill()
    child.wait(timeout=10)
    converted(converter, write_msg(tmp_path / "two.msg", Mail(plain="two")))
    assert converter.reader._child not in (None, child)
