import codecs
import csv
import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import openpyxl
import pytest

import corpus
from coupad.intake import parse_file
from coupad.report import (
    ADDED_COLUMNS,
    PDF_COLUMNS,
    BatchReport,
    ReportLine,
    neutralise,
    write_reports,
)


def line(values, status="COMPLETED", po="", **extra) -> ReportLine:
    fields: dict[str, Any] = dict(supplier="Acme", found=2, downloaded=2, names=("a.pdf", "b.msg"),
                  last_processed="2024-05-01T10:00:00+00:00", error="",
                  folder="/data/downloads/PO15262984_COMPLETED",
                  url="https://example.coupahost.com/order_headers/15262984")
    fields.update(extra)
    return ReportLine(values=tuple(values), status=status, po=po, **fields)


def batch(lines, columns=("PO_NUMBER", "Note"), fmt="csv", name="orders", batch_id="b42"):
    return BatchReport(name=name, batch_id=batch_id, fmt=fmt, columns=tuple(columns),
                       lines=tuple(lines), started_at=1_714_557_600.0,
                       finished_at=1_714_557_690.5, timings={"page_seconds": 1.23456})


def read_csv(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    return list(csv.reader(io.StringIO(raw[3:].decode("utf-8"), newline="")))


def read_xlsx(path: Path) -> list[tuple]:
    workbook = openpyxl.load_workbook(path)
    try:
        return [tuple(cell.value for cell in row) for row in workbook.active.iter_rows()]
    finally:
        workbook.close()


def test_csv_report_keeps_input_order_and_columns_then_adds_ours(tmp_path):
    report = batch([line(["PO3", "c"], po="3"), line(["PO1", "a"], po="1"),
                    line(["bad", "b"], status="INVALID", found=None, downloaded=None, names=(),
                         error="'bad' is not a PO number", folder="", url="")])
    paths = write_reports(tmp_path, report)
    assert [p.name for p in paths] == ["orders.b42.report.csv", "orders.b42.summary.json"]
    rows = read_csv(paths[0])
    assert rows[0] == ["PO_NUMBER", "Note", *ADDED_COLUMNS, *PDF_COLUMNS]
    assert rows[1] == ["PO3", "c", "COMPLETED", "Acme", "2", "2", "a.pdf; b.msg",
                       "2024-05-01T10:00:00+00:00", "",
                       "/data/downloads/PO15262984_COMPLETED",
                       "https://example.coupahost.com/order_headers/15262984", "", ""]
    assert [r[0] for r in rows[1:]] == ["PO3", "PO1", "bad"]
    assert rows[3][2:5] == ["INVALID", "Acme", ""] and rows[3][8] == "'bad' is not a PO number"
    assert paths[0].read_bytes().count(b"\r\n") == 4  # comma separated, CRLF records


def test_summary_counts_statuses_and_distinct_pos_and_lists_the_files(tmp_path):
    report = batch([line(["PO1", ""], po="1"), line(["po 1", ""], po="1"),
                    line(["PO2", ""], status="NOT_FOUND", po="2"),
                    line(["x", ""], status="INVALID", po="", url="")], fmt="xlsx")
    paths = write_reports(tmp_path, report)
    summary = json.loads(paths[-1].read_text())
    assert summary == {
        "batch_id": "b42", "name": "orders", "rows": 4, "pos": 2,
        "counts": {"COMPLETED": 2, "INVALID": 1, "NOT_FOUND": 1},
        "po_counts": {"COMPLETED": 1, "NOT_FOUND": 1},  # the duplicate row counts once
        "pdfs": {"made": 0, "failed": 0},
        "started_at": "2024-05-01T10:00:00+00:00", "finished_at": "2024-05-01T10:01:30+00:00",
        "duration_seconds": 90.5, "timings": {"page_seconds": 1.235},
        "files": [str(tmp_path / "orders.b42.report.csv"),
                  str(tmp_path / "orders.b42.report.xlsx")],
    }
    assert [p.name for p in paths] == ["orders.b42.report.csv", "orders.b42.report.xlsx",
                                       "orders.b42.summary.json"]
    # Written last: nothing of the batch is newer than its summary.
    assert all(p.stat().st_mtime_ns <= paths[-1].stat().st_mtime_ns for p in paths)


@pytest.mark.parametrize(
    "cell, shown",
    [("=HYPERLINK(\"http://evil.example\",\"x\")", "'=HYPERLINK(\"http://evil.example\",\"x\")"),
     ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"), ("-2+3", "'-2+3"), ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
     ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("", ""), ("PO15262984", "PO15262984"),
     ("a=b", "a=b"), ("'already", "'already")],
)
def test_neutralise(cell, shown):
    assert neutralise(cell) == shown


FORMULAS = ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def test_formula_cells_are_neutralised_in_csv_and_xlsx(tmp_path):
    report = batch(
        [line([f, f], supplier="=evil()", names=("=x.pdf",), error="@bad") for f in FORMULAS],
        columns=("=PO", "+Note"), fmt="xlsx",
    )
    csv_path, xlsx_path, _ = write_reports(tmp_path, report)
    csv_rows = read_csv(csv_path)
    xlsx_rows = read_xlsx(xlsx_path)
    # XML reads a bare CR back as LF, so the xlsx shows "\rCR" as "\nCR", still neutralised.
    for rows, cr in ((csv_rows, "\r"), (xlsx_rows, "\n")):
        assert list(rows[0][:2]) == ["'=PO", "'+Note"]
        for formula, row in zip(FORMULAS, rows[1:], strict=True):
            shown = "'" + formula.replace("\r", cr)
            assert list(row[:4]) == [shown, shown, "COMPLETED", "'=evil()"]
            assert row[6] == "'=x.pdf" and row[8] == "'@bad"
    workbook = openpyxl.load_workbook(xlsx_path)
    types = {cell.data_type for row in workbook.active.iter_rows() for cell in row}
    workbook.close()
    assert "f" not in types  # no cell of the workbook is a formula


def test_xlsx_report_has_numbers_as_numbers_and_survives_hostile_text(tmp_path):
    long_text = "y" * 40_000
    report = batch([line(["PO1", "bell\x07 and nul\x00", ], error=long_text),
                    line(["PO2", "ok"], found=None, downloaded=None)], fmt="xlsx")
    _, xlsx_path, _ = write_reports(tmp_path, report)
    rows = read_xlsx(xlsx_path)
    assert rows[1][1] == "bell\ufffd and nul\ufffd"
    assert rows[1][4:6] == (2, 2) and rows[2][4:6] == (None, None)
    assert len(rows[1][8]) == 32_767 and rows[1][8].endswith("…")


def test_input_column_named_like_an_added_one_is_kept_with_a_suffix(tmp_path):
    report = batch([line(["PO1", "mine", "theirs", "old error"])],
                   columns=("PO_NUMBER", "STATUS", "status (input)", "Error_Message"))
    rows = read_csv(write_reports(tmp_path, report)[0])
    assert rows[0] == ["PO_NUMBER", "STATUS (input 2)", "status (input)", "Error_Message (input)",
                       *ADDED_COLUMNS, *PDF_COLUMNS]
    assert rows[1][:5] == ["PO1", "mine", "theirs", "old error", "COMPLETED"]


def test_unicode_round_trips_through_csv_and_xlsx(tmp_path):
    words = ["Überweisung €", "日本語の注文", "emoji 📎", "NBSP\u00a0here", "quote \" and , comma"]
    report = batch([line([f"PO{n}", w], names=(w + ".pdf",), supplier=w)
                    for n, w in enumerate(words)], fmt="xlsx", name="Bestellungen März")
    csv_path, xlsx_path, summary = write_reports(tmp_path, report)
    assert csv_path.name == "Bestellungen März.b42.report.csv"
    for rows in (read_csv(csv_path), read_xlsx(xlsx_path)):
        assert [r[1] for r in rows[1:]] == words
        assert [r[3] for r in rows[1:]] == words
        assert [r[6] for r in rows[1:]] == [w + ".pdf" for w in words]
    assert json.loads(summary.read_text(encoding="utf-8"))["name"] == "Bestellungen März"


def test_ragged_lines_are_padded_not_cut(tmp_path):
    report = batch([line(["PO1"]), line(["PO2", "b", "extra"])])
    rows = read_csv(write_reports(tmp_path, report)[0])
    assert rows[0][:3] == ["PO_NUMBER", "Note", "column C"]
    assert rows[1][:4] == ["PO1", "", "", "COMPLETED"]
    assert rows[2][:4] == ["PO2", "b", "extra", "COMPLETED"]


class Exploding:
    """A cell value that breaks whichever writer meets it first."""

    def __str__(self) -> str:
        raise RuntimeError("disk trouble")


class UnknownToExcel:
    """A value the CSV writer can print but a workbook cannot hold."""

    def __str__(self) -> str:
        return "fine as text"


def test_a_failure_mid_write_leaves_no_report_and_no_temporary_file(tmp_path):
    good = [line([f"PO{n}", "x"]) for n in range(500)]
    with pytest.raises(RuntimeError, match="disk trouble"):
        write_reports(tmp_path, batch(good + [line(["PO9", Exploding()])] + good))
    assert os.listdir(tmp_path) == []


def test_a_failure_in_the_xlsx_leaves_no_summary_so_the_batch_is_not_complete(tmp_path):
    report = batch([line(["PO1", "x"]), line(["PO2", UnknownToExcel()])], fmt="xlsx")
    with pytest.raises(ValueError):
        write_reports(tmp_path, report)
    assert os.listdir(tmp_path) == ["orders.b42.report.csv"]


def test_a_failed_rewrite_keeps_the_previous_complete_report(tmp_path):
    first = write_reports(tmp_path, batch([line(["PO1", "first"])]))
    before = {p: p.read_bytes() for p in first}
    with pytest.raises(RuntimeError):
        write_reports(tmp_path, batch([line(["PO1", "second"]), line(["PO2", Exploding()])]))
    assert {p: p.read_bytes() for p in first} == before
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in first)


@pytest.mark.timeout(120)
def test_a_reader_never_sees_a_partial_report(tmp_path):
    rows = 20_000
    report = batch([line([f"PO{n}", "note " * 5], po=str(n)) for n in range(rows)])
    target = tmp_path / "orders.b42.report.csv"
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                data = target.read_bytes()
            except FileNotFoundError:
                continue
            seen.append(data.count(b"\r\n"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(3):
            write_reports(tmp_path, report)
    finally:
        done.set()
        watcher.join(timeout=10)
    assert seen, "the watcher never saw the report"
    assert set(seen) == {rows + 1}


@pytest.mark.parametrize(
    "name, batch_id, stem",
    [("../escape", "b1", "_.._escape.b1"), ("ok", "a/b", "ok.a_b"), ("", "b1", "_.b1"),
     ("ok", "..", "ok._.."), (".hidden", "b1", "_.hidden.b1")],
)
def test_unsafe_names_stay_inside_the_outbox_as_visible_files(tmp_path, name, batch_id, stem):
    paths = write_reports(tmp_path / "out", batch([line(["PO1", ""])], name=name,
                                                  batch_id=batch_id))
    assert [p.name for p in paths] == [f"{stem}.report.csv", f"{stem}.summary.json"]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(p.name for p in paths)


def test_a_parsed_hostile_file_flows_into_a_safe_report(tmp_path):
    case = next(c for c in corpus.CASES if c.name == "formula-injection.csv")
    parsed = parse_file(corpus.write(case, tmp_path), max_rows=100)
    lines = [
        line(r.values, po=r.po_digits or "") if r.error is None
        else line(r.values, status="INVALID", error=r.error, po="", url="", found=None,
                  downloaded=None, names=(), folder="", supplier="")
        for r in parsed.rows
    ]
    report = BatchReport(parsed.name, "b7", parsed.fmt, parsed.columns, tuple(lines), 0.0, 1.0)
    rows = read_csv(write_reports(tmp_path / "outbox", report)[0])
    assert [r[0] for r in rows[1:]] == ["15262984", "15262985", "'=1+1", "15262986"]
    assert rows[1][1] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    assert rows[3][1] == "'@SUM(A1:A9)" and rows[3][2] == "INVALID"
    assert "not a PO number" in rows[3][8]
    assert rows[4][1] == "'-2+3"


def test_the_added_columns_are_the_ones_users_expect_by_name(tmp_path):
    # coupa-domain.md, "Folder and report conventions": the report columns users expect per PO,
    # spelled out here rather than taken from coupad.report, so that a rename fails.
    # The PDF columns come after them, never between.
    rows = read_csv(write_reports(tmp_path, batch([line(["PO1", "x"], po="1")]))[0])
    assert rows[0] == ["PO_NUMBER", "Note", "STATUS", "SUPPLIER", "ATTACHMENTS_FOUND",
                       "ATTACHMENTS_DOWNLOADED", "ATTACHMENT_NAMES", "LAST_PROCESSED",
                       "ERROR_MESSAGE", "DOWNLOAD_FOLDER", "COUPA_URL", "PDFS", "PDF_ERRORS"]
    assert rows[1][2:] == ["COMPLETED", "Acme", "2", "2", "a.pdf; b.msg",
                           "2024-05-01T10:00:00+00:00", "", "/data/downloads/PO15262984_COMPLETED",
                           "https://example.coupahost.com/order_headers/15262984", "", ""]


def test_pdfs_of_mails_are_counted_per_po_in_the_summary_and_shown_per_row(tmp_path):
    # ATTACHMENT_NAMES keeps Coupa's names; the PDFs and the mails without one come after.
    report = batch([
        line(["PO1", ""], po="1", pdfs=1, pdf_errors=("c.msg: not an Outlook .msg file",)),
        line(["po 1", ""], po="1", pdfs=1, pdf_errors=("c.msg: not an Outlook .msg file",)),
        line(["PO2", ""], po="2", pdfs=2),
        line(["PO3", ""], po="3", status="NOT_FOUND", names=()),
    ], fmt="xlsx")
    csv_path, xlsx_path, summary_path = write_reports(tmp_path, report)
    assert json.loads(summary_path.read_text())["pdfs"] == {"made": 3, "failed": 1}
    error = "c.msg: not an Outlook .msg file"
    csv_rows = read_csv(csv_path)
    assert csv_rows[0][-2:] == ["PDFS", "PDF_ERRORS"] and csv_rows[1][6] == "a.pdf; b.msg"
    assert [r[-2:] for r in csv_rows[1:]] == [["1", error], ["1", error], ["2", ""], ["", ""]]
    xlsx_rows = read_xlsx(xlsx_path)
    assert [r[-2:] for r in xlsx_rows[1:]] == [(1, error), (1, error), (2, None), (None, None)]
