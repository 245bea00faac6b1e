"""The benchmark's competitor (bench/competitor.py, a plain Playwright script) really works:
on a few POs it downloads exactly the files the simulator's truth lists — links and
click-only buttons, a list that arrives late, a PO without files, a UTF-8 file name — so
that `make bench` compares coupad with a script that does the job."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from coupad.sim.testing import sim_server

COMPETITOR = Path(__file__).resolve().parent.parent / "bench" / "competitor.py"

SCENARIO = {
    "po": {
        "91000001": {
            "render_delay": 0.6,  # the list arrives well after the page has loaded
            "attachments": [
                {"name": "quote.pdf", "size": 40_000, "shape": "link"},
                {"name": "terms.docx", "size": 3_000, "shape": "button"},
            ],
        },
        "91000002": {
            "render_delay": 0.2,
            "attachments": [
                {"name": "a.xlsx", "size": 12_000, "shape": "button"},
                {"name": "b.msg", "size": 90_000, "shape": "button"},
                {"name": "c.pdf", "size": 1_000, "shape": "link"},
            ],
        },
        "91000003": {"supplier": "Nothing Attached", "render_delay": 0.3},
        "91000004": {
            "attachments": [
                {"name": "Überweisung März.pdf", "size": 5_000, "shape": "link",
                 "disposition": "rfc5987"},
                {"name": "Überweisung April.pdf", "size": 6_000, "shape": "button",
                 "disposition": "rfc5987"},
            ],
        },
    }
}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_playwright_competitor_downloads_what_the_truth_says(tmp_path):
    pos = [f"PO{digits}" for digits in SCENARIO["po"]]
    secret = tmp_path / "password"
    with sim_server(scenario=SCENARIO) as sim:
        secret.write_text(sim.password + "\n", encoding="utf-8")
        out = tmp_path / "out"
        proc = subprocess.Popen(
            [sys.executable, str(COMPETITOR), sim.base_url, *pos, "--username", sim.username,
             "--password-file", str(secret), "--out", str(out), "--concurrency", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=150)
        finally:
            if proc.poll() is None:  # the script, its node driver and Chromium: one session
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        assert proc.returncode == 0, stderr[-3000:]
        result = json.loads(stdout.strip().splitlines()[-1])
        assert result["done"] == len(pos) and result["errors"] == {}
        for po in pos:
            truth = sim.truth(po)
            want = sorted((f["name"], f["sha256"]) for f in truth["expected_files"])
            folder = out / po
            got = sorted((f.name, hashlib.sha256(f.read_bytes()).hexdigest())
                         for f in folder.iterdir())
            assert got == want, po
        assert not list((out / "PO91000003").iterdir())
