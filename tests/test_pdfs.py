"""PDFs of the mails in a final PO folder (coupad.pdfs): idempotent, crash-safe, listed.

A scripted converter stands in for the locked-down Chromium here, so that every moment of
the folder's life can be set up exactly; test_daemon_pdfs.py runs the real one end to end.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from coupad import pdfs
from coupad.durable import atomic_write
from coupad.folders import MANIFEST, PoFolder
from coupad.msg import ConvertResult
from coupad.pdfs import GONE, FolderJob, PdfMaker
from coupad.ponumber import PoNumber
from coupad.records import FileRecord, PdfRecord
from coupad.states import PdfState
from util import wait_until

PO = PoNumber("15262984")
NOT_OLE = "not an Outlook .msg file (no OLE2 container)"


class ScriptedConverter:
    """Writes a small PDF of any mail but those named in ``refuse``; counts its calls."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.calls: list[str] = []
        self.closed = 0
        self.renderer = type("NoRenderer", (), {"pid": None})()

    def convert(self, msg: Path, pdf: Path) -> ConvertResult:
        self.calls.append(msg.name)
        if msg.name in self.refuse:
            return ConvertResult(msg, pdf, False, NOT_OLE)
        data = b"%PDF-1.4 of " + msg.read_bytes()
        atomic_write(pdf, lambda stream: stream.write(data))
        return ConvertResult(msg, pdf, True, None, len(data), hashlib.sha256(data).hexdigest())

    def close(self) -> None:
        self.closed += 1


def final_folder(root: Path, files: dict[str, bytes]) -> Path:
    folder = PoFolder.open(root, PO)
    for name, data in files.items():
        staged = folder.staging_dir("t") / "part"
        staged.write_bytes(data)
        folder.add_file(staged, name, f"https://t/{name}", "po", f"po:{name}")
    return folder.finalize("COMPLETED")


def listed(folder: Path) -> dict[str, dict[str, Any]]:
    document = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert document["status"] == "COMPLETED"
    return {f["name"]: f for f in document["files"]}


def test_a_pdf_beside_each_mail_listed_as_derived_and_a_reason_for_the_other(tmp_path):
    folder = final_folder(tmp_path, {"a.msg": b"mail a", "b.msg": b"not a mail", "q.pdf": b"q"})
    converter = ScriptedConverter(refuse=frozenset({"b.msg"}))
    made = pdfs.make(folder, PO, ["a.msg", "b.msg"], converter)
    assert made["a.msg"].pdf is not None and made["a.msg"].pdf.name == "a.msg.pdf"
    assert made["b.msg"].pdf is None and made["b.msg"].reason == NOT_OLE
    files = listed(folder)
    pdf = (folder / "a.msg.pdf").read_bytes()
    assert files["a.msg.pdf"]["derived_from"] == "a.msg"
    assert files["a.msg.pdf"]["size"] == len(pdf)
    assert files["a.msg.pdf"]["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert files["a.msg.pdf"]["source"] == "derived"
    assert files["b.msg"]["pdf_error"] == NOT_OLE and "pdf_error" not in files["a.msg"]
    assert (folder / "b.msg").read_bytes() == b"not a mail"  # the mail is never touched
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MANIFEST, "a.msg", "a.msg.pdf", "b.msg", "q.pdf"])
    record = PdfRecord(1, PO.digits, "a.msg", PdfState.PENDING)
    assert made["a.msg"].record(record).state is PdfState.MADE
    assert made["b.msg"].record(record).reason == NOT_OLE


def test_a_pdf_already_listed_and_intact_is_not_made_again(tmp_path):
    folder = final_folder(tmp_path, {"a.msg": b"mail a"})
    converter = ScriptedConverter()
    first = pdfs.make(folder, PO, ["a.msg"], converter)
    again = pdfs.make(folder, PO, ["a.msg"], converter)
    assert converter.calls == ["a.msg"]
    assert again["a.msg"].pdf == first["a.msg"].pdf
    assert len([n for n in listed(folder) if n.endswith(".pdf")]) == 1


def test_a_pdf_written_but_not_listed_before_a_crash_is_made_again_once(tmp_path):
    # The moments a kill -9 may leave: the PDF renamed into place but the manifest not yet
    # rewritten, and the temporary file of a write that never reached its rename.
    folder = final_folder(tmp_path, {"a.msg": b"mail a"})
    (folder / "a.msg.pdf").write_bytes(b"%PDF-1.4 from before the crash")
    (folder / ".a.msg.pdf.0badc0de.tmp").write_bytes(b"%PDF-1.4 half")
    made = pdfs.make(folder, PO, ["a.msg"], ScriptedConverter())
    assert made["a.msg"].pdf is not None and made["a.msg"].pdf.name == "a.msg.pdf"
    assert (folder / "a.msg.pdf").read_bytes() == b"%PDF-1.4 of mail a"
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, "a.msg", "a.msg.pdf"])


def test_a_listed_pdf_whose_bytes_changed_is_made_again(tmp_path):
    folder = final_folder(tmp_path, {"a.msg": b"mail a"})
    converter = ScriptedConverter()
    pdfs.make(folder, PO, ["a.msg"], converter)
    pdf = folder / "a.msg.pdf"
    pdf.write_bytes(bytes(len(pdf.read_bytes())))  # same size, other bytes
    pdfs.make(folder, PO, ["a.msg"], converter)
    assert converter.calls == ["a.msg", "a.msg"]
    assert pdf.read_bytes() == b"%PDF-1.4 of mail a"
    assert listed(folder)["a.msg.pdf"]["sha256"] == hashlib.sha256(pdf.read_bytes()).hexdigest()


def test_a_coupa_file_named_like_the_pdf_keeps_its_name_and_the_pdf_gets_another(tmp_path):
    folder = final_folder(tmp_path, {"a.msg": b"mail a", "a.msg.pdf": b"Coupa's own file"})
    made = pdfs.make(folder, PO, ["a.msg"], ScriptedConverter())
    assert made["a.msg"].pdf is not None and made["a.msg"].pdf.name == "a.msg (2).pdf"
    assert (folder / "a.msg.pdf").read_bytes() == b"Coupa's own file"
    assert listed(folder)["a.msg (2).pdf"]["derived_from"] == "a.msg"


def test_a_pdf_that_cannot_be_written_is_no_failure_of_the_mail_and_stays_to_do(tmp_path):
    folder = final_folder(tmp_path, {"a.msg": b"mail a", "b.msg": b"mail b"})
    converter = ScriptedConverter()
    pdfs.make(folder, PO, ["a.msg"], converter)
    before = (folder / MANIFEST).read_bytes()

    def disk_full(msg: Path, pdf: Path) -> ConvertResult:
        return ConvertResult(msg, pdf, False, "cannot write the PDF (No space left on device)",
                             transient=True)

    converter.convert = disk_full  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No space left"):
        pdfs.make(folder, PO, ["a.msg", "b.msg"], converter)
    assert (folder / MANIFEST).read_bytes() == before  # a.msg's PDF kept, b.msg has no reason


def test_a_mail_no_longer_in_the_folder_fails_with_that_reason(tmp_path):
    folder = final_folder(tmp_path, {"q.pdf": b"q"})
    made = pdfs.make(folder, PO, ["gone.msg"], ScriptedConverter())
    assert made["gone.msg"].reason == GONE


def test_when_stopping_no_mail_is_answered_and_nothing_written(tmp_path):
    folder = final_folder(tmp_path, {"a.msg": b"mail a"})
    before = (folder / MANIFEST).read_bytes()
    made = pdfs.make(folder, PO, ["a.msg"], ScriptedConverter(),
                     stopping=lambda: True)
    assert made == {} and (folder / MANIFEST).read_bytes() == before


def test_mails_of_a_result_are_the_msg_files_not_the_pdfs_made_of_them():
    files = (FileRecord("a.msg", "a.msg", 1, "0" * 64, "u"),
             FileRecord("B.MSG", "B.MSG", 1, "0" * 64, "u"),
             FileRecord("a.msg.pdf", "a.msg.pdf", 1, "0" * 64, "u", source="derived"),
             FileRecord("q.pdf", "q.pdf", 1, "0" * 64, "u"))
    assert pdfs.mails_of(files) == ("a.msg", "B.MSG")


def test_the_maker_runs_jobs_off_the_caller_s_thread_and_stops_its_converter_when_idle(
        tmp_path):
    folder = final_folder(tmp_path, {"a.msg": b"mail a"})
    woken = threading.Event()
    converter = ScriptedConverter()
    maker = PdfMaker(woken.set, idle_seconds=0.2, converter=converter)
    try:
        pending = (PdfRecord(7, PO.digits, "a.msg", PdfState.PENDING),)
        maker.submit(FolderJob(PO, folder, pending))
        assert maker.busy_pos == {PO.digits} and maker.room == pdfs.QUEUED_FOLDERS - 1
        done: list[Any] = []
        wait_until(lambda: done.extend(maker.collect()) or done, 10, what="the job")
        assert woken.is_set() and maker.busy_pos == frozenset()
        ((job, made),) = done
        assert job.pending == pending and made["a.msg"].pdf is not None
        wait_until(lambda: maker.idle() or converter.closed == 1, 10,
                   what="the idle converter stopped")
    finally:
        maker.close(timeout=5)
    assert converter.closed == 2 and maker.room == 0
