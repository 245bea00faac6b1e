"""The state folder and its journal against hostile surroundings, with the real daemon.

A second daemon on the same state folder, and journals this coupad cannot use: each is
refused before it touches anything, in plain words and with an exit code of its own.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from coupad.errors import ExitCode
from coupad.journal import Journal
from daemonkit import TESTS, daemon, write_config

pytestmark = [pytest.mark.timeout(60)]
FAKE = "fakeengine:FakeEngine"
BASE = "http://127.0.0.1:9"  # never contacted by the scripted engine


def run_daemon(root: Path, config: Path, env: dict[str, str] | None = None,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), "COUPAD_TEST_ENGINE": FAKE, **(env or {})}
    return subprocess.run([sys.executable, "-m", "coupad", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=timeout, env=full_env, cwd=root)


def test_second_daemon_on_the_same_state_folder_is_refused_and_kills_no_browser(tmp_path):
    # systemd's RUNTIME_DIRECTORY socket and an admin shell's: two sockets, one state folder.
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as first:
        profiles = tmp_path / "state" / "profiles"
        browser = subprocess.Popen(  # stands for a browser of the first daemon's worker
            [sys.executable, "-c", "import signal; signal.pause()",
             f"--user-data-dir={profiles.resolve()}/w0.1"], start_new_session=True)
        second = None
        try:
            other_socket = tmp_path / "admin.sock"
            second = subprocess.Popen(
                [sys.executable, "-m", "coupad", "run", "-c", str(first.config)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                env={**first.env, "COUPAD_CONTROL_SOCKET": str(other_socket)})
            try:
                _, err = second.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                second.kill()
                _, err = second.communicate()
                raise AssertionError(f"the second daemon kept running:\n{err}") from None
            assert second.returncode == int(ExitCode.ALREADY_RUNNING), err
            assert f"pid {first.proc.pid}" in err and str(first.socket) in err, err
            assert "Traceback" not in err, err
            assert browser.poll() is None, "the second daemon killed the first one's browser"
            assert not other_socket.exists()
            assert first.status()["daemon"]["state"] == "running"
        finally:
            if second is not None and second.poll() is None:
                second.kill()
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait(10)


def test_the_state_lock_dies_with_its_daemon(tmp_path):
    # Released by the kernel, not by a clean exit: after kill -9 a new daemon starts at once.
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
        d.kill9()
        d.start()
        assert d.status()["daemon"]["pid"] == d.proc.pid
        assert psutil.pid_exists(d.proc.pid)


def test_journal_from_a_newer_schema_is_refused_in_plain_words(tmp_path):
    config = write_config(tmp_path, BASE, pool={"workers": 1})
    path = tmp_path / "state" / "journal.sqlite"
    Journal.open(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('coupad.journal', '0007_future_columns', '2031-01-01')")
    conn.close()
    done = run_daemon(tmp_path, config)
    assert done.returncode == int(ExitCode.JOURNAL), done.stderr
    assert f"journal {path} was written by a newer coupad (schema 7; this one knows up to 2)" \
        in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_incompatible_journal_ends_with_a_clear_error_not_a_traceback(tmp_path):
    config = write_config(tmp_path, BASE, pool={"workers": 1})
    path = tmp_path / "state" / "journal.sqlite"
    Journal.open(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("ALTER TABLE tasks DROP COLUMN lease_owner")
        conn.execute("DROP TABLE counts")
    conn.close()
    done = run_daemon(tmp_path, config)
    assert done.returncode == int(ExitCode.JOURNAL), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "counts" in done.stderr and "tasks.lease_owner" in done.stderr, done.stderr
