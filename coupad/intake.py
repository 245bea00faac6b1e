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
import errno
import hashlib
import io
import itertools
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal
from xml.etree.ElementTree import ParseError

import openpyxl
from openpyxl.utils import get_column_letter
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet._read_only import ReadOnlyWorksheet

from coupad.errors import InputError
from coupad.records import RowIn
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
CHUNK = 1024 * 1024  # files are streamed: at most this much raw input is held at a time
# CSV: a line, a cell, and the text searched for the header are held whole in memory.
MAX_LINE_BYTES = 64 * 1024 * 1024  # far above a 10 MB note, far below the file limit
MAX_CELL_CHARS = MAX_LINE_BYTES
DELIMITER_SAMPLE_CHARS = 4 * 1024 * 1024
# XLSX: a workbook is a ZIP of XML parts, and a small ZIP may unpack to gigabytes. Worksheets
# are streamed row by row; every other part (shared strings, styles) is parsed whole. So
# the limits are on unpacked bytes (declared, and counted while reading: a header may lie),
# on one cell or tag (Excel holds 32,767 characters in a cell) and on one row.
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
MAX_SHEET_BYTES = 512 * 1024 * 1024
MAX_PART_BYTES = 128 * 1024 * 1024
MAX_XML_RUN = 1024 * 1024
MAX_ROW_XML = 16 * 1024 * 1024
_SHEETS = "xl/worksheets/"

# A C0 control character (tab, CR and LF aside) or DEL never appears in a text export.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # compound file: .xls, or an encrypted .xlsx
_NON_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
# Every byte but those two classes: deleting them leaves what the regexes would find.
_NOT_CONTROL = bytes(b for b in range(256) if not _CONTROL.match(bytes([b])))
_NOT_CP1252_UNDEFINED = bytes(b for b in range(256) if not _CP1252_UNDEFINED.match(bytes([b])))
_CR_AS_LF = bytes.maketrans(b"\r", b"\n")  # a line ends at either
_TOO_LONG_LINE = (f"a line is longer than {MAX_LINE_BYTES:,} bytes: this is not a list of "
                  "POs, or a quote (\") opened in it is never closed")
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
_SEP_LINE = re.compile(r"\Asep=(.)\r?\n\Z", re.IGNORECASE)  # Excel's delimiter hint line
_EXCEL_TEXT_FORMULA = re.compile(r'\A="(.*)"\Z', re.DOTALL)  # ="0123", Excel's keep-as-text
# What normalize() accepts unchanged or after a bare PO/PM prefix: "15262984", "PO15262984".
_PLAIN_PO = re.compile(rf"(?:[Pp][OoMm])?([0-9]{{{MIN_DIGITS},{MAX_DIGITS}}})")
_SCIENTIFIC = re.compile(r"\A\d(?:[.,]\d+)?E\+?\d+\Z", re.IGNORECASE)
_BLANK_CHARS = " \t\r\n\f\v\u00a0,;"
# Never part of accepted text (NUL is refused above), so it marks the end of the data exactly.
_SENTINEL = "\x00"

# The csv module refuses fields over 128 KiB by default; a 10 MB note must not sink a batch.
csv.field_size_limit(MAX_CELL_CHARS)


def _header_key(text: str) -> str:
    return re.sub(r"[\s_\-.]+", "", text).casefold()


_ALIAS_RANK = {_header_key(alias): rank for rank, alias in enumerate(PO_HEADER_ALIASES)}


@dataclass(frozen=True)
class ParsedFile:
    """A whole input file, ready to become one batch."""

    name: str  # the file name without folder and extension
    fmt: Literal["csv", "xlsx"]
    columns: tuple[str, ...]  # unique names; empty or extra columns are named by letter
    po_column: str
    rows: tuple[RowIn, ...]
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
    fd = _open(path)
    try:
        size = os.fstat(fd).st_size
        if suffix == ".csv":
            return _parse_csv(path.stem, fd, size, max_rows)
        return _parse_xlsx(path.stem, fd, size, max_rows)
    except OSError as exc:  # read errors while streaming: a disk or network share failing
        raise InputError(f"the file cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _open(path: Path) -> int:
    """The file opened for reading, checked to be a regular file of an acceptable size."""
    try:
        # O_NONBLOCK: a FIFO put in the file's place must not hang the daemon in open().
        # O_NOFOLLOW: a link put in its place must not make the daemon read another file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except PermissionError:
        raise InputError("the file cannot be read: permission denied") from None
    except FileNotFoundError:
        raise InputError("the file disappeared before it could be read") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("the file is a symbolic link, which is not read: copy the file "
                             "itself into the inbox") from None
        raise InputError(f"the file cannot be read: {exc.strerror or exc}") from None
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
    return fd


def _chunks(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of the file from ``start`` to ``end``, a chunk at a time."""
    offset = start
    while offset < end:
        chunk = os.pread(fd, min(CHUNK, end - offset), offset)
        if not chunk:
            return  # shorter than it was: the parse sees what is there
        yield offset, chunk
        offset += len(chunk)


def _sha256(fd: int, size: int) -> str:
    digest = hashlib.sha256()
    for _, chunk in _chunks(fd, 0, size):
        digest.update(chunk)
    return digest.hexdigest()


class _Window(io.RawIOBase):
    """Bytes ``start`` to ``end`` of an open file, read with pread (no shared offset)."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self._fd, self._pos, self._end = fd, start, end

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._end - self._pos)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._pos)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


# ---------------------------------------------------------------------------------------- CSV

@dataclass(frozen=True)
class _Text:
    """How a CSV file's bytes become text: which bytes, which codec, what to call it."""

    start: int
    end: int
    codec: str
    encoding: str


def _parse_csv(name: str, fd: int, size: int, max_rows: int) -> ParsedFile:
    digest = _sha256(fd, size)
    plan = _inspect_text(fd, size)
    stream = io.TextIOWrapper(io.BufferedReader(_Window(fd, plan.start, plan.end), CHUNK),
                              encoding=plan.codec, newline="")
    lines: Iterator[str] = iter(stream)  # no line is longer than MAX_LINE_BYTES (checked)
    first = next(lines, "")
    hint = _SEP_LINE.match(first)
    if hint and hint.group(1) in DELIMITERS:
        delimiter = hint.group(1)
    else:
        lines = itertools.chain([first], lines)
        sample: list[str] = []
        held = 0
        for line in lines:  # enough lines to find the header, held once in memory
            sample.append(line)
            held += len(line)
            if held >= DELIMITER_SAMPLE_CHARS:
                break
        delimiter = _pick_delimiter(sample)
        lines = itertools.chain(sample, lines)
    records = _csv_records(lines, delimiter)
    return _build(name, "csv", records, max_rows, digest, plan.encoding, delimiter, None)


def _inspect_text(fd: int, size: int) -> _Text:
    """Find the text's encoding in one streaming pass, or say why the file is not text."""
    end = size - 1 if size and os.pread(fd, 1, size - 1) == b"\x1a" else size  # DOS EOF mark
    head = os.pread(fd, min(4096, end), 0)
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return _inspect_utf16(fd, len(bom), end, codec, "utf-16")
    codec16 = _utf16_without_bom(head)
    if codec16:
        return _inspect_utf16(fd, 0, end, codec16, codec16)
    start = 3 if head.startswith(codecs.BOM_UTF8) else 0
    blank = True
    control: int | None = None
    utf8: Any = codecs.getincrementaldecoder("utf-8")()
    cp1252_bad: int | None = None
    line = _Gap(b"\n", MAX_LINE_BYTES)
    for offset, chunk in _chunks(fd, start, end):
        if not line.fits(chunk.translate(_CR_AS_LF)):
            raise InputError(_TOO_LONG_LINE)
        if blank and _NON_BLANK.search(chunk):
            blank = False
        if control is None and chunk.translate(None, _NOT_CONTROL):  # C speed, no match
            found = _CONTROL.search(chunk)
            control = offset + found.start() if found else None
        if utf8 is not None:
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError:
                utf8 = None
        if cp1252_bad is None and chunk.translate(None, _NOT_CP1252_UNDEFINED):
            found = _CP1252_UNDEFINED.search(chunk)
            cp1252_bad = offset + found.start() if found else None
    if utf8 is not None:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = None
    if blank:
        raise InputError("the file is empty")
    body = os.pread(fd, 16, start)
    for signature, what in _SIGNATURES:
        if body.startswith(signature):
            raise InputError(f"the file is not text: it looks like {what} named .csv")
    if control is not None:
        raise InputError(f"the file is not text (binary data at byte {control})")
    if utf8 is not None:
        return _Text(start, end, "utf-8", "utf-8-sig" if start else "utf-8")
    # European Excel writes cp1252, sometimes behind a UTF-8 BOM: the bytes decide, not the BOM.
    if cp1252_bad is not None:
        bad = os.pread(fd, 1, cp1252_bad)[0]
        raise InputError("the file is not text in UTF-8 or Windows-1252 "
                         f"(undecodable byte 0x{bad:02x} at byte {cp1252_bad})")
    return _Text(start, end, "cp1252", "cp1252")


def _inspect_utf16(fd: int, start: int, end: int, codec: str, encoding: str) -> _Text:
    decoder = codecs.getincrementaldecoder(codec)()
    blank = True
    control: int | None = None
    chars = 0
    line = _Gap(b"\n", MAX_LINE_BYTES)  # the newline's zero byte is beside it, not inside
    for offset, chunk in _chunks(fd, start, end):
        if not line.fits(chunk.translate(_CR_AS_LF)):
            raise InputError(_TOO_LONG_LINE)
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise InputError("the file is not text: damaged UTF-16 at byte "
                             f"{offset - pending + exc.start}") from None
        if blank and text.strip():
            blank = False
        if control is None:
            found = _CONTROL_TEXT.search(text)
            control = start + 2 * (chars + found.start()) if found else None
        chars += len(text)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise InputError(f"the file is not text: damaged UTF-16 at byte {end - 1}") from exc
    if blank:
        raise InputError("the file is empty")
    if control is not None:
        raise InputError(f"the file is not text (binary data at byte {control})")
    return _Text(start, end, codec, encoding)


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


def _pick_delimiter(sample: list[str]) -> str:
    """The delimiter under which a header with a PO column appears, widest header first."""

    def score(delimiter: str) -> tuple[bool, int]:
        try:
            header, first = _find_header(_numbered(_csv_records(iter(sample), delimiter)))
        except InputError:  # a quote left open under this delimiter; the chosen one reports it
            return False, 0
        if header is not None:
            return True, len(_trim(header[1]))
        return False, len(_trim(first or []))

    return max(DELIMITERS, key=score)


def _csv_records(lines: Iterator[str], delimiter: str) -> Iterator[list[str]]:
    """Every record of the text; a quote left open at the end is an error, not a swallowed tail."""
    reader = csv.reader(itertools.chain(lines, [_SENTINEL]), delimiter=delimiter)
    start = 1
    try:
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
    except csv.Error:  # only the field size limit: the reader is not strict
        raise InputError(
            f"a cell in row {start} is longer than {MAX_CELL_CHARS:,} characters; a quote "
            "(\") opened there is probably never closed"
        ) from None


# --------------------------------------------------------------------------------------- XLSX

def _parse_xlsx(name: str, fd: int, size: int, max_rows: int) -> ParsedFile:
    head = os.pread(fd, 4096, 0)
    if head.startswith(_OLE2):
        raise InputError(
            "not a readable Excel file: it is password-protected or an old .xls workbook; "
            "save it as an .xlsx workbook without a password"
        )
    if not head.startswith(b"PK"):
        if size <= len(head) and not head.strip():
            raise InputError("the file is empty")
        what = "plain text (a CSV file named .xlsx?)" if not _CONTROL.search(head) \
            else "not an .xlsx workbook"
        raise InputError(f"not a readable Excel file: it is {what}")
    digest = _sha256(fd, size)
    with os.fdopen(os.dup(fd), "rb") as stream:
        workbook, sheet_name, records = _xlsx_records(stream)
        try:
            return _build(name, "xlsx", records, max_rows, digest, None, None, sheet_name)
        finally:
            workbook.close()


def _xlsx_records(stream: BinaryIO) -> tuple[Workbook, str, Iterator[list[str]]]:
    try:
        with zipfile.ZipFile(stream) as archive:
            _check_unpacked(archive)
        stream.seek(0)
        workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
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


def _check_unpacked(archive: zipfile.ZipFile) -> None:
    """Refuse a ZIP bomb before openpyxl unpacks it: the XML parts' sizes, as declared and
    as counted while streaming them (a header may lie), and their longest runs of text and
    rows, which is what the parser must hold in memory at once."""
    parts = [info for info in archive.infolist() if _is_xml_part(info.filename)]
    declared = sum(info.file_size for info in parts)
    if declared > MAX_UNPACKED_BYTES:
        raise InputError(_too_large_unpacked(f"{declared:,} bytes", MAX_UNPACKED_BYTES))
    for info in parts:
        if info.file_size > _part_limit(info.filename):
            raise InputError(_too_large_unpacked(
                f"its part {info.filename} to {info.file_size:,} bytes",
                _part_limit(info.filename)))
    total = 0
    for info in parts:
        limit = _part_limit(info.filename)
        counted = 0
        text = _Gap(b"<", MAX_XML_RUN)
        row = _Gap(b"row", MAX_ROW_XML)
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                counted += len(chunk)
                total += len(chunk)
                if counted > limit:
                    raise InputError(_too_large_unpacked(
                        f"its part {info.filename} to more than {counted:,} bytes", limit))
                if total > MAX_UNPACKED_BYTES:
                    raise InputError(_too_large_unpacked(f"more than {total:,} bytes",
                                                         MAX_UNPACKED_BYTES))
                if not text.fits(chunk):
                    raise InputError(
                        f"not a readable Excel file: {info.filename} holds more than "
                        f"{MAX_XML_RUN:,} bytes in one cell or tag (Excel allows 32,767 "
                        "characters in a cell)")
                if info.filename.startswith(_SHEETS) and not row.fits(chunk):
                    raise InputError(
                        f"not a readable Excel file: a row of {info.filename} is more than "
                        f"{MAX_ROW_XML:,} bytes when unpacked")


class _Gap:
    """The longest stretch of a stream without ``needle``, kept within ``limit``."""

    def __init__(self, needle: bytes, limit: int) -> None:
        self.needle, self.limit, self.run = needle, limit, 0
        self._tail = b""  # the needle may straddle two chunks

    def fits(self, chunk: bytes) -> bool:
        joined = self._tail + chunk
        first = joined.find(self.needle)
        if first < 0:
            self.run += len(chunk)
        else:
            if self.run + first - len(self._tail) > self.limit:
                return False
            self.run = len(joined) - joined.rfind(self.needle) - len(self.needle)
        self._tail = joined[-(len(self.needle) - 1):] if len(self.needle) > 1 else b""
        return self.run <= self.limit


def _is_xml_part(name: str) -> bool:
    """The parts openpyxl reads: XML and relationships; images and macros it leaves alone."""
    return name.lower().endswith((".xml", ".rels"))


def _part_limit(name: str) -> int:
    # A worksheet is streamed row by row; every other part is parsed whole into memory.
    return MAX_SHEET_BYTES if name.startswith(_SHEETS) else MAX_PART_BYTES


def _too_large_unpacked(what: str, limit: int) -> str:
    return f"the workbook is too large when unpacked: {what} (the limit is {limit:,})"


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
    rows: list[RowIn] = []
    first_row_of: dict[str, int] = {}
    for row_no, cells in raw_rows:
        values = tuple(cells) + ("",) * (width - len(cells))
        digits, error = _po_cell(values[po_index])
        duplicate_of = None
        if digits is not None:
            duplicate_of = first_row_of.setdefault(digits, row_no)
            if duplicate_of == row_no:
                duplicate_of = None
        rows.append(RowIn(row_no, values, digits, error, duplicate_of))
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
