"""Hostile inputs (issue 13, items 5, 6 and 12): an inbox whose folders were replaced by
symbolic links, XLSX bombs and huge CSV files parsed in bounded memory, and file names with
control characters, against real files, real parsing processes and the real daemon."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from coupad.inbox import Inbox, InboxFile
from coupad.logs import TEXT_FORMAT, TextFormatter
from daemonkit import daemon
from util import wait_until

pytestmark = [pytest.mark.timeout(120)]
FAKE = "fakeengine:FakeEngine"
BASE = "http://127.0.0.1:9"  # never contacted by the scripted engine
CSV = "PO Number\n100001\n"


# -- item 5: symbolic links in place of the inbox's folders -------------------------------


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def rescans(inbox: Inbox, count: int = 3) -> list[InboxFile]:
    """Passes far enough apart on the inbox's clock that each one rescans every folder."""
    got: list[InboxFile] = []
    for n in range(1, count + 1):
        got.extend(inbox.ready(time.time() + 10 * n))
    return got


def test_symlinked_inbox_folders_are_never_followed_and_warned_about_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="coupad.inbox")
    outside = {name: tmp_path / f"outside-{name}" for name in ("low", "accepted", "rejected")}
    for folder in outside.values():
        folder.mkdir()
    (outside["low"] / "secret.csv").write_text(CSV)
    before = {name: tree(folder) for name, folder in outside.items()}
    root = tmp_path / "inbox"
    root.mkdir()
    for name, folder in outside.items():
        (root / name).symlink_to(folder, target_is_directory=True)
    inbox = Inbox(root, quiet_seconds=0.1)
    inbox.start()
    try:
        (root / "mine.csv").write_text(CSV)
        (root / "bad.csv").write_text("no po column\n1\n")
        got = wait_until(lambda: inbox.ready(time.time()), 10, what="the inbox's own files")
        got += rescans(inbox)  # the outside file, were it read, would come by now
        assert sorted(f.path.name for f in got) == ["bad.csv", "mine.csv"]
        mine, bad = sorted(got, key=lambda f: f.path.name != "mine.csv")
        assert inbox.accept(mine, "b1") == mine.path  # accepted/ is a link: nothing moved
        assert inbox.reject(bad, "no PO column") == bad.path
        assert rescans(inbox) == []  # and more rescans do not warn again
    finally:
        inbox.stop()
    assert {name: tree(folder) for name, folder in outside.items()} == before
    assert (root / "mine.csv").exists() and (root / "bad.csv").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for name in outside:
        about = [w for w in warnings if f"{root / name}" in w]
        assert len(about) == 1, (name, warnings)
        assert "symbolic link" in about[0] and str(outside[name]) in about[0], about


def test_a_symlinked_file_in_a_real_folder_is_never_read(tmp_path):
    from coupad.errors import InputError
    from coupad.intake import parse_file

    outside = tmp_path / "outside.csv"
    outside.write_text(CSV)
    link = tmp_path / "inbox.csv"
    link.symlink_to(outside)
    with pytest.raises(InputError, match="symbolic link"):
        parse_file(link, max_rows=10)


def test_the_daemon_reads_moves_and_writes_nothing_through_symlinked_inbox_folders(tmp_path):
    outside = tmp_path / "elsewhere"
    for name in ("high", "accepted", "rejected"):
        (outside / name).mkdir(parents=True)
    (outside / "high" / "theirs.csv").write_text("PO Number\n100077\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("high", "accepted", "rejected"):
        (inbox / name).symlink_to(outside / name, target_is_directory=True)
    before = tree(outside)
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
        d.drop("ours.csv", CSV)
        d.drop("broken.csv", "nothing here\n")
        assert d.wait_report("ours", timeout=30)["counts"] == {"COMPLETED": 1}
        wait_until(lambda: "broken.csv" in d.log(), 10, what="the rejection of broken.csv")
        # theirs.csv was there at start-up: had the first scan read it, it would be a batch.
        wait_until(lambda: d.log(None).count("symbolic link") >= 3, 10, what="the warnings")
        assert [b["name"] for b in d.call("batches")] == ["ours"]
        log = d.log(None)
    assert tree(outside) == before
    assert not list(d.outbox.glob("theirs*"))
    for name in ("high", "accepted", "rejected"):
        assert log.count(f"{inbox / name}: it is a symbolic link") == 1, log


# -- item 12: control characters in file names --------------------------------------------


def test_text_log_lines_escape_control_characters():
    record = logging.LogRecord("coupad.daemon", logging.WARNING, __file__, 1,
                               "rejected %s: %s", ("a\nFAKE ERROR forged\r.csv", "bad\x1b[31m"),
                               None)
    line = TextFormatter(TEXT_FORMAT).format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "a\\nFAKE ERROR forged\\r.csv" in line and "bad\\x1b[31m" in line


def test_a_newline_in_an_inbox_file_name_forges_no_log_line_and_no_outbox_name(tmp_path):
    forged = "2026-01-01 00:00:00,000 ERROR   coupad.daemon[1] forged"
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
        d.drop(f"evil\n{forged}.csv", CSV)
        d.drop(f"worse\n{forged}.csv", "nothing\n")
        wait_until(lambda: list(d.outbox.glob("evil*.summary.json")), 30, what="the report")
        wait_until(lambda: "worse" in d.log(), 10, what="the rejection")
        log = d.log(None)
    assert not [line for line in log.splitlines() if line.startswith(forged)], log
    assert "evil\\n" + forged in log
    for path in d.outbox.iterdir():
        assert not re.search(r"[\x00-\x1f\x7f]", path.name), path.name


# -- item 6: XLSX bombs and huge CSV files in bounded memory ------------------------------

MEASURE = """
import resource, sys
from pathlib import Path
from coupad.errors import InputError
from coupad.intake import parse_file
try:
    parsed = parse_file(Path(sys.argv[1]), max_rows=int(sys.argv[2]))
    print("parsed", len(parsed.rows))
except InputError as exc:
    print("refused", exc)
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def measure(path: Path, max_rows: int = 200_000, timeout: float = 60) -> tuple[str, int]:
    """Parse in a fresh process: what parse_file said, and the process's peak RSS in MiB."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(max_rows)],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    said, _, peak = out.stdout.rstrip("\n").rpartition("\n")
    return said, int(peak.split()[1]) // 1024


def baseline_mib() -> int:
    """Peak RSS of a process that imports the parser and parses a tiny file."""
    out = subprocess.run([sys.executable, "-c", "import resource, coupad.intake; print("
                          "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                         capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout) // 1024


WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="PO_DATA" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/></Relationships>'
)
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '</Types>'
)


def bomb(path: Path, *, rows: int = 0, cell_mib: int = 0, rows_mib: int = 0) -> Path:
    """A workbook whose one sheet holds ``rows`` PO rows, one text cell of ``cell_mib`` MiB,
    and ``rows_mib`` MiB of tiny rows, written streaming so the test stays small in memory."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES)
        z.writestr("_rels/.rels", ROOT_RELS)
        z.writestr("xl/workbook.xml", WORKBOOK)
        z.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
                        b'2006/main"><sheetData>'
                        b'<row r="1"><c r="A1" t="inlineStr"><is><t>PO Number</t></is></c>'
                        b'<c r="B1" t="inlineStr"><is><t>Note</t></is></c></row>')
            for n in range(2, rows + 2):
                sheet.write(b'<row r="%d"><c r="A%d"><v>%d</v></c></row>' % (n, n, 100000 + n))
            if cell_mib:
                sheet.write(b'<row><c><v>100001</v></c><c t="inlineStr"><is><t>')
                chunk = b"A" * (1024 * 1024)
                for _ in range(cell_mib):
                    sheet.write(chunk)
                sheet.write(b"</t></is></c></row>")
            block = b"<row><c><v>1</v></c></row>" * (1024 * 1024 // 26)
            for _ in range(rows_mib):
                sheet.write(block)
            sheet.write(b"</sheetData></worksheet>")
    return path


def test_an_xlsx_whose_sheet_unpacks_to_gigabytes_is_refused_in_bounded_memory(tmp_path):
    path = bomb(tmp_path / "bomb.xlsx", rows_mib=600)  # the limit for a sheet is 512 MiB
    assert path.stat().st_size < 10 * 1024 * 1024
    said, peak = measure(path)
    assert said.startswith("refused") and "too large when unpacked" in said, said
    assert peak < baseline_mib() + 100, f"peak RSS {peak} MiB"


def test_an_xlsx_cell_of_200_mib_is_refused_in_bounded_memory(tmp_path):
    path = bomb(tmp_path / "cell.xlsx", rows=3, cell_mib=200)
    said, peak = measure(path)
    assert said.startswith("refused") and "in one cell" in said, said
    assert peak < baseline_mib() + 100, f"peak RSS {peak} MiB"


def test_an_xlsx_with_a_lying_size_header_is_refused_while_reading(tmp_path):
    path = bomb(tmp_path / "liar.xlsx", rows_mib=100)
    # Claim the sheet unpacks to 1 KiB, in both the local header and the central directory.
    data = bytearray(path.read_bytes())
    name = b"xl/worksheets/sheet1.xml"
    for signature, size_at in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            name_len = int.from_bytes(data[start + (28 if signature == b"PK\x01\x02" else 26):
                                           start + (30 if signature == b"PK\x01\x02" else 28)],
                                      "little")
            header = 46 if signature == b"PK\x01\x02" else 30
            if bytes(data[start + header:start + header + name_len]) == name:
                extra_at = start + header + name_len
                if data[size_at + start:size_at + start + 4] == b"\xff\xff\xff\xff":
                    # zip64: the real sizes are in the extra field (uncompressed first)
                    data[extra_at + 4:extra_at + 12] = (1024).to_bytes(8, "little")
                else:
                    data[start + size_at:start + size_at + 4] = (1024).to_bytes(4, "little")
            start += 4
    path.write_bytes(bytes(data))
    said, peak = measure(path)
    assert said.startswith("refused"), said
    assert peak < baseline_mib() + 100, f"peak RSS {peak} MiB"


def test_an_xlsx_with_too_many_rows_is_refused_with_the_reason(tmp_path):
    path = bomb(tmp_path / "rows.xlsx", rows=3000)
    said, _ = measure(path, max_rows=2000)
    assert said == "refused too many rows: 3,000 (the limit is inbox.max_rows = 2,000)", said


def test_a_200_mb_csv_is_read_in_bounded_memory(tmp_path):
    path = tmp_path / "big.csv"
    note = "x" * 1000
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("PO Number,Note\n")
        handle.writelines(f"{100000 + n},{note}\n" for n in range(200_000))
    assert path.stat().st_size > 200_000_000
    said, peak = measure(path, max_rows=20_000, timeout=90)
    # Read to the end, so the message says by how much, without holding the file: only the
    # rows up to the limit are kept (about 25 MiB here); the file and its text are not.
    assert said == "refused too many rows: 200,000 (the limit is inbox.max_rows = 20,000)"
    assert peak < baseline_mib() + 100, f"peak RSS {peak} MiB"
