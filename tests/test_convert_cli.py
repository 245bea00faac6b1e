"""`coupad convert`: one line per file, PDFs beside the mails or in --out, exit 1 on any failure."""

from __future__ import annotations

import subprocess
import sys

import pytest

from coupad.sim.mails import Attachment, Mail, write_msg

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def coupad(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coupad", *args], capture_output=True,
                          text=True, timeout=90)


def test_convert_writes_pdfs_to_out_and_fails_for_a_bad_file(tmp_path):
    good = write_msg(tmp_path / "approval.msg", Mail(subject="Approved", plain="ok",
                                                     attachments=[Attachment("a.txt", b"a")]))
    bad = tmp_path / "not-a-mail.msg"
    bad.write_text("plain text, not OLE")
    before = bad.read_bytes(), good.read_bytes()
    done = coupad("convert", str(good), str(bad), "--out", str(tmp_path / "pdfs"))
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{good}: OK {tmp_path / 'pdfs' / 'approval.msg.pdf'} (")
    assert lines[1] == f"{bad}: FAILED not an Outlook .msg file (no OLE2 container)"
    assert (tmp_path / "pdfs" / "approval.msg.pdf").read_bytes().startswith(b"%PDF-")
    assert sorted(p.name for p in (tmp_path / "pdfs").iterdir()) == ["approval.msg.pdf"]
    assert (bad.read_bytes(), good.read_bytes()) == before


def test_convert_writes_beside_the_mail_and_exits_0(tmp_path):
    mail = write_msg(tmp_path / "quote.msg", Mail(html="<p>quote</p>"))
    done = coupad("convert", str(mail))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "quote.msg.pdf").read_bytes().startswith(b"%PDF-")
