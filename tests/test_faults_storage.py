"""The daemon against its disks: a full state volume, folders turning read-only, big files.

Real daemon, real sockets, real file systems: each fault is a small tmpfs mounted for the
test (the tests run as root) and filled up or remounted read-only under the running daemon.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openpyxl
import pytest

from daemonkit import daemon
from util import csv_of, wait_until

pytestmark = [pytest.mark.timeout(90)]
FAKE = "fakeengine:FakeEngine"
BASE = "http://127.0.0.1:9"  # never contacted by the scripted engine




@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                   check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True,
                   capture_output=True)


def fill(folder: Path) -> Path:
    """Write a file until the file system has no byte left; return it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 512):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler


def trouble(d, what: str) -> dict | None:
    return d.status().get("troubles", {}).get(what)


def test_full_state_volume_stops_claiming_says_why_and_resumes_by_itself(tmp_path):
    state = tmp_path / "state"
    with tmpfs(state, "4m"), daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
        filler = fill(state)
        d.drop("full.csv", csv_of("100001", "100002", "100003"))
        wait_until(lambda: (trouble(d, "journal") or {}).get("attempts", 0) >= 3, 20,
                   what="three tries to write the journal")
        snap = d.status()
        assert snap["daemon"]["state"] == "journal_unwritable"
        assert "full" in snap["troubles"]["journal"]["detail"]
        assert any("journal" in p for p in snap["daemon"]["problems"])
        from test_coupactl import ctl
        shown = ctl(d, "status").stdout  # what an operator reads says why too
        assert "PROBLEM:" in shown and "journal" in shown.split("PROBLEM:", 1)[1], shown
        assert d.log(None).count("cannot write the journal") == 1  # once, not once a pass
        # A restart on the full disk: the daemon comes up and waits, instead of a crash loop.
        assert d.terminate() == 0
        d.start()
        wait_until(lambda: d.status()["daemon"]["state"] == "journal_unwritable", 20)
        filler.unlink()
        summary = d.wait_report("full", timeout=30)
        assert summary["counts"] == {"COMPLETED": 3}
        assert d.status()["daemon"]["state"] == "running"
        assert "journal" not in d.status().get("troubles", {})
        assert "the journal is writable again" in d.log(None)


def test_downloads_turning_read_only_mid_batch_keeps_the_daemon_up_and_the_batch_finishes(
        tmp_path):
    downloads = tmp_path / "downloads"
    # 6xxxxx: works, then watches its page for COUPAD_FAKE_WATCH s before it completes.
    with tmpfs(downloads, "8m"), daemon(
            tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_WATCH": "2.0"},
            pool={"workers": 1, "tabs_per_worker": 3, "restart_backoff_max": 0.5,
                  "max_fast_failures": 50},
            tasks={"max_attempts": 1}) as d:
        d.drop("ro.csv", csv_of("100001", "600002", "600003"))
        wait_until(lambda: d.finals().get("PO100001") == "COMPLETED", 20)
        remount(downloads, "ro")
        try:
            def all_ended() -> bool:
                d.check_alive()
                batches = d.status()["batches"]
                return bool(batches) and batches[0]["done"] == batches[0]["total"]

            wait_until(all_ended, 30, what="every PO ended")
            wait_until(lambda: (trouble(d, "downloads") or {}).get("attempts", 0) >= 2, 20)
            assert not list(d.outbox.glob("ro.*.summary.json"))  # the report waits
            d.check_alive()
        finally:
            remount(downloads, "rw")
        d.wait_report("ro", timeout=30)
        assert d.finals() == {"PO100001": "COMPLETED", "PO600002": "FAILED",
                              "PO600003": "FAILED"}
        rows = {r["PO_NUMBER"]: r for r in d.report_rows("ro")}
        assert rows["600002"]["DOWNLOAD_FOLDER"] == str(downloads / "PO600002_FAILED")
        assert rows["600002"]["ERROR_MESSAGE"]
        assert d.log(None).count("cannot finish the folder") == 1
        assert "the downloads folder is writable again" in d.log(None)


def test_unwritable_outbox_is_logged_once_retried_and_logged_once_when_it_recovers(tmp_path):
    outbox = tmp_path / "outbox"
    with tmpfs(outbox, "1m"):
        remount(outbox, "ro")
        with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
            d.drop("out.csv", csv_of("100001"))
            wait_until(lambda: (trouble(d, "outbox") or {}).get("attempts", 0) >= 3, 20,
                       what="three tries to write the report")
            log = d.log(None)
            assert log.count("cannot write the report") == 1, log
            assert "Read-only file system" in trouble(d, "outbox")["detail"]
            assert d.call("batches")[0]["state"] == "OPEN"  # done only once its report is
            remount(outbox, "rw")
            d.wait_report("out", timeout=30)
            wait_until(lambda: d.call("batches")[0]["state"] == "DONE", 10)
            assert d.log(None).count("the outbox is writable again") == 1


def test_large_xlsx_is_read_and_reported_off_the_loop(tmp_path):
    # Every row invalid: the batch ends as soon as it exists, so the test times the reading
    # and the report (CSV and XLSX) of 12,000 rows and nothing else. On the loop, each of
    # them held every command up for most of the time they took.
    big = tmp_path / "big.xlsx"
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("POs")
    sheet.append(["PO Number", "Note"])
    for n in range(12_000):
        sheet.append([f"not a PO {n}", f"row {n}"])
    book.save(big)
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
        os.replace(big, d.inbox / "big.xlsx")
        answered_while_reporting = 0
        deadline = time.monotonic() + 60
        while not list(d.outbox.glob("big.*.summary.json")):
            assert time.monotonic() < deadline, "no report within 60 s"
            batches = d.call("batches")  # answered by the daemon's loop on its next pass
            summary_now = bool(list(d.outbox.glob("big.*.summary.json")))
            if batches:
                assert batches[0]["state"] != "DONE" or summary_now, "DONE before its report"
                if not summary_now:
                    # The batch is over (every row invalid) and its report is being written:
                    # on the loop, no command could be answered meanwhile.
                    answered_while_reporting += 1
            time.sleep(0.05)
        assert answered_while_reporting >= 2, answered_while_reporting
        assert sorted(p.name.split(".")[-2] for p in d.outbox.glob("big.*.report.*")) == [
            "report", "report"]
