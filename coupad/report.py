"""Outbox reports of one finished batch: every input row with its result, and a summary.

Each file appears atomically: it is written under a temporary dot-name in the outbox, synced,
then renamed over its final name, so a reader never sees half a report. The summary is
written last: its presence means every report file of the batch is complete.

Every cell a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return) is prefixed with ``'`` in both the CSV and the XLSX, because input
rows and Coupa's attachment names are written by strangers.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.utils import get_column_letter

from coupad.durable import atomic_write
from coupad.faults import crash_point

ADDED_COLUMNS = (
    "STATUS", "SUPPLIER", "ATTACHMENTS_FOUND", "ATTACHMENTS_DOWNLOADED", "ATTACHMENT_NAMES",
    "LAST_PROCESSED", "ERROR_MESSAGE", "DOWNLOAD_FOLDER", "COUPA_URL",
)
# After the contract's columns, never between them: the PDFs made of the PO's Outlook mails
# (empty when it has none) and, for each mail that could not be converted, why.
PDF_COLUMNS = ("PDFS", "PDF_ERRORS")
_ADDED_KEYS = frozenset(c.casefold() for c in ADDED_COLUMNS + PDF_COLUMNS)  # a clash ignores case
INVALID = "INVALID"  # the STATUS of an input row that holds no usable PO number
NAME_SEPARATOR = "; "  # between attachment names in one cell; manifest.json has the exact list
_FORMULA_STARTS = frozenset("=+-@\t\r")
XLSX_CELL_LIMIT = 32_767  # Excel refuses longer cells as a corrupt file


@dataclass(frozen=True)
class ReportLine:
    """One input row and what became of its PO."""

    values: tuple[str, ...]  # the input row's cells, in the input's column order
    status: str
    supplier: str
    found: int | None
    downloaded: int | None
    names: tuple[str, ...]
    last_processed: str
    error: str
    folder: str
    url: str
    po: str = ""  # the PO digits; counts distinct POs in the summary (the URL serves if absent)
    pdfs: int | None = None  # PDFs made of the PO's mails; None when it has no mail
    pdf_errors: tuple[str, ...] = ()  # "mail: why" for each mail that got no PDF


@dataclass(frozen=True)
class BatchReport:
    """Everything the outbox files of one batch say."""

    name: str
    batch_id: str
    fmt: str  # "csv" or "xlsx", the input's format; xlsx input also gets an xlsx report
    columns: tuple[str, ...]
    lines: tuple[ReportLine, ...]
    started_at: float  # time.time()
    finished_at: float
    timings: dict[str, float] = field(default_factory=dict)  # e.g. mean seconds per stage

    @property
    def stem(self) -> str:
        """NAME.<batch-id>, made safe to be one file name in the outbox."""
        return f"{_safe_part(self.name)}.{_safe_part(self.batch_id)}"

    @property
    def header(self) -> tuple[str, ...]:
        """Input columns first (renamed where one clashes with an added column), then ours."""
        width = max([len(self.columns)] + [len(line.values) for line in self.lines])
        names = list(self.columns) + [f"column {get_column_letter(n)}"
                                      for n in range(len(self.columns) + 1, width + 1)]
        taken = set(_ADDED_KEYS) | {c.casefold() for c in names}
        for index, name in enumerate(names):
            if name.casefold() in _ADDED_KEYS:
                candidate, n = f"{name} (input)", 1
                while candidate.casefold() in taken:
                    n += 1
                    candidate = f"{name} (input {n})"
                taken.add(candidate.casefold())
                names[index] = candidate
        return tuple(names) + ADDED_COLUMNS + PDF_COLUMNS


def neutralise(cell: str) -> str:
    """The cell as text a spreadsheet shows but never runs as a formula."""
    return "'" + cell if cell[:1] in _FORMULA_STARTS else cell


def write_reports(outbox: Path, report: BatchReport) -> list[Path]:
    """Write the CSV report (and the XLSX one for xlsx input), then the summary; return paths."""
    outbox.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    csv_path = outbox / f"{report.stem}.report.csv"
    atomic_write(csv_path, lambda stream: _write_csv(stream, report))
    written.append(csv_path)
    if report.fmt == "xlsx":
        xlsx_path = outbox / f"{report.stem}.report.xlsx"
        atomic_write(xlsx_path, lambda stream: _write_xlsx(stream, report))
        written.append(xlsx_path)
    crash_point("report")
    summary_path = outbox / f"{report.stem}.summary.json"
    summary = json.dumps(summarise(report, written), indent=2, ensure_ascii=False) + "\n"
    atomic_write(summary_path, lambda stream: stream.write(summary.encode("utf-8")))
    written.append(summary_path)
    return written


def summarise(report: BatchReport, files: list[Path]) -> dict[str, object]:
    """The summary.json content: counts per status (of rows, and of distinct POs), PDFs made
    of mails and mails that got none (each PO once), times and the report files."""
    counts = collections.Counter(line.status for line in report.lines)
    lines = {line.po or line.url: line for line in report.lines
             if line.status != INVALID and (line.po or line.url)}
    by_po = {po: line.status for po, line in lines.items()}
    pos = set(by_po)
    return {
        "batch_id": report.batch_id,
        "name": report.name,
        "rows": len(report.lines),
        "pos": len(pos),
        "counts": dict(sorted(counts.items())),
        "po_counts": dict(sorted(collections.Counter(by_po.values()).items())),
        "pdfs": {"made": sum(line.pdfs or 0 for line in lines.values()),
                 "failed": sum(len(line.pdf_errors) for line in lines.values())},
        "started_at": _iso(report.started_at),
        "finished_at": _iso(report.finished_at),
        "duration_seconds": round(report.finished_at - report.started_at, 3),
        "timings": {key: round(value, 3) for key, value in report.timings.items()},
        "files": [str(path) for path in files],
    }


def _safe_part(part: str) -> str:
    # Names come from input file names: they never hold a slash, but a report must not be
    # the one thing that stops the daemon if a caller passes one. A control character (a
    # newline in a dropped file's name) would break every script that lists the outbox.
    part = _UNSAFE_IN_NAME.sub("_", part)
    return "_" + part if part in ("", ".", "..") or part.startswith(".") else part


_UNSAFE_IN_NAME = re.compile("[/\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")


def _cells(line: ReportLine, width: int) -> list[str | int]:
    """The input cells padded to the header's width, then the added columns."""
    values: list[str | int] = [*line.values, *([""] * (width - len(line.values)))]
    values += [
        line.status,
        line.supplier,
        "" if line.found is None else line.found,
        "" if line.downloaded is None else line.downloaded,
        NAME_SEPARATOR.join(line.names),
        line.last_processed,
        line.error,
        line.folder,
        line.url,
        "" if line.pdfs is None else line.pdfs,
        NAME_SEPARATOR.join(line.pdf_errors),
    ]
    return values


def _write_csv(stream: BinaryIO, report: BatchReport) -> None:
    # UTF-8 with a BOM is what makes Excel read the accents right when it opens a CSV.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    header = report.header
    width = len(header) - len(ADDED_COLUMNS) - len(PDF_COLUMNS)
    writer.writerow([neutralise(name) for name in header])
    for line in report.lines:
        writer.writerow([neutralise(c) if isinstance(c, str) else c
                         for c in _cells(line, width)])
    text.flush()
    text.detach()


def _write_xlsx(stream: BinaryIO, report: BatchReport) -> None:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Report")
    header = report.header
    width = len(header) - len(ADDED_COLUMNS) - len(PDF_COLUMNS)
    sheet.append([_xlsx_text(name) for name in header])
    for line in report.lines:
        sheet.append([_xlsx_text(c) if isinstance(c, str) else c for c in _cells(line, width)])
    workbook.save(stream)


def _xlsx_text(cell: str) -> str:
    # XML cannot hold most control characters; openpyxl would refuse the whole workbook.
    cell = neutralise(ILLEGAL_CHARACTERS_RE.sub("\ufffd", cell))
    if len(cell) > XLSX_CELL_LIMIT:
        cell = cell[: XLSX_CELL_LIMIT - 1] + "…"
    return cell


