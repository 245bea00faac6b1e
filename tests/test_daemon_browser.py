"""The real daemon with real Chromium against the simulator: files in, verified files out.

Includes the crash-safety test: the daemon is SIGKILLed at chosen points of a batch (during
intake, with a file downloaded but not recorded, before a folder's rename, between the
report and its summary), restarted, and the end state is checked against the simulator's
ground truth and request counters.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from coupad.faults import POINTS
from coupad.sim.testing import sim_server
from daemonkit import DaemonProc, daemon
from util import csv_of, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# Where the browsers run: the tests below are written once and run here with local browsers,
# and in test_grid_daemon.py with a ``browser`` section pointing at a real Selenium Grid.
LOCAL: dict[str, Any] = {}


def scenario(first: int, count: int, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``count`` POs from ``first`` on, each with a link and a span attachment."""
    pos: dict[str, Any] = {}
    for n in range(first, first + count):
        pos[str(n)] = {
            "supplier": f"Supplier {n % 3}",
            "attachments": [
                {"name": f"Quote {n}.pdf", "size": 20_000 + n % 997, "shape": "link"},
                {"name": f"Contract {n}, final.docx", "size": 30_000 + n % 991,
                 "shape": "button"},
            ],
        }
    pos.update((extra or {}).get("po", {}))
    return {"po": pos}


def sim_config(sim: Any, root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    secret = root / "password"
    secret.write_text(sim.password, encoding="utf-8")
    secret.chmod(0o600)
    coupa = {"base_url": sim.base_url, "sign_in": "form", "username": sim.username,
             "password_file": str(secret)}
    return {"coupa": coupa, **sections}




def verify(d: DaemonProc, sim: Any, stem: str, pos: list[str]) -> None:
    """Every PO: one final folder with the truth's outcome and files (sha256), report rows."""
    rows = d.report_rows(stem)
    assert [r["PO_NUMBER"] for r in rows] == pos
    finals = d.finals()
    for row in rows:
        truth = sim.truth(row["PO_NUMBER"])
        assert row["STATUS"] == truth["outcome"], row
        po = truth["po"]
        assert finals[po] == truth["outcome"]
        folder = Path(row["DOWNLOAD_FOLDER"])
        assert folder.name == f"{po}_{truth['outcome']}"
        expected = sorted((a["name"], a["sha256"]) for a in truth["attachments"])
        assert not list(d.downloads.rglob(f"{po}__WORK"))
        if not expected:
            assert list(folder.iterdir()) == []
            continue
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        got = sorted((f["original_name"], f["sha256"]) for f in manifest["files"])
        assert got == expected
        on_disk = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
        assert on_disk == sorted(f["name"] for f in manifest["files"])
        for entry in manifest["files"]:
            data = (folder / entry["name"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert int(row["ATTACHMENTS_DOWNLOADED"]) == len(expected)



def fetched_twice(sim: Any) -> list[str]:
    counts = sim.counters()["attachments"]
    return [key for key, n in counts.items() if n > 1]


def test_files_dropped_together_and_slowly_all_become_verified_folders(tmp_path):
    files_dropped_together_and_slowly(tmp_path, LOCAL)


def files_dropped_together_and_slowly(tmp_path: Path, where: dict[str, Any]) -> None:
    first = 71_000_100
    extra = {"po": {"71000900": {"attachments": []}, "71000901": {"error": "not_found"}}}
    with sim_server(scenario=scenario(first, 9, extra=extra), render_delay=0.2) as sim:
        config = sim_config(sim, tmp_path, inbox={"quiet_seconds": 0.5}, log={"level": "debug"},
                            **where)
        with daemon(tmp_path, "", **config) as d:
            batches = {
                "a": [str(first), str(first + 1), "71000900"],
                "b": [str(first + 2), str(first + 3), "71000901"],
                "c": [str(first + 4), str(first + 5)],
            }
            for name, pos in batches.items():  # three files at once
                d.drop(f"{name}.csv", csv_of(*pos))
            slow = d.inbox / "slow.csv"  # written in pieces, like a copy over a slow share
            pieces = csv_of(str(first + 6), str(first + 7), str(first + 8)).splitlines(True)
            with open(slow, "w", encoding="utf-8") as handle:
                for piece in pieces:
                    handle.write(piece)
                    handle.flush()
                    time.sleep(0.2)  # the slow writer is the scenario, not a wait
            batches["slow"] = [str(first + 6), str(first + 7), str(first + 8)]
            for name, pos in batches.items():
                d.wait_report(name)
                verify(d, sim, name, pos)
            assert len(list((d.inbox / "accepted").glob("slow.*.csv"))) == 1
            assert fetched_twice(sim) == []
            status = d.status()
            assert status["totals"].get("COMPLETED") == 9
            log = d.log(tail=None)
            assert "coupad.worker.1[" in log  # debug logging was on for the whole batch
            assert sim.password not in log
            assert "_coupa_session=" not in log and "Cookie:" not in log


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_at_any_point_resumes_without_loss_or_double_download(tmp_path, point):
    kill_9_at(point, tmp_path, LOCAL)


def kill_9_at(point: str, tmp_path: Path, where: dict[str, Any], first: int = 72_000_100) -> None:
    first += 100 * POINTS.index(point)
    pos = [str(n) for n in range(first, first + 6)]
    with sim_server(scenario=scenario(first, 6), render_delay=0.1) as sim:
        mark = tmp_path / "crashed"
        env = {"COUPAD_CRASH_AT": point, "COUPAD_CRASH_MARK": str(mark)}
        config = sim_config(sim, tmp_path, pool={"workers": 1, "tabs_per_worker": 2}, **where)
        with daemon(tmp_path, "", env=env, **config) as d:
            d.drop("crash.csv", csv_of(*pos))
            assert d.proc is not None
            d.proc.wait(120)  # the crash point kills it
            assert mark.read_text() == point
            assert d.proc.returncode == -9
            done_before = set(d.finals())  # POs finished before the crash
            d.start()  # same environment: the mark makes the crash happen only once
            summary = d.wait_report("crash", timeout=180)
            verify(d, sim, "crash", pos)
            assert summary["counts"] == {"COMPLETED": 6}
            twice = fetched_twice(sim)
            # Only downloads interrupted by the crash may have been fetched again: those of the
            # POs in flight (at most one per tab; a PO fetches its linked files side by side),
            # nothing of a PO that had finished before the crash.
            assert len({key.split("-")[0] for key in twice}) <= 2, twice
            assert not {f"PO{key.split('-')[0]}" for key in twice} & done_before, twice
            if point == "intake":
                assert twice == []
            reports = list(d.outbox.glob("crash.*.report.csv"))
            assert len(reports) == 1
            assert len(list((d.inbox / "accepted").glob("crash.*"))) == 1
            assert not list(d.inbox.glob("*.csv"))


def test_mid_batch_session_expiry_waits_for_sign_in_and_completes(tmp_path):
    session_expiry_mid_batch(tmp_path, LOCAL)


def session_expiry_mid_batch(tmp_path: Path, where: dict[str, Any], first: int = 73_000_100) -> None:
    pos = [str(n) for n in range(first, first + 8)]
    sc = scenario(first, 8)
    for n in pos[4:]:
        sc["po"][n]["page_delay"] = 0.5
    with sim_server(scenario=sc, render_delay=0.1) as sim:
        config = sim_config(sim, tmp_path, pool={"workers": 1, "tabs_per_worker": 2}, **where)
        with daemon(tmp_path, "", **config) as d:
            d.drop("expiry.csv", csv_of(*pos))
            wait_until(lambda: d.status()["totals"].get("COMPLETED", 0) >= 2, 120,
                       what="a few POs done")
            sim.expire_sessions()
            d.wait_report("expiry", timeout=180)
            verify(d, sim, "expiry", pos)
            events = _events(d)
            # The expiry was noticed (not read as "no attachments"), and work resumed by itself.
            assert "sign_in_needed" in events
            assert events.index("signed_in") > events.index("sign_in_needed")


def test_a_daemon_stopped_while_its_browsers_start_ends_them_before_they_sign_in(tmp_path):
    """SIGTERM as soon as the daemon answers (its workers are still launching): each starting
    worker is told at once, closes its browser before signing in, and the stop is clean. The
    tenant never sees a sign-in; before, each worker signed in and opened its tabs first."""
    with sim_server() as sim:
        config = sim_config(sim, tmp_path, pool={"workers": 2, "tabs_per_worker": 2})
        with daemon(tmp_path, "", **config) as d:
            states = [w["state"] for w in d.status()["workers"]]
            assert states == ["STARTING", "STARTING"], "the workers are still starting"
            assert d.terminate() == 0
        log = d.log(tail=None)
        assert "ready with" not in log
        assert sim.counters()["paths"] == {}, "no request reached the tenant"


def _events(d: DaemonProc) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(d.root / "state" / "journal.sqlite")
    try:
        return [r[0] for r in conn.execute("SELECT kind FROM events")]
    finally:
        conn.close()


def test_coupad_demo_runs_its_sample_batch_end_to_end(tmp_path):
    # README, "Two commands": `make demo` runs `coupad demo`: the simulator, a real daemon and
    # real browsers on temporary folders, a sample CSV with a mix of outcomes, live progress,
    # then the report summary and where the files are.
    import os
    import subprocess
    import sys

    from daemonkit import MARK, final_folders, our_processes

    work = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "coupad", "demo", "--dir", str(work), "--workers", "1",
         "--tabs", "3", "--timeout", "200"],
        capture_output=True, text=True, timeout=250, env={**os.environ, MARK: str(tmp_path)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "batch done:" in out.stdout and str(work / "downloads") in out.stdout
    (summary,) = (work / "outbox").glob("sample-pos.*.summary.json")
    counts = json.loads(summary.read_text(encoding="utf-8"))["counts"]
    assert {"COMPLETED", "NO_ATTACHMENTS", "NOT_FOUND", "ACCESS_DENIED", "INVALID"} <= set(counts)
    finals = final_folders(work / "downloads")
    assert finals and not list((work / "downloads").rglob("*__WORK"))
    assert sum(1 for status in finals.values() if status == "COMPLETED") >= 10
    # A PDF beside one Outlook mail, shown in the output and listed as derived from it.
    assert "an Outlook mail and its PDF, in " in out.stdout
    shown = out.stdout.split("an Outlook mail and its PDF, in ", 1)[1].splitlines()
    folder, mail, pdf = Path(shown[0].rstrip(":")), shown[1].strip(), shown[2].split("  (")[0].strip()
    assert (folder / mail).is_file() and (folder / pdf).read_bytes().startswith(b"%PDF-")
    entries = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["files"]
    assert {"name": pdf, "derived_from": mail}.items() <= next(
        e for e in entries if e["name"] == pdf).items()
    assert json.loads(summary.read_text(encoding="utf-8"))["pdfs"]["made"] >= 1
    wait_until(lambda: not our_processes(tmp_path), 30, what="no process of the demo left")
