"""The seeded fuzzer: its generator, its checker, and a CI-sized run through the real engine."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coupad import fuzzcheck
from coupad.folders import PoFolder
from coupad.fuzzcheck import Expected, Mismatch, check, report
from coupad.ponumber import PoNumber
from coupad.sim import content, fuzz
from coupad.sim.catalogue import Outcome
from coupad.sim.scenario import from_mapping

# Two seeds whose first CI_COUNT POs together exercise every feature of the envelope and end
# in every final status. Their broken files are links, which keeps the run near a minute: a
# broken click-only file may cost an engine its click timeout per attempt (make fuzz has them).
CI_SEEDS = (374, 639)
CI_COUNT = 18


# ---- the generator -----------------------------------------------------------------------


def test_a_seed_always_gives_the_same_pos_even_in_another_process() -> None:
    here = fuzz.generate(11, 60)
    assert here == fuzz.generate(11, 60)
    script = (
        "import json; from coupad.sim import fuzz;"
        "print(json.dumps(fuzz.generate(11, 60).scenario))"
    )
    there = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "4321", "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(there.stdout) == json.loads(json.dumps(here.scenario))
    assert fuzz.generate(12, 60).scenario != here.scenario


@pytest.mark.parametrize("seed", [0, 1, 987654321])
def test_every_envelope_dimension_occurs_within_a_few_hundred_pos(seed: int) -> None:
    counts = fuzz.feature_counts(fuzz.generate(seed, 300))
    assert [name for name, count in counts.items() if count == 0] == []


def test_the_ci_seeds_cover_the_whole_envelope() -> None:
    covered: set[str] = set()
    for seed in CI_SEEDS:
        counts = fuzz.feature_counts(fuzz.generate(seed, CI_COUNT))
        covered |= {name for name, count in counts.items() if count}
    assert set(fuzz.FEATURES) - covered == set()


def test_one_po_regenerates_from_seed_and_index_alone() -> None:
    many = fuzz.generate(5, 120)
    for index in (0, 7, 63, 119):
        alone = fuzz.generate_one(5, index)
        assert alone.pos == (many.pos[index],)
        assert alone.indexes == (index,)
        requisition = many.pos[index].requisition
        if requisition:
            assert alone.requisitions[requisition] == many.requisitions[requisition]
        assert alone.catalogue().truth(alone.pos[0].digits) == many.catalogue().truth(
            many.pos[index].digits
        )


def test_po_numbers_are_distinct_and_say_their_seed_and_index() -> None:
    generated = fuzz.generate(2024, 500)
    digits = [po.digits for po in generated.pos]
    assert len(set(digits)) == 500
    assert all(d.startswith(fuzz.prefix(2024)) and len(d) == 8 for d in digits)
    assert [generated.index_of(d) for d in digits[:5]] == [0, 1, 2, 3, 4]
    assert fuzz.digits_for(2024, 42) == digits[42]
    with pytest.raises(ValueError):
        fuzz.digits_for(1, fuzz.MAX_INDEX + 1)


def test_generated_pos_stay_inside_the_envelope() -> None:
    env = fuzz.ENVELOPE
    generated = fuzz.generate(77, 400)
    for po in generated.pos:
        trouble = po.trouble
        assert trouble.throttle_first + trouble.throttle_page_first + trouble.server_error_first <= (
            env.trouble_visits_max
        )
        assert not trouble.hang and (trouble.page_delay or 0) <= env.page_delay_max
        assert len(po.attachments) <= env.attachments_max
        assert (po.render_delay or 0) <= env.render_delay_max
        assert len(po.page.steps) <= env.steps_max
        assert all(0 <= step <= env.last_step_max for step in po.page.steps)
        requisition = generated.requisitions.get(po.requisition or "")
        for a in po.attachments + (requisition.attachments if requisition else ()):
            assert 1 <= a.size <= env.size_max
            if a.bandwidth:
                assert a.size / a.bandwidth <= env.slow_seconds_max + 0.01
        assert po.outcome is not None
    statuses = {generated.catalogue().expected(po.digits)[0] for po in generated.pos}
    assert statuses == set(Outcome)  # every final status occurs, PARTIAL and FAILED included


def test_the_generated_scenario_is_a_valid_scenario_file(tmp_path: Path) -> None:
    generated = fuzz.generate(3, 50)
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(generated.scenario, ensure_ascii=False), encoding="utf-8")
    from coupad.sim.scenario import load

    assert load(path).catalogue().po(generated.pos[9].digits) == generated.pos[9]


# ---- the checker -------------------------------------------------------------------------

SCENARIO: dict[str, Any] = {
    "po": {
        "51000001": {"attachments": [{"name": "a.pdf", "size": 3000},
                                     {"name": "a.pdf", "size": 4000, "shape": "button"}]},
        "51000002": {},
        "51000003": {"attachments": [{"name": "ok.pdf", "size": 2000},
                                     {"name": "gone.pdf", "broken": "not_found"}]},
        "51000004": {"requisition": "7004"},
        "51000005": {"attachments": [{"name": "call notes.msg", "size": 2500},
                                     {"name": "plan.pdf", "size": 1000}]},
    },
    "requisition": {"7004": {"attachments": [{"name": "quote.pdf", "size": 1500}]}},
}


def correct_downloads(root: Path) -> list[Expected]:
    """A downloads folder as a correct client leaves it, and what the checker expects."""
    catalogue = from_mapping(SCENARIO).catalogue()
    expected = []
    for index, digits in enumerate(SCENARIO["po"]):
        status, files = catalogue.expected(digits)
        folder = PoFolder.open(root, PoNumber(digits))
        for source, att in files:
            tmp = root / "incoming.tmp"
            tmp.write_bytes(content.content(att.id, att.size, pdf=att.pdf))
            folder.add_file(tmp, att.name, att.path, source, f"{source}:{att.id}")
        folder.finalize(status.value)
        expected.append(Expected.from_truth(index, catalogue.truth(digits)))
    return expected


def folder_of(root: Path, digits: str) -> Path:
    return next(root.glob(f"PO{digits}_*"))


def _missing_file(root: Path) -> None:
    (folder_of(root, "51000001") / "a.pdf").unlink()


def _wrong_status(root: Path) -> None:
    folder = folder_of(root, "51000001")
    folder.rename(root / "PO51000001_NO_ATTACHMENTS")


def _extra_file(root: Path) -> None:
    (folder_of(root, "51000002") / "decoy.csv").write_bytes(b"line,item\n")


def _unlisted_file(root: Path) -> None:
    (folder_of(root, "51000001") / "print.pdf").write_bytes(b"%PDF-1.4 order")


def _wrong_sha256(root: Path) -> None:
    path = folder_of(root, "51000004") / "quote.pdf"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))


def _left_working(root: Path) -> None:
    folder_of(root, "51000003").rename(root / "PO51000003__WORK")


def _two_folders(root: Path) -> None:
    (root / "PO51000002_FAILED").mkdir()


def _no_folder(root: Path) -> None:
    shutil.rmtree(folder_of(root, "51000003"))


def _manifest_lies(root: Path) -> None:
    path = folder_of(root, "51000001") / "manifest.json"
    document = json.loads(path.read_text())
    document["files"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(document))


def _second_copy(root: Path) -> None:
    folder = folder_of(root, "51000004")
    shutil.copy(folder / "quote.pdf", folder / "quote (2).pdf")
    path = folder / "manifest.json"
    document = json.loads(path.read_text())
    document["files"].append({**document["files"][0], "name": "quote (2).pdf"})
    path.write_text(json.dumps(document))


def _derived(root: Path, source: str, name: str = "made.pdf", data: bytes = b"%PDF-1.4 mail",
             listed: bytes | None = None) -> None:
    """A file in PO51000005's folder that the manifest lists as derived from ``source``."""
    folder = folder_of(root, "51000005")
    (folder / name).write_bytes(data)
    path = folder / "manifest.json"
    document = json.loads(path.read_text())
    document["files"].append({
        "name": name, "original_name": name, "source_url": "", "size": len(listed or data),
        "sha256": hashlib.sha256(listed or data).hexdigest(), "source": "derived",
        "key": f"derived:{source}", "derived_from": source})
    path.write_text(json.dumps(document))


def _pdf_of_a_mail(root: Path) -> None:
    _derived(root, "call notes.msg", "call notes.msg.pdf")


def _derived_from_a_file_that_is_no_mail(root: Path) -> None:
    _derived(root, "plan.pdf")


def _derived_from_nothing_on_disk(root: Path) -> None:
    _derived(root, "other.msg")


def _pdf_of_a_mail_listed_wrong(root: Path) -> None:
    _derived(root, "call notes.msg", listed=b"%PDF-1.4 something else")


def test_a_pdf_listed_as_derived_from_an_expected_mail_is_accepted(tmp_path: Path) -> None:
    expected = correct_downloads(tmp_path)
    _pdf_of_a_mail(tmp_path)
    assert check(tmp_path, expected) == []


def _stray_po(root: Path) -> None:
    (root / "PO99999999_COMPLETED").mkdir()


def _stray_file(root: Path) -> None:
    (root / "notes.txt").write_text("x")


@pytest.mark.parametrize(
    ("doctor", "digits", "words"),
    [
        (_missing_file, "51000001", ["missing po file 'a.pdf' (3000 bytes",
                                     "manifest.json lists 'a.pdf', which is not in the folder"]),
        (_wrong_status, "51000001", ["status NO_ATTACHMENTS, expected COMPLETED"]),
        (_extra_file, "51000002", ["extra file 'decoy.csv' (10 bytes", "not an expected file",
                                   "files on disk but no manifest.json"]),
        (_unlisted_file, "51000001", ["extra file 'print.pdf' (14 bytes",
                                      "'print.pdf' is not listed in manifest.json"]),
        (_wrong_sha256, "51000004", ["missing requisition file 'quote.pdf'",
                                     "extra file 'quote.pdf'", "not an expected file",
                                     "manifest.json says 'quote.pdf'"]),
        (_left_working, "51000003", ["left unfinished as PO51000003__WORK; expected "
                                     "PO51000003_PARTIAL"]),
        (_two_folders, "51000002", ["2 folders instead of one"]),
        (_no_folder, "51000003", ["no folder PO51000003_PARTIAL"]),
        (_manifest_lies, "51000001", ["manifest.json says 'a.pdf' is 3000 bytes, sha256 "
                                      "000000000000"]),
        (_second_copy, "51000004", ["extra file 'quote (2).pdf'",
                                    "a second copy of an expected file"]),
        (_derived_from_a_file_that_is_no_mail, "51000005",
         ["extra file 'made.pdf' (13 bytes", "not an expected file"]),
        (_derived_from_nothing_on_disk, "51000005", ["extra file 'made.pdf'"]),
        (_pdf_of_a_mail_listed_wrong, "51000005", ["manifest.json says 'made.pdf' is 23 bytes"]),
        (_stray_po, None, ["folder(s) of a PO that was not asked for: PO99999999_COMPLETED"]),
        (_stray_file, None, ["unexpected file 'notes.txt' in the downloads folder"]),
    ],
)
def test_the_checker_reports_a_doctored_downloads_folder(
    tmp_path: Path, doctor: Callable[[Path], None], digits: str | None, words: list[str]
) -> None:
    expected = correct_downloads(tmp_path)
    assert check(tmp_path, expected) == []
    doctor(tmp_path)
    mismatches = check(tmp_path, expected)
    assert [m.digits for m in mismatches] == [digits], mismatches
    text = "\n".join(mismatches[0].problems)
    for phrase in words:
        assert phrase in text, text


def test_the_correct_folder_expects_partial_and_requisition_files(tmp_path: Path) -> None:
    expected = {e.digits: e for e in correct_downloads(tmp_path)}
    assert expected["51000003"].status == "PARTIAL"
    assert [f.name for f in expected["51000003"].files] == ["ok.pdf"]
    assert [(f.name, f.source) for f in expected["51000004"].files] == [("quote.pdf", "requisition")]
    assert (folder_of(tmp_path, "51000002") / "manifest.json").exists() is False


def test_the_report_names_seed_index_po_and_the_replay_command() -> None:
    generated = fuzz.generate(5, 3)
    digits = generated.pos[1].digits
    outcome = fuzzcheck.FuzzRun(
        generated, [], [Mismatch(1, digits, ["status NO_ATTACHMENTS, expected COMPLETED"])],
        12.0, "",
    )
    text = report(outcome)
    assert f"MISMATCH seed 5 index 1 PO{digits} (" in text
    assert "  - status NO_ATTACHMENTS, expected COMPLETED" in text
    assert "  replay: python -m coupad.fuzzcheck --seed 5 --only 1" in text
    assert "features of mismatched POs" in text
    assert text.splitlines()[-1].startswith("fuzz: 3 POs, seed 5, 1 mismatches")
    replay = fuzzcheck.replay_command(5, 1).split()[3:]
    args = fuzzcheck.build_parser().parse_args(replay)
    assert (args.seed, args.only) == (5, [1])


# ---- the real engine ---------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", CI_SEEDS)
def test_generated_pos_end_as_the_truth_says(seed: int, tmp_path: Path) -> None:
    outcome = fuzzcheck.run(fuzz.generate(seed, CI_COUNT), tmp_path, tabs=3)
    assert len(outcome.expected) == CI_COUNT
    assert not outcome.mismatches, "\n" + report(outcome) + "\n" + outcome.fetch_output
