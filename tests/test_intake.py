import hashlib
import os
from pathlib import Path

import pytest

import corpus
from coupad.errors import InputError
from coupad.intake import MAX_FILE_BYTES, parse_file
from coupad.records import RowIn
from coupad.ponumber import InvalidPoNumber, normalize

READ_CASES = [c for c in corpus.CASES if not c.ignored]


def test_the_corpus_holds_at_least_thirty_hostile_files():
    assert len([c for c in READ_CASES if c.rejected or c.invalid]) >= 30
    assert len({c.name for c in corpus.CASES}) == len(corpus.CASES)


@pytest.mark.parametrize("case", [c for c in READ_CASES if c.rejected], ids=lambda c: c.name)
def test_hostile_file_is_rejected_in_plain_words(case, tmp_path):
    path = corpus.write(case, tmp_path)
    with pytest.raises(InputError) as caught:
        parse_file(path, max_rows=corpus.MAX_ROWS)
    message = str(caught.value)
    assert case.rejected in message
    assert len(message) < 300 and "Traceback" not in message


@pytest.mark.parametrize("case", [c for c in READ_CASES if c.accepted], ids=lambda c: c.name)
def test_hostile_file_is_accepted_with_exactly_its_row_errors(case, tmp_path):
    path = corpus.write(case, tmp_path)
    parsed = parse_file(path, max_rows=corpus.MAX_ROWS)
    errors = {r.row_no: r.error for r in parsed.rows if r.error is not None}
    assert set(errors) == set(case.invalid), errors
    for row_no, words in case.invalid.items():
        assert words in str(errors[row_no])
    for row in parsed.rows:
        assert len(row.values) == len(parsed.columns)
        assert (row.po_digits is None) == (row.error is not None)
    assert parsed.po_column in parsed.columns
    assert parsed.content_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    if case.check:
        case.check(parsed)


def test_a_plain_file_reads_into_rows_with_numbers_a_person_sees(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("PO_NUMBER,Supplier\nPO15262984,Acme\n\n15262985,Beta\npo 15262984,Acme\n")
    parsed = parse_file(path, max_rows=100)
    assert parsed.name == "orders" and parsed.fmt == "csv" and parsed.delimiter == ","
    assert parsed.rows == (
        RowIn(2, ("PO15262984", "Acme"), "15262984", None, None),
        RowIn(4, ("15262985", "Beta"), "15262985", None, None),
        RowIn(5, ("po 15262984", "Acme"), "15262984", None, 2),
    )
    assert parsed.po_numbers == ("15262984", "15262985")


def test_a_folder_named_like_a_csv_is_rejected(tmp_path):
    (tmp_path / "x.csv").mkdir()
    with pytest.raises(InputError, match="folder"):
        parse_file(tmp_path / "x.csv", max_rows=10)


def test_a_vanished_file_is_an_input_error_not_a_crash(tmp_path):
    with pytest.raises(InputError, match="disappeared"):
        parse_file(tmp_path / "gone.csv", max_rows=10)


def test_other_extensions_are_refused(tmp_path):
    path = tmp_path / "orders.txt"
    path.write_bytes(corpus.GOOD_CSV)
    with pytest.raises(InputError, match="only .csv and .xlsx"):
        parse_file(path, max_rows=10)


def test_row_limit_counts_data_rows_not_the_header(tmp_path):
    path = tmp_path / "limit.csv"
    path.write_bytes(corpus.rows_csv(3))
    assert len(parse_file(path, max_rows=3).rows) == 3
    with pytest.raises(InputError, match=r"too many rows: 3 \(the limit is inbox.max_rows = 2\)"):
        parse_file(path, max_rows=2)


@pytest.mark.timeout(60)
def test_a_hundred_thousand_row_csv_parses_every_row(tmp_path):
    # Its speed is measured by `make bench`, not asserted here.
    path = tmp_path / "big.csv"
    lines = ["PO_NUMBER,Supplier,Amount,Note"] + [
        f"PO{15_000_000 + i},Supplier {i % 97},{i}.50,some free text here" for i in range(100_000)
    ]
    path.write_text("\n".join(lines) + "\n")
    parsed = parse_file(path, max_rows=200_000)
    assert len(parsed.rows) == 100_000 and len(parsed.po_numbers) == 100_000
    assert parsed.rows[-1].row_no == 100_001 and parsed.rows[-1].po_digits == "15099999"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_row_numbers_follow_records_not_physical_lines(tmp_path, newline):
    path = tmp_path / "multi.csv"
    content = newline.join(["PO_NUMBER,Note", '15262984,"a', 'b', 'c"', "", "bad,x", ""])
    path.write_text(content, newline="")
    parsed = parse_file(path, max_rows=10)
    assert [(r.row_no, r.po_digits) for r in parsed.rows] == [(2, "15262984"), (4, None)]
    assert parsed.rows[0].values[1] == newline.join("abc")


def test_every_corpus_file_name_is_distinct_on_a_case_insensitive_disk():
    assert len({c.name.casefold() for c in corpus.CASES}) == len(corpus.CASES)


def test_good_xlsx_keeps_the_sheet_and_format(tmp_path):
    path = tmp_path / "book.xlsx"
    path.write_bytes(corpus.good_xlsx())
    parsed = parse_file(path, max_rows=10)
    assert (parsed.fmt, parsed.sheet, parsed.encoding, parsed.delimiter) == (
        "xlsx", "Sheet1", None, None)
    assert parsed.rows[0].values == ("PO15262984", "Acme")


def test_corpus_writes_real_files(tmp_path):
    written = [corpus.write(c, tmp_path) for c in corpus.CASES]
    assert all(isinstance(p, Path) and p.is_file() for p in written)


SPELLINGS = ["15262984", "PO15262984", "po15262984", "pO15262984", "PM987654", "pm987654",
             "P0123456", "PO12345", "123456", "1" * 15, "1" * 16, "PO" + "9" * 15,
             "PO" + "9" * 16, "PO-15262984", "PO 15262984", "١٢٣٤٥٦٧", "0000000", "PX123456"]


@pytest.mark.parametrize("cell", SPELLINGS)
def test_po_cells_read_exactly_as_ponumber_normalize_reads_them(tmp_path, cell):
    path = tmp_path / "spellings.csv"
    path.write_text(f"PO_NUMBER\n{cell}\n", encoding="utf-8")
    [row] = parse_file(path, max_rows=10).rows
    try:
        expected: tuple[str | None, str | None] = (normalize(cell).digits, None)
    except InvalidPoNumber as exc:
        expected = (None, str(exc))
    assert (row.po_digits, row.error) == expected


@pytest.mark.timeout(20)
def test_a_pipe_or_device_in_place_of_the_file_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        parse_file(fifo, max_rows=10)
    device = tmp_path / "zero.csv"
    device.symlink_to("/dev/zero")  # a link is not followed at all, whatever it points to
    with pytest.raises(InputError, match="symbolic link"):
        parse_file(device, max_rows=10)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.csv"
    with path.open("wb") as stream:
        stream.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used, nothing read
    with pytest.raises(InputError, match=r"the file is too large: 268,435,457 bytes"):
        parse_file(path, max_rows=10)
