"""`coupad fetch` as a user runs it: a real subprocess, real Chromium, the simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from coupad.browser import Browser, BrowserSpec
from coupad.sim.testing import SimHandle, sim_server
from enginekit import assert_fetched_once, assert_folder_matches, write_config
from util import wait_until

pytestmark = [pytest.mark.browser]

SCENARIO = {
    "po": {
        "33000001": {"attachments": [{"name": "quote.pdf", "size": 4000, "shape": "link"},
                                     {"name": "terms.docx", "size": 3000, "shape": "button"}]},
        "33000002": {"error": "not_found"},
        "33000003": {"attachments": [{"name": "late.pdf", "size": 2500, "shape": "link"}],
                     "trouble": {"throttle_first": 1}},
        "33000004": {},
        "33000005": {"trouble": {"hang": True}},
        "33000006": {"page_delay": 1.5},
        "33000007": {"attachments": [{"name": "after-expiry.pdf", "size": 2000, "shape": "button"}]},
    }
}


def fetch_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUPAD_")}
    env["SE_OFFLINE"] = "true"
    return env


def fetch(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coupad", "fetch", "-c", str(config), *args],
        capture_output=True, text=True, timeout=timeout, env=fetch_env(),
    )


def lines_by_po(stdout: str) -> dict[str, str]:
    return {line.split()[0]: line for line in stdout.splitlines() if line.startswith("PO")}


def our_browsers(root: Path) -> list[psutil.Process]:
    marker = f"--user-data-dir={root.resolve()}"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(a.startswith(marker) for a in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with sim_server(scenario=SCENARIO) as handle:
        yield handle


@pytest.mark.timeout(120)
def test_fetch_prints_one_line_per_po_and_exits_0_when_all_are_final(sim: SimHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, sim.base_url, username=sim.username, password=sim.password)
    done = fetch(config, "--tabs", "2", "PO33000001", "33000002", "po 33000003", "33000004", "33000001")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = lines_by_po(done.stdout)
    assert sorted(lines) == ["PO33000001", "PO33000002", "PO33000003", "PO33000004"]
    downloads = tmp_path / "downloads"
    assert lines["PO33000001"].split()[1:3] == ["COMPLETED", "2/2"]
    assert str(downloads / "PO33000001_COMPLETED") in lines["PO33000001"]
    assert lines["PO33000002"].split()[1] == "NOT_FOUND"
    assert "couldn't find" in lines["PO33000002"]
    assert lines["PO33000003"].split()[1] == "COMPLETED"  # throttled once, then retried
    assert lines["PO33000004"].split()[1] == "NO_ATTACHMENTS"
    for digits in ("33000001", "33000003"):
        expected = sim.truth(digits)["attachments"]
        assert_folder_matches(downloads / f"PO{digits}_COMPLETED", expected)
        assert_fetched_once(sim.counters(), expected)
    assert sim.counters()["paths"]["/order_headers/33000003"] == 2
    assert sorted(p.name for p in downloads.iterdir()) == [
        "PO33000001_COMPLETED", "PO33000002_NOT_FOUND", "PO33000003_COMPLETED",
        "PO33000004_NO_ATTACHMENTS",
    ]
    assert not our_browsers(tmp_path / "state" / "profiles"), "a browser outlived coupad fetch"
    assert list((tmp_path / "state" / "profiles").iterdir()) == [], "the profile copy was left"


@pytest.mark.timeout(120)
def test_retries_that_run_out_end_failed_and_exit_1(sim: SimHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, sim.base_url, username=sim.username, password=sim.password,
                          tasks={"po_timeout": 1.5, "max_attempts": 2})
    done = fetch(config, "33000005", "33000004")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = lines_by_po(done.stdout)
    assert lines["PO33000005"].split()[1] == "FAILED"
    assert "TIMEOUT after 2 attempts" in lines["PO33000005"]
    assert lines["PO33000004"].split()[1] == "NO_ATTACHMENTS"
    assert (tmp_path / "downloads" / "PO33000005_FAILED").is_dir()


@pytest.mark.timeout(120)
def test_session_expiry_mid_run_signs_in_again(sim: SimHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, sim.base_url, username=sim.username, password=sim.password)
    running = subprocess.Popen(
        [sys.executable, "-m", "coupad", "fetch", "-c", str(config), "--tabs", "1", "33000006", "33000007"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=fetch_env(),
    )
    try:
        # Expire every session while the first PO's (slow) page is being served.
        wait_until(lambda: sim.counters()["paths"].get("/order_headers/33000006"), 60,
                   what="the first PO's page request")
        sim.expire_sessions()
        stdout, stderr = running.communicate(timeout=90)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert running.returncode == 0, stdout + stderr
    lines = lines_by_po(stdout)
    assert lines["PO33000006"].split()[1] == "NO_ATTACHMENTS"
    assert lines["PO33000007"].split()[1] == "COMPLETED"
    assert stderr.count("signed in on the native form") == 2, stderr
    assert "SIGNED_OUT" in stderr
    expected = sim.truth("33000007")["attachments"]
    assert_folder_matches(tmp_path / "downloads" / "PO33000007_COMPLETED", expected)


@pytest.mark.timeout(60)
def test_profile_mode_without_a_signed_in_profile_says_to_run_login(sim: SimHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, sim.base_url, sign_in="profile")
    done = fetch(config, "33000004")
    assert done.returncode == 1
    assert "coupad login" in done.stderr
    assert not (tmp_path / "downloads").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bad", ["12345", "PO12a456", "", "1" * 40])
def test_invalid_po_numbers_are_a_usage_error(sim: SimHandle, tmp_path: Path, bad: str) -> None:
    config = write_config(tmp_path, sim.base_url, username=sim.username, password=sim.password)
    done = fetch(config, "33000004", bad)
    assert done.returncode == 2
    assert "PO number" in done.stderr or "too" in done.stderr
    assert done.stdout == ""


@pytest.mark.timeout(120)
def test_start_up_sweep_removes_our_leftover_browsers_only(sim: SimHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, sim.base_url, username=sim.username, password=sim.password)
    profiles = tmp_path / "state" / "profiles"
    ours = Browser.start(BrowserSpec(profile_dir=profiles / "leftover", download_dir=tmp_path / "d1"))
    theirs = Browser.start(BrowserSpec(profile_dir=tmp_path / "elsewhere" / "p", download_dir=tmp_path / "d2"))
    try:
        leftover = ours.pids()
        other = theirs.pids()
        assert our_browsers(profiles) and our_browsers(tmp_path / "elsewhere")
        done = fetch(config, "33000004")
        assert done.returncode == 0, done.stdout + done.stderr
        assert not [p for p in leftover if psutil.pid_exists(p)
                    and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert all(psutil.pid_exists(p) for p in other), "a browser outside our profile root was touched"
        assert not our_browsers(profiles)
    finally:
        ours.quit(grace=1)
        theirs.quit(grace=1)
