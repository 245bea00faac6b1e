"""Hostile input files built by code, each with the exact outcome coupad must give it.

A case is either rejected (the message must contain ``rejected``), accepted with row errors
(``invalid`` maps each invalid row number to words of its reason, and no other row may be
invalid), or ignored by the inbox altogether (temporary and lock files).
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import random
import re
import struct
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl

from coupad.intake import ParsedFile

MAX_ROWS = 1_000  # the limit the corpus is read with, small so the over-limit file stays small
GOOD_CSV = b"PO_NUMBER,Supplier\r\nPO15262984,Acme\r\n"


@dataclass(frozen=True)
class Case:
    name: str  # the file name, which also tells the format
    build: Callable[[], bytes]
    rejected: str = ""  # words the rejection must contain; "" when the file is accepted
    invalid: Mapping[int, str] = field(default_factory=dict)  # row number → words of its error
    check: Callable[[ParsedFile], None] | None = None
    ignored: bool = False  # a temporary or lock file that the inbox must never pick

    @property
    def accepted(self) -> bool:
        return not self.rejected and not self.ignored


def write(case: Case, folder: Path) -> Path:
    """Write one case's file into ``folder`` and return its path."""
    path = folder / case.name
    path.write_bytes(case.build())
    return path


# ----------------------------------------------------------------------------------- builders

def text(content: str, encoding: str = "utf-8") -> Callable[[], bytes]:
    return lambda: content.encode(encoding)


def xlsx(sheets: Mapping[str, Sequence[Sequence[object]]]) -> bytes:
    """A workbook with the given sheets, in order, the first one active."""
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def rewrite_zip(data: bytes, edit: Callable[[str, bytes], bytes]) -> bytes:
    """The same ZIP with every member passed through ``edit(name, content)``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, edit(info.filename, source.read(info)))
    return out.getvalue()


def with_cached_formula_values(data: bytes) -> bytes:
    """Fill formula results in as Excel does when it saves (openpyxl leaves them empty)."""
    def edit(name: str, content: bytes) -> bytes:
        if name.startswith("xl/worksheets/"):
            return content.replace(b"<f>SUM(1,2)</f><v />", b"<f>SUM(1,2)</f><v>3</v>").replace(
                b'<f>"PO"&amp;"15262999"</f><v />',
                b'<f>"PO"&amp;"15262999"</f><v>PO15262999</v>',
            ).replace(b'<c r="A3"><f>', b'<c r="A3" t="str"><f>')
        return content
    return rewrite_zip(data, edit)


def with_wrong_dimension(data: bytes) -> bytes:
    """Claim the sheet is a single cell, as some exporters write, though it holds more."""
    def edit(name: str, content: bytes) -> bytes:
        if name.startswith("xl/worksheets/"):
            return re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1"', content)
        return content
    return rewrite_zip(data, edit)


def with_declared_size(data: bytes, size: int) -> bytes:
    """Forge the central directory so the first member claims ``size`` bytes unpacked."""
    directory = data.index(b"PK\x01\x02")  # the first central directory header
    return data[: directory + 24] + struct.pack("<I", size) + data[directory + 28:]


def good_xlsx() -> bytes:
    return xlsx({"Sheet1": [["PO_NUMBER", "Supplier"], ["PO15262984", "Acme"]]})


def garbage(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def rows_csv(n: int) -> bytes:
    lines = ["PO_NUMBER,Line"] + [f"{10_000_000 + i},{i}" for i in range(n)]
    return ("\r\n".join(lines) + "\r\n").encode()


# ------------------------------------------------------------------------------------- checks

def values(row_no: int, expected: tuple[str, ...]) -> Callable[[ParsedFile], None]:
    def check(parsed: ParsedFile) -> None:
        row = next(r for r in parsed.rows if r.row_no == row_no)
        assert row.values == expected, row.values
    return check


def all_checks(*checks: Callable[[ParsedFile], None]) -> Callable[[ParsedFile], None]:
    def check(parsed: ParsedFile) -> None:
        for one in checks:
            one(parsed)
    return check


def meta(**expected: object) -> Callable[[ParsedFile], None]:
    def check(parsed: ParsedFile) -> None:
        for key, value in expected.items():
            assert getattr(parsed, key) == value, (key, getattr(parsed, key))
    return check


def po_digits(*digits: str | None) -> Callable[[ParsedFile], None]:
    def check(parsed: ParsedFile) -> None:
        assert tuple(r.po_digits for r in parsed.rows) == digits, parsed.rows
    return check


def duplicates(expected: dict[int, int | None]) -> Callable[[ParsedFile], None]:
    def check(parsed: ParsedFile) -> None:
        assert {r.row_no: r.duplicate_of for r in parsed.rows} == expected
    return check


def cell_length(row_no: int, column: int, length: int) -> Callable[[ParsedFile], None]:
    def check(parsed: ParsedFile) -> None:
        row = next(r for r in parsed.rows if r.row_no == row_no)
        assert len(row.values[column]) == length
    return check


def row_count(n: int) -> Callable[[ParsedFile], None]:
    def check(parsed: ParsedFile) -> None:
        assert len(parsed.rows) == n, len(parsed.rows)
    return check


def row_numbers(*numbers: int) -> Callable[[ParsedFile], None]:
    def check(parsed: ParsedFile) -> None:
        assert tuple(r.row_no for r in parsed.rows) == numbers
    return check


# -------------------------------------------------------------------------------------- cases

BOM = codecs.BOM_UTF8
TEN_MB = 10 * 1024 * 1024

CASES: tuple[Case, ...] = (
    # Nothing to read.
    Case("empty.csv", lambda: b"", rejected="the file is empty"),
    Case("only-bom.csv", lambda: BOM, rejected="the file is empty"),
    Case("only-newlines.csv", lambda: b"\r\n\n  \r\n\t\n", rejected="the file is empty"),
    Case("only-delimiters.csv", lambda: b",,,\r\n,,,\r\n", rejected="the file is empty"),
    Case("empty.xlsx", lambda: b"", rejected="the file is empty"),
    Case("header-only.csv", text("PO_NUMBER,Supplier\r\n"),
         rejected="the file has a header row but no data rows"),
    Case("header-then-blank-lines.csv", text("PO_NUMBER,Supplier\r\n\r\n,\r\n\r\n"),
         rejected="the file has a header row but no data rows"),
    Case("no-po-column.csv", text("Supplier,Amount\nAcme,3\n"),
         rejected="no PO number column: expected one of PO_NUMBER, PO Number, "),
    Case("no-po-column-says-what-it-found.csv", text("Supplier;Order Date;Amount\nAcme;x;3\n"),
         rejected="found: Supplier, Order Date, Amount"),
    # Not text at all.
    Case("binary-garbage.csv", lambda: garbage(4096, seed=4), rejected="the file is not text"),
    Case("png-renamed.csv", lambda: b"\x89PNG\r\n\x1a\n" + garbage(500, seed=5),
         rejected="the file is not text: it looks like a PNG image"),
    Case("pdf-renamed.csv", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + garbage(300, seed=6),
         rejected="it looks like a PDF document"),
    Case("xlsx-renamed.csv", good_xlsx, rejected="it looks like an Excel .xlsx workbook"),
    Case("nul-bytes.csv", text("PO_NUMBER\n1526\x002984\n"),
         rejected="the file is not text (binary data at byte 14)"),
    Case("undecodable.csv", lambda: b"PO_NUMBER,Note\n15262984,\x81\x8d\n",
         rejected="not text in UTF-8 or Windows-1252 (undecodable byte 0x81 at byte 24)"),
    # Excel files that cannot be opened.
    Case("garbage.xlsx", lambda: garbage(2048, seed=7), rejected="not a readable Excel file"),
    Case("zip-without-workbook.xlsx",
         lambda: rewrite_zip(good_xlsx(), lambda name, c: c if "workbook" not in name else b"x"),
         rejected="not a readable Excel file"),
    Case("plain-zip.xlsx", lambda: _zip_of({"notes.txt": b"hello"}),
         rejected="not a readable Excel file"),
    Case("zip-bomb.xlsx", lambda: with_declared_size(good_xlsx(), 4_000_000_000),
         rejected="the workbook is too large when unpacked: 4,000,"),
    Case("truncated.xlsx", lambda: good_xlsx()[: len(good_xlsx()) // 2],
         rejected="not a readable Excel file: the file is damaged or incomplete"),
    Case("encrypted.xlsx", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + garbage(4000, seed=8),
         rejected="not a readable Excel file: it is password-protected"),
    Case("csv-renamed.xlsx", lambda: GOOD_CSV,
         rejected="not a readable Excel file: it is plain text (a CSV file named .xlsx?)"),
    Case("xlsx-header-only.xlsx", lambda: xlsx({"Sheet1": [["PO_NUMBER", "Supplier"]]}),
         rejected="the file has a header row but no data rows in sheet 'Sheet1'"),
    Case("xlsx-no-po-column.xlsx", lambda: xlsx({"Data": [["Supplier"], ["Acme"]]}),
         rejected="no PO number column in sheet 'Data'"),
    Case("xlsx-empty-sheet.xlsx", lambda: xlsx({"Leer": []}),
         rejected="the sheet 'Leer' is empty"),
    # Size limits.
    Case("over-max-rows.csv", lambda: rows_csv(MAX_ROWS + 1),
         rejected="too many rows: 1,001 (the limit is inbox.max_rows = 1,000)"),
    Case("at-max-rows-with-blank-lines.csv",
         lambda: rows_csv(MAX_ROWS).replace(b"\r\n1000000", b"\r\n\r\n,,\r\n1000000"),
         check=row_count(MAX_ROWS)),
    Case("too-many-columns.csv", text("PO_NUMBER,Note\n15262984," + "x," * 20_000 + "x\n"),
         rejected="too many columns: 20,002 in row 2"),
    Case("million-char-header.csv", text("A" * 1_000_000 + "\n15262984\n"),
         rejected="found: " + "A" * 40 + "…"),
    Case("ten-mb-field.csv", lambda: b"PO_NUMBER,Note\n15262984,\"" + b"x" * TEN_MB + b"\"\n",
         check=cell_length(2, 1, TEN_MB)),
    Case("million-char-line.csv",
         text("PO_NUMBER,Note\n15262984," + "y" * 1_000_000 + "\n15262985,short\n"),
         check=all_checks(cell_length(2, 1, 1_000_000), po_digits("15262984", "15262985"))),
    # Encodings and delimiters.
    Case("utf16-without-bom.csv",
         text("PO_NUMBER\tNote\r\n15262984\tÄpfel\r\n", "utf-16-le"),
         check=all_checks(meta(encoding="utf-16-le", delimiter="\t"),
                          values(2, ("15262984", "Äpfel")))),
    Case("utf16-with-bom.csv", lambda: codecs.BOM_UTF16_LE + "PO\tNote\r\n15262984\t€\r\n".encode(
        "utf-16-le"), check=all_checks(meta(encoding="utf-16"), values(2, ("15262984", "€")))),
    Case("utf8-bom.csv", lambda: BOM + "PO_NUMBER,Note\n15262984,naïve\n".encode(),
         check=all_checks(meta(encoding="utf-8-sig", columns=("PO_NUMBER", "Note")),
                          values(2, ("15262984", "naïve")))),
    Case("cp1252-semicolon-bom.csv",
         lambda: BOM + "PO_NUMBER;Lieferant;Bemerkung\r\n15262984;Müller GmbH;Größe € 5\r\n"
         .encode("cp1252"),
         check=all_checks(meta(encoding="cp1252", delimiter=";",
                               columns=("PO_NUMBER", "Lieferant", "Bemerkung")),
                          values(2, ("15262984", "Müller GmbH", "Größe € 5")))),
    Case("cp1252-no-bom.csv", text("Bestellnummer;PO\r\nx;15262984\r\nCafé;15262985\r\n", "cp1252"),
         check=all_checks(meta(encoding="cp1252", po_column="PO"),
                          values(3, ("Café", "15262985")))),
    Case("tab-delimited.csv", text("Supplier\tPO Number\tNote, with comma\nAcme\t15262984\ta,b\n"),
         check=all_checks(meta(delimiter="\t"), values(2, ("Acme", "15262984", "a,b")))),
    Case("excel-sep-hint.csv", text("sep=;\r\nPO;Note\r\n15262984;a,b\r\n"),
         check=all_checks(meta(delimiter=";"), values(2, ("15262984", "a,b")))),
    Case("mixed-newlines.csv", text("PO_NUMBER,N\r\n15262981,a\n15262982,b\r15262983,c\r\n"),
         check=all_checks(po_digits("15262981", "15262982", "15262983"), row_numbers(2, 3, 4))),
    # Quotes.
    Case("quoted-newlines-and-delimiters.csv",
         text('PO_NUMBER,Note\n"15262984","two\nlines, and ""quotes"""\n15262985,"a;b"\n'),
         check=all_checks(values(2, ("15262984", 'two\nlines, and "quotes"')),
                          row_numbers(2, 3))),
    Case("lone-quote.csv", text('PO_NUMBER,Note\n15262984,"oops\n15262985,ok\n15262986,ok\n'),
         rejected="a quote (\") opened in row 2 is never closed"),
    Case("quote-inside-field.csv", text('PO_NUMBER,Note\n15262984,5" screen\n'),
         check=values(2, ("15262984", '5" screen'))),
    # Cells a spreadsheet would run, kept verbatim here (the report neutralises them).
    Case("formula-injection.csv",
         text('PO_NUMBER,Note\n15262984,"=HYPERLINK(""http://evil.example"",""x"")"\n'
              "15262985,+cmd|' /C calc'!A0\n=1+1,@SUM(A1:A9)\n15262986,-2+3\n"),
         invalid={4: "not a PO number"},
         check=values(2, ("15262984", '=HYPERLINK("http://evil.example","x")'))),
    # Row errors, duplicates, Excel-ish numbers.
    Case("mixed-valid-and-invalid.csv",
         text("PO_NUMBER,Supplier\n15262984,Acme\n,Orphan Ltd\nabc,x\n12345,y\n"
              "PO 15262985,z\n1526298.5,w\n"),
         invalid={3: "the PO number is empty", 4: "'abc' is not a PO number",
                  5: "too short", 7: "not a PO number"}),
    Case("all-rows-invalid.csv", text("PO_NUMBER\nfoo\nbar\n"),
         invalid={2: "'foo' is not a PO number", 3: "'bar' is not a PO number"}),
    Case("duplicates-in-spellings.csv",
         text("PO_NUMBER\nPO15262984\npo 15262984\n15262984\n15262984.0\n"
              "\"=\"\"15262984\"\"\"\n'15262984\nPM15262984\n15262985\n"),
         check=duplicates({2: None, 3: 2, 4: 2, 5: 2, 6: 2, 7: 2, 8: 2, 9: None})),
    Case("excel-floats.csv", text("PO_NUMBER\n15262984.0\n1.5262984E+07\n15262985.00\n"),
         invalid={3: "scientific notation"},
         check=po_digits("15262984", None, "15262985")),
    # Headers.
    Case("header-odd-case-and-spaces.csv", text("  po_Number  ,  SUPPLIER \n15262984,Acme\n"),
         check=meta(po_column="po_Number", columns=("po_Number", "SUPPLIER"))),
    Case("header-aliases-ranked.csv", text("Order Number,PO #\n111111111,15262984\n"),
         check=all_checks(meta(po_column="PO #"), po_digits("15262984"))),
    Case("duplicate-header-names.csv", text("Note,PO_NUMBER,Note,PO_NUMBER,\n"
                                            "a,15262984,b,999999999,c\n"),
         check=all_checks(meta(columns=("Note", "PO_NUMBER", "Note (2)", "PO_NUMBER (2)",
                                        "column E"), po_column="PO_NUMBER"),
                          po_digits("15262984"))),
    Case("title-rows-above-header.csv", text("Export from Coupa\n\nPO Number,Note\n15262984,a\n"),
         check=all_checks(row_numbers(4), values(4, ("15262984", "a")))),
    Case("ragged-rows.csv", text("PO_NUMBER,A,B\n15262984\n15262985,a,b,c,d\n15262986,x,,,,\n"),
         check=all_checks(meta(columns=("PO_NUMBER", "A", "B", "column D", "column E")),
                          values(2, ("15262984", "", "", "", "")),
                          values(3, ("15262985", "a", "b", "c", "d")),
                          values(4, ("15262986", "x", "", "", "")))),
    # Excel workbooks.
    Case("xlsx-po-data-second.xlsx",
         lambda: xlsx({"Summary": [["Nothing", "here"]],
                       "PO_Data": [["PO Number", "Supplier"], [15262984, "Acme"]]}),
         check=all_checks(meta(sheet="PO_Data", fmt="xlsx"), po_digits("15262984"))),
    Case("xlsx-first-sheet.xlsx",
         lambda: xlsx({"Orders": [["PO", "Supplier"], ["PO15262984", "Acme"]],
                       "Other": [["PO"], ["15262985"]]}),
         check=all_checks(meta(sheet="Orders"), po_digits("15262984"))),
    Case("xlsx-formulas-dates-floats.xlsx",
         lambda: with_cached_formula_values(xlsx({"Sheet": [
             ["PO_NUMBER", "Total", "Ordered", "At", "Flag", "Ratio"],
             [15262984.0, "=SUM(1,2)", dt.date(2024, 3, 1), dt.datetime(2024, 3, 1, 12, 30),
              True, 0.25],
             ['="PO"&"15262999"', None, None, None, None, None],
             [None, "orphan", None, None, None, None],
         ]})),
         invalid={4: "the PO number is empty"},
         check=all_checks(values(2, ("15262984", "3", "2024-03-01", "2024-03-01 12:30:00",
                                     "TRUE", "0.25")),
                          po_digits("15262984", "15262999", None))),
    Case("xlsx-wrong-dimension.xlsx",
         lambda: with_wrong_dimension(xlsx({"Sheet": [["PO_NUMBER", "Note"]] + [
             [15262980 + i, f"n{i}"] for i in range(5)]})),
         check=all_checks(row_numbers(2, 3, 4, 5, 6), values(6, ("15262984", "n4")))),
    Case("xlsx-gaps-keep-row-numbers.xlsx",
         lambda: xlsx({"Sheet": [["PO_NUMBER"], [15262984], [], [], [15262985]]}),
         check=row_numbers(2, 5)),
    # Odd file names that are still ordinary inputs.
    Case("Bestellungen März 2024 ..final...csv", lambda: GOOD_CSV,
         check=meta(name="Bestellungen März 2024 ..final..")),
    Case("UPPER CASE.CSV", lambda: GOOD_CSV, check=meta(name="UPPER CASE", fmt="csv")),
    # Never to be read: temporary, lock and hidden files.
    Case("~$orders.xlsx", good_xlsx, ignored=True),
    Case(".~lock.orders.csv#", lambda: b"someone,host,2024\n", ignored=True),
    Case("orders.csv.part", lambda: GOOD_CSV, ignored=True),
    Case("orders.csv.tmp", lambda: GOOD_CSV, ignored=True),
    Case("orders.xlsx.crdownload", good_xlsx, ignored=True),
    Case(".hidden.csv", lambda: GOOD_CSV, ignored=True),
    Case("orders.txt", lambda: GOOD_CSV, ignored=True),
)


def _zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()
