"""The simulator's catalogue: deterministic defaults, deterministic bytes, scenario validation."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from coupad.errors import CoupadError, ExitCode
from coupad.sim import content
from coupad.sim import scenario as scenario_module
from coupad.sim.catalogue import (
    AWKWARD_NAMES,
    CASES,
    MB,
    OVERLAYS,
    PRESETS,
    Catalogue,
    Disposition,
    Outcome,
    Shape,
    default_po,
    default_requisition,
    examples,
)
from coupad.sim.scenario import ScenarioError, from_mapping, load, parse_trouble

EXPECTED_OUTCOME = {
    "link_only": Outcome.COMPLETED,
    "button_only": Outcome.COMPLETED,
    "both_shapes": Outcome.COMPLETED,
    "no_attachments": Outcome.NO_ATTACHMENTS,
    "requisition_only": Outcome.NO_ATTACHMENTS,
    "not_found": Outcome.NOT_FOUND,
    "not_found_variant": Outcome.NOT_FOUND,
    "access_denied": Outcome.ACCESS_DENIED,
    "access_denied_variant": Outcome.ACCESS_DENIED,
    "awkward_names": Outcome.COMPLETED,
    "rfc5987_names": Outcome.COMPLETED,
    "inline_pdf": Outcome.COMPLETED,
    "with_requisition": Outcome.COMPLETED,
    "banner": Outcome.COMPLETED,
    "mixed": Outcome.COMPLETED,
    "large": Outcome.COMPLETED,
}


# ---- default catalogue -----------------------------------------------------------------


def test_default_catalogue_is_identical_in_another_process() -> None:
    numbers = [str(15_262_980 + n) for n in range(40)] + ["15260999", "15260429"]
    here = {d: Catalogue().truth(d) for d in numbers}
    script = (
        "import json,sys; from coupad.sim.catalogue import Catalogue;"
        "print(json.dumps({d: Catalogue().truth(d) for d in sys.argv[1:]}))"
    )
    # A different hash seed proves nothing depends on Python's randomised str hashing.
    there = subprocess.run(
        [sys.executable, "-c", script, *numbers],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(there.stdout) == here


def test_examples_cover_every_case_and_have_that_case() -> None:
    found = examples()
    assert set(found) == set(CASES) | set(OVERLAYS)
    for case, numbers in found.items():
        assert len(numbers) == 3 and len(set(numbers)) == 3
        for digits in numbers:
            po = default_po(digits)
            if case in EXPECTED_OUTCOME:
                assert po.case == case
                assert po.outcome is EXPECTED_OUTCOME[case], (case, digits)


def test_shapes_of_the_shape_cases() -> None:
    found = examples()
    assert all(
        {a.shape for a in default_po(d).attachments} == {Shape.LINK} for d in found["link_only"]
    )
    assert all(
        {a.shape for a in default_po(d).attachments} == {Shape.BUTTON} for d in found["button_only"]
    )
    assert all(
        {a.shape for a in default_po(d).attachments} == set(Shape) for d in found["both_shapes"]
    )


def test_requisition_cases_link_a_requisition_with_files() -> None:
    found = examples()
    for digits in found["requisition_only"] + found["with_requisition"]:
        po = default_po(digits)
        assert po.requisition is not None
        assert default_requisition(po.requisition).attachments
    for digits in found["no_attachments"]:
        assert default_po(digits).requisition is None and not default_po(digits).attachments


def test_awkward_names_hold_every_kind_and_a_duplicate() -> None:
    po = default_po(examples()["awkward_names"][0])
    names = [a.name for a in po.attachments]
    assert names == list(AWKWARD_NAMES)
    assert len(names) - len(set(names)) == 1
    joined = "".join(names)
    for needle in ('"', "/", "\\", "..", " ", ",", "\n", "\x07"):
        assert needle in joined, needle
    assert "CON.txt" in names and "aux" in names
    assert max(len(n) for n in names) == 300
    assert len({a.id for a in po.attachments}) == len(names)  # duplicates still differ in bytes
    dup = [a for a in po.attachments if a.name == "invoice.pdf"]
    assert dup[0].sha256() != dup[1].sha256()


def test_rfc5987_and_inline_cases() -> None:
    found = examples()
    rfc = default_po(found["rfc5987_names"][0]).attachments
    assert all(a.disposition is Disposition.RFC5987 for a in rfc)
    assert any(a.ascii_fallback for a in rfc) and not all(a.ascii_fallback for a in rfc)
    inline = default_po(found["inline_pdf"][0]).attachments
    assert [a.disposition for a in inline].count(Disposition.INLINE) == 2
    assert all(a.content_type == "application/pdf" for a in inline if a.pdf)


def test_sizes_are_small_except_for_the_large_overlay() -> None:
    for n in range(200):
        digits = str(10_000_000 + n)
        assert all(1024 <= a.size <= 300 * 1024 for a in default_po(digits).attachments), digits
    large = [default_po(d) for d in examples()["large"]]
    assert [po.attachments[0].size for po in large] == [5 * MB, 10 * MB, 15 * MB]
    assert default_po("15269999").attachments[0].size == 50 * MB


def test_trouble_overlays() -> None:
    assert default_po("15260429").trouble.throttle_first == 2
    assert default_po("15260503").trouble.server_error_first == 1
    slow = default_po("15260777").trouble
    assert slow.page_delay == 2.0 and slow.bandwidth == 256 * 1024


def test_banners_only_on_valid_orders() -> None:
    pos = [default_po(str(20_000_000 + n)) for n in range(400)]
    assert any(po.banner for po in pos)
    assert not any(po.banner for po in pos if po.error is not None)
    assert all(po.banner for po in pos if po.case == "banner")


def test_presets() -> None:
    assert PRESETS["none"].page_delay == 0 and PRESETS["none"].bandwidth == 0
    realistic = PRESETS["realistic"]
    assert 0.5 <= realistic.page_delay + realistic.render_delay <= 1.5
    assert 1 * MB <= realistic.bandwidth <= 10 * MB


def test_attachment_lookup_refuses_junk() -> None:
    catalogue = Catalogue()
    first = default_po("15262980").attachments[0]
    assert catalogue.attachment(first.id) == first
    for junk in (
        "",
        "-",
        "15262980-",
        "15262980-99",
        "abc-1",
        "R-1",
        "R12x-1",
        "9" * 40 + "-1",
        "١٢٣٤٥٦-1",
    ):
        assert catalogue.attachment(junk) is None, junk


# ---- bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1023, 65536, 65537, 300 * 1024])
def test_bytes_are_deterministic_and_match_their_sha256(size: int) -> None:
    data = content.content("15262980-1", size)
    assert len(data) == size
    assert data == content.content("15262980-1", size)
    assert hashlib.sha256(data).hexdigest() == content.sha256("15262980-1", size)
    for chunk_size in (1000, 4096, 65536):
        assert b"".join(content.chunks("15262980-1", size, chunk_size=chunk_size)) == data


def test_bytes_differ_per_seed_and_per_chunk() -> None:
    a = content.content("15262980-1", 3 * content.CHUNK)
    assert a != content.content("15262980-2", 3 * content.CHUNK)
    pieces = [a[i : i + content.CHUNK] for i in range(0, len(a), content.CHUNK)]
    assert len(set(pieces)) == 3  # a repeated or dropped chunk changes the sha256


def test_pdfs_start_like_pdfs() -> None:
    assert content.content("x-1", 2048, pdf=True).startswith(b"%PDF-1.4")


def test_truth_sha256_matches_streamed_bytes() -> None:
    for digits in (examples()["both_shapes"][0], examples()["button_only"][0]):
        po = default_po(digits)
        for att in po.attachments:
            data = b"".join(att.chunks(1000))
            truth = Catalogue().truth(po.digits)["attachments"][po.attachments.index(att)]
            assert hashlib.sha256(data).hexdigest() == truth["sha256"]
            assert len(data) == truth["size"] == att.size


def test_attachments_named_msg_are_outlook_mails_the_same_for_the_same_id() -> None:
    import extract_msg

    po = default_po(examples()["button_only"][0])  # 15262981: two mails and an .eml
    mails = [a for a in po.attachments if a.name.endswith(".msg")]
    assert len(mails) == 2 and all(a.mail for a in mails)
    assert not [a for a in po.attachments if a.mail and not a.name.endswith(".msg")]
    truth = Catalogue().truth(po.digits)["attachments"]
    assert [t["mail"] for t in truth] == [a.mail for a in po.attachments]
    for att in mails:
        body = att.body()
        assert body is not None and body.startswith(bytes.fromhex("D0CF11E0A1B11AE1"))
        assert len(body) == att.size and body == default_po(po.digits).attachments[
            po.attachments.index(att)].body()
        msg = extract_msg.openMsg(body)
        try:
            assert msg.subject == att.name.removesuffix(".msg")
            assert "Regards" in msg.body
        finally:
            msg.close()
    assert mails[0].body() != mails[1].body()


def test_a_scenario_attachment_is_a_mail_only_when_it_says_so() -> None:
    scenario = from_mapping({"po": {"15262984": {"attachments": [
        {"name": "approval.msg", "mail": True},
        {"name": "not a mail.msg", "size": 3000},
    ]}}})
    mail, other = scenario.catalogue().po("15262984").attachments
    assert mail.mail and mail.size == len(mail.body() or b"") > 1000
    assert not other.mail and other.size == 3000 and other.body() is None


# ---- Content-Disposition ---------------------------------------------------------------


def test_content_disposition_forms() -> None:
    awkward = {a.name: a for a in default_po(examples()["awkward_names"][0]).attachments}
    assert awkward["CON.txt"].content_disposition() == 'attachment; filename="CON.txt"'
    quoted = awkward['Contract "signed".docx'].content_disposition()
    assert quoted == (
        "attachment; filename=\"Contract _signed_.docx\"; filename*=UTF-8''Contract%20%22signed%22.docx"
    )
    for att in awkward.values():
        assert "\n" not in att.content_disposition() and "\x07" not in att.content_disposition()
    inline = default_po(examples()["inline_pdf"][0]).attachments[0]
    assert inline.content_disposition().startswith('inline; filename="Signed order')


# ---- scenario files --------------------------------------------------------------------

GOOD_TOML = """\
seed = 7
[po.15262984]
supplier = "ACME Corp"
requisition = "4711"
page_delay = 0.5
trouble = {throttle_first = 2, bandwidth = 100000}
[[po.15262984.attachments]]
name = "quote.pdf"
size = 2048
shape = "link"
disposition = "rfc5987"
[[po.15262984.attachments]]
name = "call notes.msg"
shape = "button"

[po.PO15262985]
error = "access_denied_fr"

[requisition.4711]
[[requisition.4711.attachments]]
name = "approval.msg"
size = 5000

[latency]
render_delay = 0.25
bandwidth = 4000000

[trouble]
rate_429 = 0.1
hang_paths = ["/order_headers/1*"]
"""


def test_a_good_toml_scenario_overrides_the_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(GOOD_TOML, encoding="utf-8")
    scenario = load(path)
    catalogue = scenario.catalogue()
    po = catalogue.po("15262984")
    assert po.supplier == "ACME Corp" and po.requisition == "4711"
    assert [(a.id, a.name, a.size, a.shape, a.disposition) for a in po.attachments] == [
        ("15262984-1", "quote.pdf", 2048, Shape.LINK, Disposition.RFC5987),
        ("15262984-2", "call notes.msg", 1024, Shape.BUTTON, Disposition.PLAIN),
    ]
    assert (
        po.trouble.throttle_first == 2
        and po.trouble.bandwidth == 100000
        and po.trouble.page_delay == 0.5
    )
    assert catalogue.po("15262985").outcome is Outcome.ACCESS_DENIED
    assert catalogue.po("15262985").supplier is None
    assert [a.name for a in catalogue.requisition("4711").attachments] == ["approval.msg"]
    assert catalogue.attachment("R4711-1") is not None
    assert catalogue.po("15262986") == default_po("15262986")  # not in the file: the default
    latency = scenario.latency_over(PRESETS["realistic"])
    assert latency.render_delay == 0.25 and latency.bandwidth == 4_000_000
    assert latency.page_delay == PRESETS["realistic"].page_delay
    assert scenario.trouble.rate_429 == 0.1 and scenario.trouble.hang_paths == (
        "/order_headers/1*",
    )
    assert scenario.seed == 7
    assert catalogue.truth("15262984")["requisition_attachments"][0]["name"] == "approval.msg"


def test_the_same_scenario_as_json_and_as_a_mapping(tmp_path: Path) -> None:
    data = tomllib.loads(GOOD_TOML)
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    from_file = load(path)
    assert from_file == from_mapping(data)
    assert from_file.catalogue().po("15262984").supplier == "ACME Corp"


def _toml_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load(path)
    assert isinstance(caught.value, CoupadError) and caught.value.exit_code is ExitCode.CONFIG
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "key", "line", "words"),
    [
        ('[po.15262984]\nsupplier = "A"\ncolour = "red"\n', "po.15262984.colour", 3, "unknown key"),
        (
            "[po.15262984]\n\n[[po.15262984.attachments]]\nname = 'a'\n[[po.15262984.attachments]]\n"
            "name = 'b'\nsize = 'big'\n",
            "po.15262984.attachments[1].size",
            7,
            "expected an integer",
        ),
        (
            "[po.15262984]\n[[po.15262984.attachments]]\nname = 'a'\nshape = 'round'\n",
            "po.15262984.attachments[0].shape",
            4,
            "expected one of link, button",
        ),
        (
            "[po.15262984]\n[[po.15262984.attachments]]\nname = 'a'\nsize = -1\n",
            "po.15262984.attachments[0].size",
            4,
            "at least 0",
        ),
        (
            "[po.15262984]\n[[po.15262984.attachments]]\nsize = 10\n",
            "po.15262984.attachments[0].name",
            2,
            "needs a name",
        ),
        ('[po.15262984]\nerror = "gone"\n', "po.15262984.error", 2, "expected one of not_found"),
        (
            "[po.15262984]\ntrouble = {throttle_first = true}\n",
            "po.15262984.trouble.throttle_first",
            2,
            "expected an integer, got a boolean",
        ),
        (
            "[po.15262984]\ntrouble = {explode = 1}\n",
            "po.15262984.trouble.explode",
            2,
            "unknown key",
        ),
        ("[po.15262984]\npage_delay = 'slow'\n", "po.15262984.page_delay", 2, "expected a number"),
        ("\n\n[po.abc]\n", "po.abc", 3, "not a PO number"),
        ("[po.15262984]\n[po.PO15262984]\n", "po.PO15262984", 2, "defined twice"),
        ("[po.15262984]\nrequisition = 'R-1'\n", "po.15262984.requisition", 2, "digits"),
        ("[requisition.x1]\n", "requisition.x1", 1, "digits"),
        (
            '[po.15262984]\nerror = "not_found"\n[[po.15262984.attachments]]\nname = "a"\n',
            "po.15262984.attachments",
            3,
            "shows no attachments",
        ),
        (
            '[po.15262984]\n[[po.15262984.attachments]]\nname = "a\\u0007b"\n',
            "po.15262984.attachments[0].name",
            3,
            "control characters",
        ),
        ("[latency]\npage_delay = 1\nspeed = 3\n", "latency.speed", 3, "unknown key"),
        ("[latency]\n\nbandwidth = 1.5\n", "latency.bandwidth", 3, "expected an integer"),
        ("[trouble]\nrate_429 = 1.5\n", "trouble.rate_429", 2, "at most 1.0"),
        ("[trouble]\nrate_429 = 0.6\nrate_5xx = 0.6\n", "trouble", 1, "more than 1"),
        ("[trouble]\nhang_paths = ['order']\n", "trouble.hang_paths[0]", 2, "starting with /"),
        (
            "[po.15262984]\n[[po.15262984.attachments]]\nname = 'a.msg'\nmail = true\nsize = 9\n",
            "po.15262984.attachments[0].size",
            5,
            "leave size out",
        ),
        (
            "[po.15262984]\n[[po.15262984.attachments]]\nname = 'a.msg'\nmail = 'yes'\n",
            "po.15262984.attachments[0].mail",
            4,
            "expected true or false",
        ),
        ("po = 3\n", "po", 1, "expected a table"),
        ("bogus = 1\n", "bogus", 1, "unknown key"),
    ],
)
def test_bad_toml_names_key_and_line(
    tmp_path: Path, text: str, key: str, line: int, words: str
) -> None:
    message = _toml_error(tmp_path, text)
    assert f"line {line}:" in message and f" {key}: " in message and words in message, message


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = _toml_error(tmp_path, '[po.15262984]\nsupplier = "unterminated\n')
    assert "line 2" in message and "invalid TOML" in message


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        (
            '{\n  "po": {\n    "15262984": {\n      "supplier": 42\n    }\n  }\n}',
            "po.15262984.supplier",
            4,
        ),
        (
            '{"po": {"15262984": {"attachments": [\n  {"name": "a"},\n  {"name": "b", "shape": "x"}\n]}}}',
            "po.15262984.attachments[1].shape",
            3,
        ),
        ('{\n"latency": {},\n"trouble": {\n"until": "soon"}}', "trouble.until", 4),
    ],
)
def test_bad_json_names_key_and_line(tmp_path: Path, text: str, key: str, line: int) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load(path)
    assert f"line {line}:" in str(caught.value) and f" {key}: " in str(caught.value), str(
        caught.value
    )


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n"po": {\n}\n,,}', encoding="utf-8")
    with pytest.raises(ScenarioError, match="line 4"):
        load(path)


@pytest.mark.parametrize("raw", [b"\xff\xfe[po]", b"\x00\x00garbage"])
def test_unreadable_files_are_reported(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(raw)
    with pytest.raises(ScenarioError):
        load(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_runtime_trouble_validation() -> None:
    assert parse_trouble({"rate_5xx": 1, "until": None}).rate_5xx == 1.0
    for bad in (
        {"rate_5xx": "high"},
        {"nope": 1},
        {"page_delay": -1},
        [],
        {"rate_429": float("nan")},
    ):
        with pytest.raises(ScenarioError):
            parse_trouble(bad)


def test_the_documented_example_is_a_valid_scenario(tmp_path: Path) -> None:
    assert scenario_module.__doc__ is not None
    example = textwrap.dedent(scenario_module.__doc__.split("Example::", 1)[1].split("\n\n")[1])
    path = tmp_path / "example.toml"
    path.write_text(example, encoding="utf-8")
    po = load(path).catalogue().po("15262984")
    assert po.supplier == "ACME Corp" and po.attachments[0].ascii_fallback
    assert po.trouble.throttle_first == 2
