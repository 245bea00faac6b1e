"""The real daemon, real Chromium and the simulator: a PDF beside each Outlook mail of a PO.

Mails are converted after their PO, by the daemon's own converter: the POs end COMPLETED
whatever becomes of their mails, the manifest lists each PDF as derived from its mail (or
the mail's reason for having none), the report and summary.json count them, and a kill -9
at either moment of a conversion leaves, after the restart, exactly one PDF per mail.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from coupad.faults import MAIL_POINTS
from coupad.sim.testing import sim_server
from daemonkit import DaemonProc, daemon, our_processes
from test_daemon_browser import fetched_twice, sim_config
from util import csv_of, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOT_OLE = "not an Outlook .msg file (no OLE2 container)"


def mails_scenario(first: int) -> dict[str, Any]:
    """A PO with a mail, a PO with a file named .msg that is not a mail, a PO without mails."""
    return {"po": {
        str(first): {"supplier": "Mail Corp", "attachments": [
            {"name": "quote.pdf", "size": 20_000},
            {"name": "approval.msg", "mail": True, "shape": "button"},
        ]},
        str(first + 1): {"supplier": "Mail Corp", "attachments": [
            {"name": "call notes.msg", "size": 3_000},  # random bytes: no OLE2 container
            {"name": "plan.pdf", "size": 10_000, "shape": "button"},
        ]},
        str(first + 2): {"supplier": "Mail Corp", "attachments": [
            {"name": "contract.docx", "size": 15_000},
        ]},
    }}


def manifest_of(folder: Path) -> dict[str, dict[str, Any]]:
    document = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return {f["name"]: f for f in document["files"]}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_downloads(d: DaemonProc, sim: Any, po: str) -> Path:
    """The PO's folder holds exactly the truth's files, byte for byte, plus PDFs of its mails
    that the manifest lists as derived from them with their size and sha256."""
    folder = d.downloads / f"PO{po}_COMPLETED"
    truth = sim.truth(po)
    files = manifest_of(folder)
    downloaded = {name: f for name, f in files.items() if "derived_from" not in f}
    assert sorted((f["original_name"], f["sha256"]) for f in downloaded.values()) == sorted(
        (a["name"], a["sha256"]) for a in truth["attachments"])
    for name, entry in files.items():
        assert sha256(folder / name) == entry["sha256"]
        assert (folder / name).stat().st_size == entry["size"]
        if "derived_from" in entry:
            assert entry["derived_from"] in downloaded and entry["source"] == "derived"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, "manifest.json"])
    return folder


def test_a_mail_gets_a_pdf_a_file_that_is_no_mail_a_reason_and_the_pos_complete(tmp_path):
    first = 74_000_101
    pos = [str(first), str(first + 1), str(first + 2)]
    with sim_server(scenario=mails_scenario(first), render_delay=0.1) as sim:
        config = sim_config(sim, tmp_path, pool={"workers": 1, "tabs_per_worker": 2})
        with daemon(tmp_path, "", **config) as d:
            d.drop("mails.csv", csv_of(*pos))
            summary = d.wait_report("mails", timeout=180)
            assert summary["po_counts"] == {"COMPLETED": 3}
            assert summary["pdfs"] == {"made": 1, "failed": 1}
            rows = {r["PO_NUMBER"]: r for r in d.report_rows("mails")}
            names = rows[pos[0]]["ATTACHMENT_NAMES"].split("; ")
            assert sorted(names) == ["approval.msg", "quote.pdf"]  # Coupa's names, no PDF
            assert (rows[pos[0]]["PDFS"], rows[pos[0]]["PDF_ERRORS"]) == ("1", "")
            assert (rows[pos[1]]["PDFS"], rows[pos[1]]["PDF_ERRORS"]) == (
                "0", f"call notes.msg: {NOT_OLE}")
            assert (rows[pos[2]]["PDFS"], rows[pos[2]]["PDF_ERRORS"]) == ("", "")
            assert all(r["STATUS"] == "COMPLETED" and r["ERROR_MESSAGE"] == ""
                       for r in rows.values())

            folder = check_downloads(d, sim, pos[0])
            pdf = manifest_of(folder)["approval.msg.pdf"]
            assert pdf["derived_from"] == "approval.msg"
            assert (folder / "approval.msg.pdf").read_bytes().startswith(b"%PDF-")
            text = subprocess.run(["pdftotext", str(folder / "approval.msg.pdf"), "-"],
                                  capture_output=True, text=True, check=True).stdout
            assert "approval" in text and "Regards" in text and "logo.png" in text

            folder = check_downloads(d, sim, pos[1])
            entry = manifest_of(folder)["call notes.msg"]
            assert entry["pdf_error"] == NOT_OLE
            mail = next(a for a in sim.truth(pos[1])["attachments"] if a["name"].endswith(".msg"))
            assert sha256(folder / "call notes.msg") == mail["sha256"]  # byte-identical
            assert sorted(p.name for p in folder.iterdir()) == sorted(
                ["call notes.msg", "plan.pdf", "manifest.json"])

            check_downloads(d, sim, pos[2])
            assert fetched_twice(sim) == []
            assert "PDF renderer started" in d.log(tail=None)


def test_with_msg_to_pdf_off_mails_stay_as_they_are(tmp_path):
    first = 74_000_201
    pos = [str(first), str(first + 1)]
    with sim_server(scenario=mails_scenario(first), render_delay=0.1) as sim:
        config = sim_config(sim, tmp_path, pool={"workers": 1, "tabs_per_worker": 2},
                            downloads={"msg_to_pdf": False})
        with daemon(tmp_path, "", **config) as d:
            d.drop("off.csv", csv_of(*pos))
            summary = d.wait_report("off", timeout=180)
            assert summary["po_counts"] == {"COMPLETED": 2}
            assert summary["pdfs"] == {"made": 0, "failed": 0}
            assert [(r["PDFS"], r["PDF_ERRORS"]) for r in d.report_rows("off")] == [("", "")] * 2
            for po in pos:
                folder = check_downloads(d, sim, po)
                assert not [f for f in manifest_of(folder).values()
                            if "derived_from" in f or "pdf_error" in f]
            assert not list((d.downloads / f"PO{first}_COMPLETED").glob("*.msg.pdf"))
            assert "PDF renderer started" not in d.log(tail=None)


@pytest.mark.parametrize("point", MAIL_POINTS)
def test_kill_9_while_mails_are_converted_leaves_one_pdf_per_mail_after_the_restart(
        tmp_path, point):
    first = 74_000_301 + 10 * MAIL_POINTS.index(point)
    pos = [str(n) for n in range(first, first + 3)]
    scenario = {"po": {po: {"supplier": "Mail Corp", "attachments": [
        {"name": f"approval {po}.msg", "mail": True},
        {"name": f"quote {po}.pdf", "size": 12_000, "shape": "button"},
    ]} for po in pos}}
    with sim_server(scenario=scenario, render_delay=0.1) as sim:
        mark = tmp_path / "crashed"
        env = {"COUPAD_CRASH_AT": point, "COUPAD_CRASH_MARK": str(mark)}
        config = sim_config(sim, tmp_path, pool={"workers": 1, "tabs_per_worker": 2})
        with daemon(tmp_path, "", env=env, **config) as d:
            d.drop("crash.csv", csv_of(*pos))
            assert d.proc is not None
            d.proc.wait(180)  # the crash point kills it mid-conversion
            assert mark.read_text() == point and d.proc.returncode == -9
            # Nothing of it outlives it: the workers, their browsers, the mail reader and the
            # renderer (whose DevTools pipe closed with the daemon) all end by themselves.
            wait_until(lambda: not our_processes(tmp_path), 30,
                       what="no process of the killed daemon left")
            before = {p.name: p.stat().st_ino for p in d.downloads.rglob("*.msg.pdf")}
            assert before, "the crash came after a PDF was written"
            d.start()
            summary = d.wait_report("crash", timeout=180)
            assert summary["po_counts"] == {"COMPLETED": 3}
            assert summary["pdfs"] == {"made": 3, "failed": 0}
            for po in pos:
                folder = check_downloads(d, sim, po)
                derived = [f for f in manifest_of(folder).values() if "derived_from" in f]
                assert [f["name"] for f in derived] == [f"approval {po}.msg.pdf"]
                assert not [p for p in folder.iterdir() if p.name.startswith(".")]
            after = {p.name: p.stat().st_ino for p in d.downloads.rglob("*.msg.pdf")}
            if point == "pdf_listed":
                # Listed in the manifest before the crash: verified, not made again.
                assert {n: after[n] for n in before} == before
            assert fetched_twice(sim) == []
