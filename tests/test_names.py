import unicodedata
from pathlib import Path

import pytest

from coupad.names import (
    DEFAULT_MAX_BYTES,
    filename_from_content_disposition,
    safe_name,
    split_extension,
    unique_name,
)

AWKWARD = [
    "quote for PO 123.pdf",
    "  leading and trailing spaces  .pdf",
    "Angebot Müller.pdf",
    unicodedata.normalize("NFD", "Angebot Müller.pdf"),
    'he said "yes", then \'no\'.docx',
    'a/b\\c:d*e?f"g<h>i|j.xlsx',
    "..",
    ".",
    "...",
    "../../etc/passwd",
    "..\\..\\Windows\\System32\\config",
    "/etc/passwd",
    "C:\\Users\\x\\evil.exe",
    "\\\\server\\share\\x.pdf",
    "x\x00y.pdf",
    "\x00",
    "tab\there\nnewline\rcr\x1bescape\x7fdel\x85nel.txt",
    "evil\u202efdp.exe",
    "CON",
    "con",
    "prn.txt",
    "AUX.tar.gz",
    "nul.",
    "LPT1",
    "com9.log",
    "COM¹.txt",
    "CON .txt",
    "trailing dots...",
    "trailing spaces.pdf   ",
    "trailing dot and space. . .",
    ".hidden",
    "a" * 300,
    "a" * 300 + ".pdf",
    "b" * 300 + ".averyveryverylongextensionthatisnotone",
    "😀" * 100 + ".docx",
    "é" * 300,
    "日本語のファイル名" * 30 + ".pdf",
    "",
    "   ",
    "manifest.json",
    "\ud800lone surrogate.pdf",
    "name.with.many.dots.pdf",
]


@pytest.mark.parametrize("name", AWKWARD)
def test_awkward_names_become_one_harmless_component(name, tmp_path):
    result = safe_name(name)
    assert result, "never empty"
    assert result not in (".", "..")
    assert "/" not in result and "\\" not in result
    assert len(result.encode()) <= DEFAULT_MAX_BYTES
    assert not any(unicodedata.category(c) == "Cc" for c in result)
    assert not any(c in ':*?"<>|' for c in result)
    assert result == result.strip(" ."), "no leading or trailing dots and spaces"
    assert result == unicodedata.normalize("NFC", result)
    stem = result.split(".", 1)[0].rstrip(" ").upper()
    assert stem not in {"CON", "PRN", "AUX", "NUL", "LPT1", "COM9", "COM¹"}
    joined = (tmp_path / result).resolve()
    assert joined.parent == tmp_path.resolve(), "joined to the folder it stays in the folder"
    assert Path(result).name == result
    assert safe_name(result) == result, "safe names are stable"
    # The result can really be created and read back on this file system.
    (tmp_path / result).write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == [result]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("quote for PO 123.pdf", "quote for PO 123.pdf"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("/etc/passwd", "_etc_passwd"),
        ("x\x00y.pdf", "xy.pdf"),
        ("CON", "CON_"),
        ("prn.txt", "prn_.txt"),
        ("AUX.tar.gz", "AUX_.tar.gz"),
        ("lpt1", "lpt1_"),
        ("CONTRACT.pdf", "CONTRACT.pdf"),
        ("trailing. . .", "trailing"),
        ("", "attachment"),
        ("..", "attachment"),
        ("\x00\x01", "attachment"),
        ("a:b.pdf", "a_b.pdf"),
        (".hidden", "hidden"),
    ],
)
def test_exact_results(name, expected):
    assert safe_name(name) == expected


def test_accents_in_either_normal_form_give_the_same_nfc_name():
    nfc = unicodedata.normalize("NFC", "Müller Café.pdf")
    nfd = unicodedata.normalize("NFD", "Müller Café.pdf")
    assert nfc != nfd
    assert safe_name(nfd) == safe_name(nfc) == nfc


def test_long_name_keeps_its_extension():
    result = safe_name("a" * 300 + ".pdf")
    assert result.endswith(".pdf")
    assert len(result.encode()) == DEFAULT_MAX_BYTES


def test_long_name_without_extension_is_cut_to_the_limit():
    assert safe_name("a" * 300) == "a" * DEFAULT_MAX_BYTES


def test_an_absurd_extension_is_not_kept_at_the_cost_of_the_name():
    result = safe_name("report." + "x" * 300)
    assert result.startswith("report.")
    assert len(result.encode()) <= DEFAULT_MAX_BYTES


@pytest.mark.parametrize("char", ["😀", "é", "日", "👩‍👩‍👧"])
@pytest.mark.parametrize("limit", [32, 33, 34, 35, 100, 180])
def test_multibyte_truncation_never_splits_a_character(char, limit):
    result = safe_name(char * 200 + ".docx", max_bytes=limit)
    encoded = result.encode()  # would raise on a lone surrogate
    assert len(encoded) <= limit
    assert encoded.decode() == result
    assert result.endswith(".docx")


def test_truncation_does_not_leave_a_trailing_dot_or_space():
    result = safe_name("a" * 170 + " . . . . . . . . . . . . . . . . .pdf")
    assert result.endswith(".pdf")
    assert not result[:-4].endswith((" ", "."))


def test_a_tiny_limit_is_refused():
    with pytest.raises(ValueError):
        safe_name("x", max_bytes=5)


@pytest.mark.parametrize(
    "name, stem, ext",
    [
        ("a.pdf", "a", ".pdf"),
        ("a.tar.gz", "a.tar", ".gz"),
        (".bashrc", ".bashrc", ""),
        ("no extension", "no extension", ""),
        ("v1.2 final", "v1.2 final", ""),
        ("x." + "y" * 17, "x." + "y" * 17, ""),
        ("x." + "y" * 16, "x", "." + "y" * 16),
        ("file.", "file.", ""),
    ],
)
def test_split_extension(name, stem, ext):
    assert split_extension(name) == (stem, ext)


def test_unique_name_numbers_duplicates():
    taken: list[str] = []
    for _ in range(4):
        taken.append(unique_name("quote.pdf", taken))
    assert taken == ["quote.pdf", "quote (2).pdf", "quote (3).pdf", "quote (4).pdf"]


def test_unique_name_ignores_case_and_normal_form():
    nfd = unicodedata.normalize("NFD", "Café.PDF")
    assert unique_name("café.pdf", [nfd]) == "café (2).pdf"
    assert unique_name("REPORT.pdf", ["report.pdf", "Report (2).PDF"]) == "REPORT (3).pdf"


def test_unique_name_without_extension_and_free_name():
    assert unique_name("README", ["readme"]) == "README (2)"
    assert unique_name("free.txt", ["other.txt"]) == "free.txt"


def test_unique_name_stays_within_the_limit():
    name = safe_name("é" * 300 + ".pdf")
    taken = [name]
    for _ in range(12):
        taken.append(unique_name(name, taken))
    assert len({t.casefold() for t in taken}) == 13
    for result in taken:
        assert len(result.encode()) <= DEFAULT_MAX_BYTES
        assert result.endswith(".pdf")
    assert taken[-1].endswith(" (13).pdf")


@pytest.mark.parametrize(
    "header, expected",
    [
        ('attachment; filename="quote.pdf"', "quote.pdf"),
        ("attachment; filename=quote.pdf", "quote.pdf"),
        ("ATTACHMENT; FILENAME=quote.pdf", "quote.pdf"),
        ('inline; filename="scan.pdf"', "scan.pdf"),
        ('attachment; filename="a \\"quoted\\" name.pdf"', 'a "quoted" name.pdf'),
        ('attachment; filename="semi;colon, comma.pdf"', "semi;colon, comma.pdf"),
        ("attachment; filename*=UTF-8''Angebot%20M%C3%BCller.pdf", "Angebot Müller.pdf"),
        ("attachment; filename*=utf-8'de'%E2%82%AC%20rates.xlsx", "€ rates.xlsx"),
        ("attachment; filename*=ISO-8859-1''caf%E9.pdf", "café.pdf"),
        (
            "attachment; filename=\"fallback.pdf\"; filename*=UTF-8''%C3%A9t%C3%A9.pdf",
            "été.pdf",
        ),
        (
            "attachment; filename*=UTF-8''%C3%A9t%C3%A9.pdf; filename=\"fallback.pdf\"",
            "été.pdf",
        ),
        # A malformed extended value falls back to the plain one.
        ("attachment; filename*=UTF-8''%FF%FE.pdf; filename=plain.pdf", "plain.pdf"),
        ("attachment; filename*=klingon''abc.pdf; filename=plain.pdf", "plain.pdf"),
        ("attachment; filename*=no-quotes.pdf; filename=plain.pdf", "plain.pdf"),
        # Servers that quote the extended value anyway.
        ("attachment; filename*=\"UTF-8''quoted%20ext.pdf\"", "quoted ext.pdf"),
        # UTF-8 bytes that an HTTP library read as Latin-1.
        ('attachment; filename="cafÃ©.pdf"', "café.pdf"),
        # Hostile names are returned as the server said them; safe_name makes them harmless.
        ('attachment; filename="../../etc/passwd"', "../../etc/passwd"),
        ("attachment; filename*=UTF-8''..%2F..%2Fx%00y", "../../x\x00y"),
        ('attachment; filename="unterminated.pdf', "unterminated.pdf"),
        ("attachment; filename=  spaced.pdf  ", "spaced.pdf"),
    ],
)
def test_content_disposition(header, expected):
    assert filename_from_content_disposition(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "attachment",
        "attachment;",
        "attachment; filename=",
        'attachment; filename=""',
        "attachment; name=x.pdf",
        ";;;===;;;",
        "garbage \x00\x01 garbage",
        "attachment; filename*=UTF-8''",
        "attachment; filename*=UTF-8''%20%20",
        "a" * 10000,
    ],
)
def test_content_disposition_without_a_usable_name(header):
    assert filename_from_content_disposition(header) is None


def test_hostile_header_names_end_up_safe(tmp_path):
    for header in (
        'attachment; filename="../../etc/passwd"',
        "attachment; filename*=UTF-8''%2Fetc%2Fshadow",
        "attachment; filename*=UTF-8''..%5C..%5Cboot.ini",
        "attachment; filename*=UTF-8''" + "%C3%A9" * 300 + ".pdf",
    ):
        name = safe_name(filename_from_content_disposition(header) or "")
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
        assert len(name.encode()) <= DEFAULT_MAX_BYTES
