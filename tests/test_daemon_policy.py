"""The real daemon and coupactl as subprocesses, with a scripted engine for pool policy.

The scripted engine (tests/fakeengine.py) decides each PO's fate from its digits, so these
tests exercise supervision, retries, shutdown and crash recovery in seconds. The same paths
run with real Chromium in test_daemon_browser.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from daemonkit import daemon, our_processes
from util import alive, csv_of, wait_until

pytestmark = [pytest.mark.timeout(180)]
FAKE = "fakeengine:FakeEngine"
BASE = "http://127.0.0.1:9"  # never contacted by the scripted engine




def coupactl(proc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coupad.ctl", "--socket", str(proc.socket), *args],
        capture_output=True, text=True, timeout=30, env=proc.env,
    )


def test_csv_dropped_gives_report_folders_and_status(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE) as d:
        d.drop("orders.csv", csv_of("PO100001", "200002", "300003", "not-a-po", "po 100001"))
        summary = d.wait_report("orders")
        rows = d.report_rows("orders")
        assert [r["STATUS"] for r in rows] == [
            "COMPLETED", "NO_ATTACHMENTS", "NOT_FOUND", "INVALID", "COMPLETED"]
        assert [r["Note"] for r in rows] == [f"row {i}" for i in range(5)]
        assert "not a PO number" in rows[3]["ERROR_MESSAGE"]
        assert d.finals() == {"PO100001": "COMPLETED", "PO200002": "NO_ATTACHMENTS",
                              "PO300003": "NOT_FOUND"}
        assert (d.downloads / "PO100001_COMPLETED" / "quote.pdf").read_bytes() == b"100001"
        assert rows[0]["DOWNLOAD_FOLDER"] == str(d.downloads / "PO100001_COMPLETED")
        assert rows[3]["DOWNLOAD_FOLDER"] == ""  # an invalid row has no folder
        assert summary["po_counts"] == {"COMPLETED": 1, "NOT_FOUND": 1, "NO_ATTACHMENTS": 1}
        assert list((d.inbox / "accepted").glob("orders.*.csv"))
        out = coupactl(d, "status", "--json")
        assert out.returncode == 0, out.stderr
        snap = json.loads(out.stdout)
        assert snap["daemon"]["state"] == "running"
        assert len(snap["workers"]) == 2
        batches = json.loads(coupactl(d, "batches", "--json").stdout)
        assert batches[0]["state"] == "DONE" and batches[0]["done"] == 3
        assert d.terminate() == 0


def test_three_files_at_once_make_three_batches_and_bad_files_do_not_stop_it(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE) as d:
        d.drop("empty.csv", "")
        d.drop("nopo.csv", "Name,Amount\nx,1\n")
        (d.inbox / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
        for name in ("a", "b", "c"):
            d.drop(f"{name}.csv", csv_of(f"1000{ord(name)}1", f"1000{ord(name)}2"))
        for name in ("a", "b", "c"):
            assert d.wait_report(name)["counts"] == {"COMPLETED": 2}
        rejected = d.inbox / "rejected"
        wait_until(lambda: len(list(rejected.glob("*.reason.txt"))) == 3, 30)
        assert "empty" in (rejected / "empty.reason.txt").read_text()
        assert "PO" in (rejected / "nopo.reason.txt").read_text()
        assert (rejected / "binary.csv").exists()


def test_same_content_twice_while_open_is_one_batch(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "1.5"}) as d:
        text = csv_of("100011", "100012", "100013", "100014", "100015")
        d.drop("twice.csv", text)
        wait_until(lambda: d.status()["batches"], 30, what="the first batch")
        d.drop("twice-again.csv", text)
        wait_until(lambda: len(list((d.inbox / "accepted").iterdir())) == 2, 30)
        d.wait_report("twice")
        assert len(d.call("batches")) == 1


def test_worker_killed_mid_po_is_replaced_and_the_batch_completes(tmp_path):
    # 8xxxxx kills its worker process every time: after max_attempts it is FAILED, with one
    # final folder, while the others complete on the restarted workers.
    # One tab per worker, so that the POs sharing a browser with the crashing one are not
    # taken down with it (each such crash counts an attempt for every PO in its tabs).
    with daemon(tmp_path, BASE, engine=FAKE,
                pool={"workers": 2, "tabs_per_worker": 1, "max_fast_failures": 10}) as d:
        d.drop("crash.csv", csv_of("100021", "800022", "100023", "100024"))
        d.wait_report("crash")
        finals = d.finals()
        assert finals["PO800022"] == "FAILED"
        assert [finals[f"PO1000{n}"] for n in (21, 23, 24)] == ["COMPLETED"] * 3
        row = [r for r in d.report_rows("crash") if r["PO_NUMBER"] == "800022"][0]
        assert "gave up after 3 attempts" in row["ERROR_MESSAGE"]
        assert "worker lost" in row["ERROR_MESSAGE"]
        restarts = sum(w["restarts"] for w in d.status()["workers"])
        assert restarts >= 3


def test_hung_worker_is_killed_by_heartbeat_silence(tmp_path):
    # One tab per worker: a hung browser takes down every PO in its tabs (each counts an
    # attempt), so the bystander runs in the other worker here.
    with daemon(tmp_path, BASE, engine=FAKE, pool={"lease_seconds": 3.0, "tabs_per_worker": 1},
                tasks={"max_attempts": 2}) as d:
        d.drop("hang.csv", csv_of("900031", "100032"))
        d.wait_report("hang", timeout=120)
        assert d.finals() == {"PO900031": "FAILED", "PO100032": "COMPLETED"}
        assert "no heartbeat" in d.log()


def test_slot_that_cannot_start_becomes_fatal_and_the_daemon_stays_up(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_START": "fail"},
                pool={"workers": 2, "max_fast_failures": 3, "restart_backoff_max": 5.0}) as d:
        d.drop("waiting.csv", csv_of("100041"))
        snap = wait_until(
            lambda: (s := d.status())["workers"]
            and all(w["state"] == "FATAL" for w in s["workers"]) and s,
            60, what="both slots FATAL")
        assert "fake browser refuses to start" in snap["workers"][0]["last_error"]
        assert snap["totals"].get("QUEUED") == 1  # kept queued, nothing lost
        out = coupactl(d, "status")
        assert out.returncode == 0 and "FATAL" in out.stdout


def test_sigterm_drains_in_flight_pos_then_exits_zero(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "2"},
                pool={"workers": 1, "tabs_per_worker": 2}) as d:
        d.drop("drain.csv", csv_of("100051", "100052", "100053", "100054"))
        wait_until(lambda: d.status()["totals"].get("LEASED") == 2, 30, what="2 in flight")
        assert d.terminate() == 0
        assert "stopped (clean)" in d.log()
        # The two in flight finished; the two never started stay queued for the next start.
        assert sorted(d.finals()) == ["PO100051", "PO100052"]
        d.start()
        d.wait_report("drain")
        assert sorted(d.finals().values()) == ["COMPLETED"] * 4


def test_second_sigterm_forces_the_stop_and_keeps_pos_queued(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "30"},
                pool={"workers": 1, "tabs_per_worker": 2}) as d:
        d.drop("force.csv", csv_of("100061", "100062"))
        wait_until(lambda: d.status()["totals"].get("LEASED") == 2, 30, what="2 in flight")
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "stopping" in d.log(), 10)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30) == 75
        assert d.finals() == {}
        d.start()
        snap = d.status()
        assert snap["totals"].get("QUEUED", 0) + snap["totals"].get("LEASED", 0) == 2
        with_attempts = d.call("batch", id=snap["batches"][0]["id"])["tasks"]
        assert [t["attempts"] for t in with_attempts] == [0, 0]  # a forced stop costs none


def test_kill_9_of_the_daemon_leaves_no_worker_and_the_restart_resumes(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "0.5"},
                pool={"workers": 2, "tabs_per_worker": 1}) as d:
        d.drop("k9.csv", csv_of(*(f"1000{n}" for n in range(70, 80))))
        wait_until(lambda: len(d.finals()) >= 2 and d.status()["totals"].get("LEASED"), 30,
                   what="some POs done and some in flight")
        worker_pids = [w["pid"] for w in d.status()["workers"] if w["pid"]]
        d.kill9()
        wait_until(lambda: not any(alive(p) for p in worker_pids), 15,
                   what="workers to follow the daemon")
        d.start()
        d.wait_report("k9")
        assert sorted(d.finals().values()) == ["COMPLETED"] * 10
        # The POs in flight at the kill were requeued at start-up, not lost or doubled.
        assert "left in flight by an earlier run" in d.log()


def test_coupactl_without_a_daemon_exits_3(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "coupad.ctl", "--socket", str(tmp_path / "none.sock"), "status"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 3
    assert "not running" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "coupad.ctl", "--socket", str(tmp_path / "none.sock"),
         "status", "--json"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 3 and json.loads(out.stdout)["running"] is False


def test_second_daemon_on_the_same_state_refuses_to_start(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE) as d:
        second = subprocess.run(
            [sys.executable, "-m", "coupad", "run", "-c", str(d.config)],
            capture_output=True, text=True, timeout=60, env=d.env,
        )
        assert second.returncode != 0
        assert "another coupad already answers" in second.stderr
        d.check_alive()
    assert not our_processes(tmp_path)




def test_json_log_format_has_component_and_pid_on_every_line(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, log={"format": "json", "level": "debug"}) as d:
        d.drop("j.csv", csv_of("100081"))
        d.wait_report("j")
        assert d.terminate() == 0
    lines = [json.loads(line) for line in d.log_path.read_text().splitlines() if line.strip()]
    assert lines and all({"ts", "level", "component", "pid", "msg"} <= set(e) for e in lines)
    assert {e["component"] for e in lines} >= {"coupad.daemon", "coupad.worker.1"}


def test_the_whole_hostile_corpus_then_a_good_file(tmp_path):
    """Every bad file gets its rejection or row errors; the daemon keeps working after them."""
    import corpus

    with daemon(tmp_path, BASE, engine=FAKE, inbox={"max_rows": corpus.MAX_ROWS}) as d:
        cases = [c for c in corpus.CASES if not c.ignored]
        assert len(cases) >= 30
        for case in corpus.CASES:
            corpus.write(case, d.inbox)
        rejected = d.inbox / "rejected"
        accepted = d.inbox / "accepted"

        def settled() -> bool:
            d.check_alive()
            return not [p for p in d.inbox.iterdir()
                        if p.is_file() and p.name in {c.name for c in cases}]

        wait_until(settled, 120, what="every corpus file accepted or rejected")
        for case in cases:
            stem = Path(case.name).stem
            if case.rejected:
                reasons = list(rejected.glob(f"{stem}*.reason.txt"))
                assert reasons, case.name
                text = " ".join(r.read_text(encoding="utf-8") for r in reasons)
                assert case.rejected in text, (case.name, text)
            else:
                assert list(accepted.glob(f"{stem}.*")), case.name
        for case in corpus.CASES:
            if case.ignored:
                assert (d.inbox / case.name).exists(), f"{case.name} must be left alone"
        d.drop("good-after.csv", csv_of("100091", "100092"))
        assert d.wait_report("good-after")["counts"] == {"COMPLETED": 2}
        d.check_alive()


def test_small_batch_is_not_stuck_behind_a_big_one_and_high_priority_goes_first(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "0.1"},
                pool={"workers": 1, "tabs_per_worker": 1}) as d:
        d.drop("big.csv", csv_of(*(str(110000 + n) for n in range(60))))
        wait_until(lambda: d.status()["batches"], 30, what="the big batch")
        d.drop("small.csv", csv_of(*(str(120000 + n) for n in range(5))))
        d.wait_report("small")
        big = next(b for b in d.status()["batches"] if b["name"] == "big")
        assert big["done"] < 30  # round-robin: the small one did not wait for the big one
        d.drop("urgent.csv", csv_of(*(str(130000 + n) for n in range(5))), folder="high")
        d.wait_report("urgent")
        big_after = next(b for b in d.status()["batches"] if b["name"] == "big")
        assert big_after["done"] - big["done"] <= 6  # high priority ran ahead of the big one
        priorities = {b["name"]: b["priority"] for b in d.call("batches")}
        assert priorities == {"big": "normal", "small": "normal", "urgent": "high"}
        d.wait_report("big", timeout=120)


def test_missing_chromium_keeps_the_daemon_up_saying_why_and_pos_queued(tmp_path):
    # The real engine this time: the browser binary itself is missing.
    with daemon(tmp_path, BASE, browser={"chromium": str(tmp_path / "no-chromium")},
                pool={"workers": 1, "max_fast_failures": 2, "restart_backoff_max": 30.0}) as d:
        d.drop("nobrowser.csv", csv_of("100101", "100102"))
        snap = wait_until(lambda: (s := d.status())["workers"][0]["state"] == "FATAL" and s,
                          60, what="the slot FATAL")
        assert "no-chromium is missing or not executable" in snap["workers"][0]["last_error"]
        assert "apt-get install chromium" in snap["workers"][0]["last_error"]
        assert snap["totals"] == {"QUEUED": 2}
        assert "no-chromium is missing" in d.log()
        out = coupactl(d, "status")
        assert out.returncode == 0 and "FATAL" in out.stdout


def test_xlsx_input_gets_csv_and_xlsx_reports_with_its_extra_columns(tmp_path):
    import openpyxl

    with daemon(tmp_path, BASE, engine=FAKE) as d:
        book = openpyxl.Workbook()
        book.active.title = "Notes"
        data = book.create_sheet("PO_Data")
        data.append(["Order Number", "Cost Center", "Amount"])
        data.append([100111.0, "CC-1", 12.5])
        data.append(["PO 300112", "placeholder", 3])
        data.cell(row=3, column=2).value = "=HYPERLINK(\"http://x\")"
        data.cell(row=3, column=2).data_type = "s"  # text that a spreadsheet would run
        data.append(["garbage", "CC-3", 0])
        temp = d.inbox / ".orders.xlsx.tmp"
        book.save(temp)
        os.replace(temp, d.inbox / "orders.xlsx")
        d.wait_report("orders")
        report = sorted(d.outbox.glob("orders.*.report.xlsx"))
        assert len(report) == 1
        sheet = openpyxl.load_workbook(report[0], read_only=True).active
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
        header = rows[0]
        assert header[:3] == ["Order Number", "Cost Center", "Amount"]
        status = header.index("STATUS")
        assert [r[status] for r in rows[1:]] == ["COMPLETED", "NOT_FOUND", "INVALID"]
        assert str(rows[2][1]).startswith("'=")  # a formula from the input stays inert
        assert d.finals() == {"PO100111": "COMPLETED", "PO300112": "NOT_FOUND"}


def test_a_worker_is_recycled_after_recycle_after_pos_pos(tmp_path):
    # README, "Under load and trouble": a browser is recycled between POs after
    # pool.recycle_after_pos POs.
    import sqlite3

    with daemon(tmp_path, BASE, engine=FAKE,
                pool={"workers": 1, "tabs_per_worker": 1, "recycle_after_pos": 2}) as d:
        first = wait_until(lambda: d.status()["workers"][0]["pid"], 30, what="a worker")
        d.drop("recycle.csv", csv_of(*(f"1002{n}0" for n in range(6))))
        assert d.wait_report("recycle")["counts"] == {"COMPLETED": 6}
        conn = sqlite3.connect(d.root / "state" / "journal.sqlite")
        try:
            exits = [json.loads(row[0]) for row in
                     conn.execute("SELECT detail FROM events WHERE kind = 'worker_exit'")]
        finally:
            conn.close()
        recycled = [e for e in exits if e["expected"] and e["reason"] == "recycling after 2 POs"]
        assert len(recycled) >= 2, exits
        assert not [e for e in exits if not e["expected"]], exits
        assert wait_until(lambda: d.status()["workers"][0]["pid"], 30) != first


def test_sigint_stops_the_daemon_cleanly_like_sigterm(tmp_path):
    # README, "coupad commands": `coupad run` stops cleanly on SIGTERM/SIGINT (Ctrl-C).
    with daemon(tmp_path, BASE, engine=FAKE) as d:
        d.drop("int.csv", csv_of("100121"))
        d.wait_report("int")
        assert d.proc is not None
        d.proc.send_signal(signal.SIGINT)
        assert d.proc.wait(30) == 0
        assert "stopped (clean)" in d.log()


@pytest.mark.parametrize("watching_tabs, held", [(2, 4), (0, 2)])
def test_pos_that_only_watch_their_page_let_more_pos_start(tmp_path, watching_tabs, held):
    # 6xxxxx work briefly, then only watch their page for 1.5 s: with pool.watching_tabs = 2
    # one browser of 2 tabs holds 4 of them at once, never more than 2 working; with 0, 2.
    pos = [f"6000{n:02d}" for n in range(6)]
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_WATCH": "1.5"},
                pool={"workers": 1, "tabs_per_worker": 2, "watching_tabs": watching_tabs}) as d:
        d.drop("watch.csv", csv_of(*pos))
        assert d.wait_report("watch")["counts"] == {"COMPLETED": 6}
        [peak_file] = (d.root / "state").glob("fake-peak-*.json")
        peak = json.loads(peak_file.read_text())
        assert peak == {"held": held, "working": 2}
        assert d.finals() == {f"PO{po}": "COMPLETED" for po in pos}
