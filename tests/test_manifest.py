"""manifest.json with derived files: a PDF listed as made from a mail, a mail's pdf_error."""

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from coupad import manifest
from coupad.folders import MANIFEST, PoFolder
from coupad.manifest import DERIVED
from coupad.records import FileRecord
from coupad.ponumber import PoNumber

PO = PoNumber("15262984")


def add(folder: PoFolder, name: str, data: bytes) -> FileRecord:
    staged = folder.staging_dir("t") / "download.part"
    staged.write_bytes(data)
    return folder.add_file(staged, name, f"http://coupa.test/{name}", "po", f"po:{name}")


def derived_of(folder: Path, mail: FileRecord, data: bytes = b"%PDF-1.4 made") -> FileRecord:
    name = mail.name + ".pdf"
    (folder / name).write_bytes(data)
    return FileRecord(name=name, original_name=mail.original_name + ".pdf",
                         source_url=mail.source_url, size=len(data),
                         sha256=hashlib.sha256(data).hexdigest(), source=DERIVED,
                         key=f"derived:{mail.key}", derived_from=mail.name)


def final_folder_with_a_pdf(root: Path) -> tuple[Path, FileRecord, FileRecord]:
    folder = PoFolder.open(root, PO)
    mail = add(folder, "approval.msg", b"an Outlook mail")
    add(folder, "quote.pdf", b"%PDF-1.4 quote")
    final = folder.finalize("COMPLETED")
    listed = manifest.read(final, PO)
    pdf = derived_of(final, mail)
    manifest.write(final, PO, [*listed.entries, pdf], listed.status, listed.finished_at)
    return final, mail, pdf


def files_of(path: Path) -> list[dict]:
    return json.loads((path / MANIFEST).read_text(encoding="utf-8"))["files"]


def test_a_derived_pdf_is_listed_with_its_source_and_optional_fields_only_when_set(tmp_path):
    final, mail, pdf = final_folder_with_a_pdf(tmp_path)
    files = files_of(final)
    assert files[-1] == {"name": "approval.msg.pdf", "original_name": "approval.msg.pdf",
                         "source_url": "http://coupa.test/approval.msg", "size": pdf.size,
                         "sha256": pdf.sha256, "source": "derived",
                         "key": "derived:po:approval.msg", "derived_from": "approval.msg"}
    assert "derived_from" not in files[0] and "pdf_error" not in files[0]
    listed = manifest.read(final, PO)
    assert listed.status == "COMPLETED" and not listed.rewrite
    assert listed.entries[-1] == pdf


def test_a_reopened_folder_keeps_the_pdf_and_the_mail_s_pdf_error(tmp_path):
    final, mail, pdf = final_folder_with_a_pdf(tmp_path)
    listed = manifest.read(final, PO)
    quote = replace(listed.entries[1], pdf_error="not an Outlook .msg file")
    manifest.write(final, PO, [listed.entries[0], quote, pdf], listed.status)
    folder = PoFolder.open(tmp_path, PO)  # a retry: the final folder is the work folder again
    assert [e.name for e in folder.entries] == ["approval.msg", "quote.pdf", "approval.msg.pdf"]
    assert folder.entries[1].pdf_error == "not an Outlook .msg file"
    # A Coupa file named like the PDF gets a name of its own; the PDF keeps its name.
    taken = add(folder, "approval.msg.pdf", b"a file Coupa had under this name")
    assert taken.name == "approval.msg (2).pdf"
    again = folder.finalize("COMPLETED")
    assert (again / "approval.msg.pdf").read_bytes() == b"%PDF-1.4 made"
    assert files_of(again)[1]["pdf_error"] == "not an Outlook .msg file"


@pytest.mark.parametrize("tamper", [
    {"derived_from": "nothing.msg"},  # a source the folder does not have
    {"derived_from": "approval.msg.pdf"},  # itself
    {"derived_from": 7},  # not a name
    {"derived_from": "../approval.msg", "name": "../x.pdf"},  # outside the folder
])
def test_a_derived_entry_without_a_kept_source_is_dropped_with_its_file(tmp_path, tamper):
    final, mail, pdf = final_folder_with_a_pdf(tmp_path)
    document = json.loads((final / MANIFEST).read_text(encoding="utf-8"))
    document["files"][-1].update(tamper)
    (final / MANIFEST).write_text(json.dumps(document), encoding="utf-8")
    folder = PoFolder.open(tmp_path, PO)
    assert [e.name for e in folder.entries] == ["approval.msg", "quote.pdf"]
    assert sorted(p.name for p in folder.path.iterdir()) == sorted([MANIFEST, "approval.msg",
                                                                  "quote.pdf"])
    assert (tmp_path / "x.pdf").exists() is False


def test_a_pdf_whose_mail_is_gone_goes_with_it(tmp_path):
    final, mail, pdf = final_folder_with_a_pdf(tmp_path)
    (final / "approval.msg").write_bytes(b"truncated")  # wrong size: the mail is not kept
    folder = PoFolder.open(tmp_path, PO)
    assert [e.name for e in folder.entries] == ["quote.pdf"]
    assert sorted(p.name for p in folder.path.iterdir()) == sorted([MANIFEST, "quote.pdf"])


def test_a_mistyped_pdf_error_is_ignored_and_the_mail_kept(tmp_path):
    final, mail, pdf = final_folder_with_a_pdf(tmp_path)
    document = json.loads((final / MANIFEST).read_text(encoding="utf-8"))
    document["files"][0]["pdf_error"] = {"html": "<script>"}
    (final / MANIFEST).write_text(json.dumps(document), encoding="utf-8")
    listed = manifest.read(final, PO)
    assert [e.name for e in listed.entries] == ["approval.msg", "quote.pdf", "approval.msg.pdf"]
    assert listed.entries[0].pdf_error is None
