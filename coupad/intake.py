"""Input files (CSV or XLSX) read into rows: the PO column found, numbers normalised, errors kept.

A file either becomes a :class:`ParsedFile` or raises :class:`~coupad.errors.InputError`
saying in plain words why it cannot become a batch. The line between the two:

- Rejected: unreadable, empty, not text, no PO column, a header without data rows, too many
  rows or columns, a quote opened and never closed.
- Accepted: everything else, even a file in which every row is invalid. A person then gets a
  report with the reason on each row, which says more than one rejection message could, and
  the rows stay where they were in the file.

Row numbers are the ones a person sees in a spreadsheet: every record of the file counts,
blank ones included, and the header is row 1 when it is the first line. Up to
``HEADER_SEARCH_ROWS`` title lines above the header are allowed; they are not data.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import itertools
import os
import re
import stat
import sys
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.etree.ElementTree import ParseError

import openpyxl
from openpyxl.utils import get_column_letter
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet._read_only import ReadOnlyWorksheet

from coupad.errors import InputError
from coupad.ponumber import MAX_DIGITS, MIN_DIGITS, InvalidPoNumber, normalize

# In order of preference when a file has several of these columns.
PO_HEADER_ALIASES = (
    "PO_NUMBER", "PO Number", "Purchase Order Number", "PO No", "PO #", "PO", "Purchase Order",
    "Order Number",
)
DELIMITERS = (",", ";", "\t")  # in order of preference when a file reads the same with several
HEADER_SEARCH_ROWS = 10
MAX_COLUMNS = 16_384  # Excel's own limit: the report could not hold more
# Far above 200,000 generous rows, far below what would exhaust memory once decoded.
MAX_FILE_BYTES = 256 * 1024 * 1024
# A workbook unpacks to XML several times its size; far beyond that is a ZIP bomb. The ZIP
# reader stops at the sizes the archive declares, so checking those is enough.
MAX_UNPACKED_BYTES = 2 * 1024 * 1024 * 1024

# A C0 control character (tab, CR and LF aside) or DEL never appears in a text export.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # compound file: .xls, or an encrypted .xlsx
_CONTROL_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"PK\x03\x04", "an Excel .xlsx workbook or a ZIP archive"),
    (_OLE2, "an old .xls workbook or a password-protected file"),
    (b"%PDF-", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
)
_SEP_LINE = re.compile(r"\Asep=(.)\r?\n", re.IGNORECASE)  # Excel's delimiter hint line
_EXCEL_TEXT_FORMULA = re.compile(r'\A="(.*)"\Z', re.DOTALL)  # ="0123", Excel's keep-as-text
# What normalize() accepts unchanged or after a bare PO/PM prefix: "15262984", "PO15262984".
_PLAIN_PO = re.compile(rf"(?:[Pp][OoMm])?([0-9]{{{MIN_DIGITS},{MAX_DIGITS}}})")
_SCIENTIFIC = re.compile(r"\A\d(?:[.,]\d+)?E\+?\d+\Z", re.IGNORECASE)
_BLANK_CHARS = " \t\r\n\f\v\u00a0,;"
# Never part of accepted text (NUL is refused above), so it marks the end of the data exactly.
_SENTINEL = "\x00"

# The csv module refuses fields over 128 KiB by default; a 10 MB note must not sink a batch.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _header_key(text: str) -> str:
    return re.sub(r"[\s_\-.]+", "", text).casefold()


_ALIAS_RANK = {_header_key(alias): rank for rank, alias in enumerate(PO_HEADER_ALIASES)}


@dataclass(frozen=True)
class InputRow:
    """One data row: its cells, and its PO number or the reason it has none."""

    row_no: int
    values: tuple[str, ...]
    po_digits: str | None
    error: str | None
    duplicate_of: int | None  # row_no of the first row with the same PO


@dataclass(frozen=True)
class ParsedFile:
    """A whole input file, ready to become one batch."""

    name: str  # the file name without folder and extension
    fmt: Literal["csv", "xlsx"]
    columns: tuple[str, ...]  # unique names; empty or extra columns are named by letter
    po_column: str
    rows: tuple[InputRow, ...]
    content_sha256: str
    encoding: str | None
    delimiter: str | None
    sheet: str | None = None

    @property
    def po_numbers(self) -> tuple[str, ...]:
        """The distinct valid PO numbers (digits) in input order."""
        return tuple(r.po_digits for r in self.rows
                     if r.po_digits is not None and r.duplicate_of is None)


def parse_file(path: Path, *, max_rows: int) -> ParsedFile:
    """Read one CSV or XLSX file, or raise InputError saying what is wrong with it."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise InputError(f"only .csv and .xlsx files are read (this one ends in {suffix!r})")
    raw = _read_bytes(path)
    digest = hashlib.sha256(raw).hexdigest()
    if suffix == ".csv":
        text, encoding = _decode(raw)
        text, delimiter = _pick_delimiter(text)
        records = _csv_records(text, delimiter)
        return _build(path.stem, "csv", records, max_rows, digest, encoding, delimiter, None)
    workbook, sheet_name, records = _xlsx_records(raw)
    try:
        return _build(path.stem, "xlsx", records, max_rows, digest, None, None, sheet_name)
    finally:
        workbook.close()


def _read_bytes(path: Path) -> bytes:
    try:
        # O_NONBLOCK: a FIFO put in the file's place must not hang the daemon in open().
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise InputError("this is a folder, not a file")
            if not stat.S_ISREG(info.st_mode):
                raise InputError("this is not a regular file (a device, pipe or socket)")
            if info.st_size > MAX_FILE_BYTES:
                raise InputError(f"the file is too large: {info.st_size:,} bytes "
                                 f"(the limit is {MAX_FILE_BYTES:,})")
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as stream:
            return stream.read()
    except PermissionError:
        raise InputError("the file cannot be read: permission denied") from None
    except FileNotFoundError:
        raise InputError("the file disappeared before it could be read") from None
    except OSError as exc:
        raise InputError(f"the file cannot be read: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------- CSV

def _decode(raw: bytes) -> tuple[str, str]:
    if raw.endswith(b"\x1a"):  # a DOS end-of-file mark some old exporters still write
        raw = raw[:-1]
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if raw.startswith(bom):
            return _decode_utf16(raw[len(bom):], codec, len(bom)), "utf-16"
    codec16 = _utf16_without_bom(raw)
    if codec16:
        return _decode_utf16(raw, codec16, 0), codec16
    bom_len = 3 if raw.startswith(codecs.BOM_UTF8) else 0
    body = raw[bom_len:]
    if not body.strip():
        raise InputError("the file is empty")
    for signature, what in _SIGNATURES:
        if body.startswith(signature):
            raise InputError(f"the file is not text: it looks like {what} named .csv")
    control = _CONTROL.search(body)
    if control:
        raise InputError(f"the file is not text (binary data at byte {control.start() + bom_len})")
    try:
        return body.decode("utf-8"), ("utf-8-sig" if bom_len else "utf-8")
    except UnicodeDecodeError:
        pass
    # European Excel writes cp1252, sometimes behind a UTF-8 BOM: the bytes decide, not the BOM.
    try:
        return body.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        bad = body[exc.start]
        raise InputError(
            "the file is not text in UTF-8 or Windows-1252 "
            f"(undecodable byte 0x{bad:02x} at byte {exc.start + bom_len})"
        ) from None


def _utf16_without_bom(raw: bytes) -> str | None:
    """Guess UTF-16 from the zero half of each ASCII character, as Notepad's 'Unicode' writes."""
    sample = raw[:4096]
    pairs = len(sample) // 2
    if pairs < 4:
        return None
    even_zero = sample[0:pairs * 2:2].count(0)
    odd_zero = sample[1:pairs * 2:2].count(0)
    if odd_zero >= 0.9 * pairs and even_zero == 0:
        return "utf-16-le"
    if even_zero >= 0.9 * pairs and odd_zero == 0:
        return "utf-16-be"
    return None


def _decode_utf16(body: bytes, codec: str, offset: int) -> str:
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"the file is not text: damaged UTF-16 at byte {exc.start + offset}"
        ) from None
    if not text.strip():
        raise InputError("the file is empty")
    control = _CONTROL_TEXT.search(text)
    if control:
        position = offset + 2 * control.start()
        raise InputError(f"the file is not text (binary data at byte {position})")
    return text


def _pick_delimiter(text: str) -> tuple[str, str]:
    """The delimiter under which a header with a PO column appears, widest header first."""
    hint = _SEP_LINE.match(text)
    if hint and hint.group(1) in DELIMITERS:
        return text[hint.end():], hint.group(1)

    def score(delimiter: str) -> tuple[bool, int]:
        try:
            header, first = _find_header(_numbered(_csv_records(text, delimiter)))
        except InputError:  # a quote left open under this delimiter; the chosen one reports it
            return False, 0
        if header is not None:
            return True, len(_trim(header[1]))
        return False, len(_trim(first or []))

    return text, max(DELIMITERS, key=score)


def _csv_records(text: str, delimiter: str) -> Iterator[list[str]]:
    """Every record of the text; a quote left open at the end is an error, not a swallowed tail."""
    lines = itertools.chain(io.StringIO(text, newline=""), [_SENTINEL])
    reader = csv.reader(lines, delimiter=delimiter)
    start = 1
    for cells in reader:
        if cells == [_SENTINEL]:
            return
        if cells and cells[-1].endswith(_SENTINEL):
            raise InputError(
                f"a quote (\") opened in row {start} is never closed: every line after it "
                "would be read as one cell"
            )
        start += 1
        yield cells


# --------------------------------------------------------------------------------------- XLSX

def _xlsx_records(raw: bytes) -> tuple[Workbook, str, Iterator[list[str]]]:
    if raw.startswith(_OLE2):
        raise InputError(
            "not a readable Excel file: it is password-protected or an old .xls workbook; "
            "save it as an .xlsx workbook without a password"
        )
    if not raw.startswith(b"PK"):
        if not raw.strip():
            raise InputError("the file is empty")
        what = "plain text (a CSV file named .xlsx?)" if not _CONTROL.search(raw[:4096]) \
            else "not an .xlsx workbook"
        raise InputError(f"not a readable Excel file: it is {what}")
    try:
        unpacked = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(raw)).infolist())
        if unpacked > MAX_UNPACKED_BYTES:
            raise InputError(
                f"the workbook is too large when unpacked: {unpacked:,} bytes "
                f"(the limit is {MAX_UNPACKED_BYTES:,})"
            )
        workbook = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except InputError:
        raise
    except Exception as exc:  # openpyxl raises whatever its zip, XML and model layers raise
        raise InputError(f"not a readable Excel file: {_xlsx_problem(exc)}") from None
    sheets = [ws for ws in workbook.worksheets if isinstance(ws, ReadOnlyWorksheet)]
    if not sheets:
        workbook.close()
        raise InputError("not a readable Excel file: it has no worksheet")
    sheet = next((ws for ws in sheets if ws.title.strip().casefold() == "po_data"), sheets[0])
    # Dimensions written by other programs can be wrong; trusting them would cut rows off.
    sheet.reset_dimensions()

    def records() -> Iterator[list[str]]:
        try:
            for values in sheet.iter_rows(min_row=1, min_col=1, values_only=True):
                yield [_cell_text(v) for v in values]
        except InputError:
            raise
        except Exception as exc:  # a damaged sheet part shows only while streaming it
            raise InputError(f"not a readable Excel file: {_xlsx_problem(exc)}") from None

    return workbook, sheet.title, records()


def _xlsx_problem(exc: Exception) -> str:
    if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
        return "the file is damaged or incomplete"
    if isinstance(exc, KeyError):
        return f"a part of the workbook is missing ({exc})"
    if isinstance(exc, ParseError) or type(exc).__name__ == "XMLSyntaxError":
        return "the workbook's XML is damaged"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _cell_text(value: object) -> str:
    """A cell as the text a person sees, with Excel's whole-number floats written whole."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.time):
        return value.isoformat(timespec="seconds")
    return str(value)  # int, date, timedelta


# ------------------------------------------------------------------------------------- shared

def _blank(cells: list[str]) -> bool:
    """Nothing but white space and delimiters, so blank whichever delimiter the file uses."""
    for cell in cells:
        if cell.strip(_BLANK_CHARS):
            return False
    return True


def _numbered(records: Iterable[list[str]]) -> Iterator[tuple[int, list[str]]]:
    return enumerate(records, start=1)


def _find_header(
    numbered: Iterator[tuple[int, list[str]]],
) -> tuple[tuple[int, list[str], int] | None, list[str] | None]:
    """The first leading record naming a PO column (row, cells, PO index), and the first record.

    Among several PO-like columns the most specific alias wins, then the leftmost.
    """
    first: list[str] | None = None
    for seen, (row_no, cells) in enumerate(r for r in numbered if not _blank(r[1])):
        first = first if first is not None else cells
        ranked = [(_ALIAS_RANK[_header_key(c)], i) for i, c in enumerate(cells)
                  if _header_key(c) in _ALIAS_RANK]
        if ranked:
            return (row_no, cells, min(ranked)[1]), first
        if seen + 1 >= HEADER_SEARCH_ROWS:
            break
    return None, first


def _build(
    name: str,
    fmt: Literal["csv", "xlsx"],
    records: Iterator[list[str]],
    max_rows: int,
    digest: str,
    encoding: str | None,
    delimiter: str | None,
    sheet: str | None,
) -> ParsedFile:
    numbered = _numbered(records)
    found, first = _find_header(numbered)
    where = f" in sheet {sheet!r}" if sheet else ""
    if found is None:
        if first is None:
            raise InputError("the file is empty" if not sheet else f"the sheet {sheet!r} is empty")
        raise InputError(
            f"no PO number column{where}: expected one of {', '.join(PO_HEADER_ALIASES)} "
            f"— found: {_show_names(first)}"
        )
    _, header, po_index = found
    width = len(_trim(header))
    raw_rows: list[tuple[int, list[str]]] = []
    count = 0
    for row_no, cells in numbered:
        if _blank(cells):
            continue
        count += 1
        if count > max_rows:
            continue  # keep counting, so the message says by how much the file is over
        cells = _trim(cells)
        if len(cells) > MAX_COLUMNS:
            raise InputError(
                f"too many columns: {len(cells):,} in row {row_no} "
                f"(the limit is {MAX_COLUMNS:,}, as in Excel)"
            )
        width = max(width, len(cells))
        raw_rows.append((row_no, cells))
    if count > max_rows:
        raise InputError(
            f"too many rows: {count:,} (the limit is inbox.max_rows = {max_rows:,})"
        )
    if not raw_rows:
        raise InputError(f"the file has a header row but no data rows{where}")
    columns = _column_names(header, width)
    rows: list[InputRow] = []
    first_row_of: dict[str, int] = {}
    for row_no, cells in raw_rows:
        values = tuple(cells) + ("",) * (width - len(cells))
        digits, error = _po_cell(values[po_index])
        duplicate_of = None
        if digits is not None:
            duplicate_of = first_row_of.setdefault(digits, row_no)
            if duplicate_of == row_no:
                duplicate_of = None
        rows.append(InputRow(row_no, values, digits, error, duplicate_of))
    return ParsedFile(
        name=name, fmt=fmt, columns=columns, po_column=columns[po_index], rows=tuple(rows),
        content_sha256=digest, encoding=encoding, delimiter=delimiter, sheet=sheet,
    )


def _trim(cells: list[str]) -> list[str]:
    """Drop empty trailing cells, which spreadsheets add freely and which carry nothing."""
    end = len(cells)
    while end and not cells[end - 1].strip():
        end -= 1
    return cells[:end]


def _column_names(header: list[str], width: int) -> tuple[str, ...]:
    """Header names made unique; a column without a name is called after its letter."""
    names: list[str] = []
    taken: set[str] = set()
    for index in range(width):
        base = header[index].strip() if index < len(header) else ""
        base = base or f"column {get_column_letter(index + 1)}"
        name, n = base, 1
        while name.casefold() in taken:
            n += 1
            name = f"{base} ({n})"
        taken.add(name.casefold())
        names.append(name)
    return tuple(names)


def _show_names(cells: list[str]) -> str:
    shown = [(c.strip()[:40] + "…" if len(c.strip()) > 40 else c.strip()) or "(empty)"
             for c in cells[:10]]
    more = f" and {len(cells) - 10:,} more" if len(cells) > 10 else ""
    return ", ".join(shown) + more


def _po_cell(cell: str) -> tuple[str | None, str | None]:
    text = cell.strip()
    if text.startswith("'"):  # Excel's "keep as text" mark, typed or exported
        text = text[1:]
    wrapped = _EXCEL_TEXT_FORMULA.match(text)
    if wrapped:
        text = wrapped.group(1)
    plain = _PLAIN_PO.fullmatch(text)
    if plain:  # the usual spelling, read without the general rules (a third of parse time)
        return plain.group(1), None
    try:
        return normalize(text).digits, None
    except InvalidPoNumber as exc:
        if _SCIENTIFIC.match(text.strip()):
            return None, (
                f"{text.strip()!r} is in scientific notation, which loses digits: "
                "format the PO column as text in Excel and export again"
            )
        return None, str(exc)
