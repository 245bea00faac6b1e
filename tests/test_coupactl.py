"""`coupactl`, the installed console script, against a real daemon (scripted engine) and
against none: every command's human and ``--json`` output, its effect, its exit status, and
hostile input (unknown batches, wrong files)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from coupad.plain import PlainError
from coupad.snapshot import Snapshot
from coupad.ctl import COMMANDS
from daemonkit import DaemonProc, daemon, write_config
from util import wait_until

pytestmark = [pytest.mark.timeout(120)]
FAKE = "fakeengine:FakeEngine"
BASE = "http://127.0.0.1:9"  # never contacted by the scripted engine
COUPACTL = Path(sys.executable).parent / "coupactl"
NOT_RUNNING = 3


def coupactl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert COUPACTL.is_file(), COUPACTL
    return subprocess.run([str(COUPACTL), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def ctl(d: DaemonProc, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`coupactl --socket <the daemon's socket> ARGS`, which must succeed."""
    out = coupactl("--socket", d.socket, *args)
    assert out.returncode == 0, f"coupactl {args}: exit {out.returncode}\n{out.stderr}"
    assert out.stderr == "", out.stderr
    return out


def ctl_json(d: DaemonProc, *args: str | Path) -> Any:
    return json.loads(ctl(d, *args, "--json").stdout)


def csv_of(*pos: str) -> str:
    return "PO Number,Note\n" + "".join(f"{po},row {i}\n" for i, po in enumerate(pos))


def totals(d: DaemonProc) -> dict[str, int]:
    return dict(d.status()["totals"])


def holds(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Check ``predicate`` stays true for ``seconds`` (watching that nothing happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def only_batch(d: DaemonProc) -> dict[str, Any]:
    batches = d.call("batches")
    assert len(batches) == 1, batches
    return dict(batches[0])


# -- reading: status, batches, batch ---------------------------------------------------


def test_status_batches_and_batch_human_and_json(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "1.0"},
                pool={"workers": 2, "tabs_per_worker": 1}) as d:
        assert d.proc is not None
        pos = ["100001", "200002", "300003", *(f"10000{n}" for n in range(4, 9))]
        d.drop("orders.csv", csv_of(*pos))
        wait_until(lambda: totals(d).get("LEASED") and d.finals(), 30, what="a batch under way")

        text = ctl(d, "status").stdout.splitlines()
        assert re.fullmatch(rf"coupad \S+ pid {d.proc.pid}: running, up \d+m\d\ds, "
                            rf"tenant {re.escape(BASE)}", text[0]), text[0]
        assert "sign-in: ok (profile)" in text
        workers = text[text.index("workers:") + 1:][:2]
        assert all(re.match(r"\s+[12] (READY|BUSY)\s+pid \d+\s+[01]/1 tabs", w) for w in workers)
        batch_id = only_batch(d)["id"]
        line = next(t for t in text if t.startswith(f"batch {batch_id}"))
        assert re.fullmatch(rf"batch {batch_id} orders \(normal\) \[[#.]{{30}}\] [1-7]/8  "
                            r"\d+\.\d/min(, ETA \S+)?", line), line

        snap = ctl_json(d, "status")
        # The --json schema is coupad.snapshot's records: every field there, typed, none else.
        typed = Snapshot.parse(snap)
        assert typed.plain() == snap
        assert typed.throttle is not None and typed.throttle.cap == typed.throttle.limit
        assert snap["daemon"]["pid"] == d.proc.pid and snap["daemon"]["state"] == "running"
        assert snap["daemon"]["base_url"] == BASE
        assert [w["slot"] for w in snap["workers"]] == [1, 2]
        assert all(w["state"] in ("READY", "BUSY") and w["pid"] for w in snap["workers"])
        (open_batch,) = snap["batches"]
        assert (open_batch["id"], open_batch["name"], open_batch["total"]) == (
            batch_id, "orders", 8)
        assert sum(open_batch["counts"].values()) == 8

        d.wait_report("orders")
        table = ctl(d, "batches").stdout.splitlines()
        assert table[0].split() == ["ID", "NAME", "PRIORITY", "STATE", "PROGRESS"]
        assert table[1].split() == [batch_id, "orders", "normal", "DONE", "8/8"]
        (listed,) = ctl_json(d, "batches")
        assert listed["state"] == "DONE" and listed["done"] == listed["total"] == 8
        assert listed["counts"] == {"COMPLETED": 6, "NO_ATTACHMENTS": 1, "NOT_FOUND": 1}
        assert sorted(Path(p).name for p in listed["reports"]) == [
            f"orders.{batch_id}.report.csv", f"orders.{batch_id}.summary.json"]

        per_po = ctl(d, "batch", batch_id).stdout.splitlines()
        assert per_po[0] == f"batch {batch_id} orders (DONE): 8/8 POs"
        assert per_po[1].split() == ["PO", "STATUS", "TRIES", "FILES", "FOLDER", "/", "REASON"]
        rows = {line.split()[0]: line.split()[1:] for line in per_po[2:]}
        assert rows["PO100001"] == ["COMPLETED", "1", "1/1",
                                    str(d.downloads / "PO100001_COMPLETED")]
        assert rows["PO300003"] == ["NOT_FOUND", "1", "0/0",
                                    str(d.downloads / "PO300003_NOT_FOUND")]
        detail = ctl_json(d, "batch", batch_id[:-2])  # a unique prefix is enough
        assert detail["id"] == batch_id
        tasks = {t["po"]: t for t in detail["tasks"]}
        assert sorted(tasks) == sorted(f"PO{po}" for po in pos)
        assert tasks["PO200002"]["state"] == "NO_ATTACHMENTS"
        assert tasks["PO100001"]["folder"] == str(d.downloads / "PO100001_COMPLETED")
        assert tasks["PO100001"]["attempts"] == 1 and tasks["PO100001"]["downloaded"] == 1

        status = ctl(d, "status").stdout
        assert "batches: none open" in status
        # -c finds the same daemon through the config file.
        by_config = coupactl("-c", d.config, "status", "--json")
        assert by_config.returncode == 0 and json.loads(by_config.stdout)["daemon"]["pid"] == \
            d.proc.pid


HOSTILE_IDS = ["nope", "%", "_", "' OR 1=1 --", "19991231-0000", "x" * 5000, "\u6279\u6b21",
               "../../etc/passwd", "-"]


def test_unknown_batch_ids_are_refused_with_no_such_batch(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
        d.drop("known.csv", csv_of("100011"))
        d.wait_report("known")
        for batch_id in HOSTILE_IDS:
            for command in ("batch", "cancel", "retry"):
                out = coupactl("--socket", d.socket, command, "--", batch_id)
                assert out.returncode == 1, (command, batch_id, out)
                assert out.stdout == ""
                assert out.stderr.strip() == f"coupactl {command}: no batch {batch_id!r} " \
                                             "(NO_SUCH_BATCH)", out.stderr
        assert only_batch(d)["state"] == "DONE"  # nothing touched
        d.check_alive()


# -- submit ----------------------------------------------------------------------------


def test_submit_copies_files_into_the_inbox_and_they_become_batches(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "urgent.csv").write_text(csv_of("100021", "100022"), encoding="utf-8")
    (source / "a.csv").write_text(csv_of("100023"), encoding="utf-8")
    (source / "b.csv").write_text(csv_of("200024"), encoding="utf-8")
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
        out = ctl(d, "submit", "--priority", "high", source / "urgent.csv")
        assert out.stdout == f"submitted {d.inbox / 'high' / 'urgent.csv'}\n"
        placed = ctl_json(d, "submit", source / "a.csv", source / "b.csv")
        assert placed == {"submitted": [str(d.inbox / "a.csv"), str(d.inbox / "b.csv")]}
        assert d.wait_report("urgent")["counts"] == {"COMPLETED": 2}
        assert d.wait_report("a")["counts"] == {"COMPLETED": 1}
        assert d.wait_report("b")["counts"] == {"NO_ATTACHMENTS": 1}
        priorities = {b["name"]: b["priority"] for b in d.call("batches")}
        assert priorities == {"urgent": "high", "a": "normal", "b": "normal"}
        assert (source / "urgent.csv").exists()  # copied, not moved
        assert not list(d.inbox.glob(".*.tmp")) and not list(d.inbox.glob("high/.*.tmp"))


def test_submit_refuses_what_is_not_a_csv_or_xlsx_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("PO Number\n100031\n", encoding="utf-8")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    refused = {
        text: "only .csv and .xlsx files can be submitted",
        tmp_path / "missing.csv": "no such file",
        folder: "no such file",
        tmp_path / "noext": "only .csv and .xlsx files can be submitted",
    }
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
        for path, message in refused.items():
            out = coupactl("--socket", d.socket, "submit", path)
            assert out.returncode == 1, out
            assert out.stderr.strip() == f"coupactl submit: {path}: {message}"
            assert out.stdout == ""
        assert [p.name for p in d.inbox.rglob("*") if p.is_file()] == []
        assert d.call("batches") == []


def test_submit_of_a_good_and_a_missing_file_submits_neither(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(csv_of("100041"), encoding="utf-8")
    config = write_config(tmp_path, BASE)
    inbox = tmp_path / "inbox"
    out = coupactl("-c", config, "submit", good, tmp_path / "missing.csv")
    assert out.returncode == 1 and "no such file" in out.stderr
    assert not inbox.exists() or [p.name for p in inbox.iterdir()] == []


def test_submit_without_a_daemon_queues_the_file_for_the_next_start(tmp_path):
    good = tmp_path / "later.csv"
    good.write_text(csv_of("100051", "300052"), encoding="utf-8")
    other = tmp_path / "other" / "later.csv"  # the same name, another file
    other.parent.mkdir()
    other.write_text(csv_of("100053"), encoding="utf-8")
    config = write_config(tmp_path, BASE, pool={"workers": 1})
    out = coupactl("-c", config, "submit", "--priority", "low", good)
    assert out.returncode == 0, out.stderr
    queued = tmp_path / "inbox" / "low" / "later.csv"
    assert out.stdout == f"submitted {queued}\n"
    assert queued.read_bytes() == good.read_bytes()
    out = coupactl("-c", config, "submit", "--priority", "low", "--json", other)
    (renamed,) = json.loads(out.stdout)["submitted"]
    assert re.fullmatch(r"later-[0-9a-f]{6}\.csv", Path(renamed).name), renamed
    assert Path(renamed).read_bytes() == other.read_bytes()
    assert queued.read_bytes() == good.read_bytes()  # not overwritten
    # --socket names a daemon, so without one there is nowhere to put the file.
    out = coupactl("--socket", tmp_path / "state" / "coupad.sock", "submit", good)
    assert out.returncode == NOT_RUNNING and "not running" in out.stderr
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1}) as d:
        assert d.wait_report("later")["counts"] == {"COMPLETED": 1, "NOT_FOUND": 1}
        assert d.wait_report(Path(renamed).stem)["counts"] == {"COMPLETED": 1}
        assert {b["priority"] for b in d.call("batches")} == {"low"}


# -- pause, resume, drain --------------------------------------------------------------


def test_pause_stops_claiming_and_resume_goes_on(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "0.7"},
                pool={"workers": 1, "tabs_per_worker": 1}) as d:
        d.drop("paused.csv", csv_of(*(f"10006{n}" for n in range(5))))
        wait_until(lambda: totals(d).get("COMPLETED"), 30, what="a first PO done")
        assert ctl(d, "pause").stdout == "pause: ok\n"
        assert ctl_json(d, "pause") == {"paused": True}  # twice is harmless
        # The PO in flight finishes; after it nothing new is claimed.
        wait_until(lambda: not totals(d).get("LEASED"), 10, what="the in-flight PO to end")
        done = len(d.finals())
        assert done < 5
        holds(lambda: not totals(d).get("LEASED") and len(d.finals()) == done, 1.5,
              "no PO claimed while paused")
        assert ctl_json(d, "status")["daemon"]["state"] == "paused"
        assert re.match(r"coupad \S+ pid \d+: paused,", ctl(d, "status").stdout)
        assert ctl(d, "resume").stdout == "resume: ok\n"
        assert d.wait_report("paused")["counts"] == {"COMPLETED": 5}
        assert ctl_json(d, "resume") == {"paused": False}
        assert ctl_json(d, "status")["daemon"]["state"] == "running"


def test_drain_closes_the_workers_and_resume_starts_new_ones(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "0.8"},
                pool={"workers": 2, "tabs_per_worker": 1}) as d:
        d.drop("drained.csv", csv_of(*(f"10007{n}" for n in range(8))))
        wait_until(lambda: totals(d).get("COMPLETED"), 30, what="a first PO done")
        before = [w["pid"] for w in d.status()["workers"]]
        assert all(before)
        assert ctl_json(d, "drain") == {"paused": True, "draining": True}

        def closed() -> bool:
            workers = d.status()["workers"]
            return all(w["state"] == "STOPPED" and w["pid"] is None for w in workers)

        wait_until(closed, 20, what="both workers closed")
        assert ctl(d, "drain").stdout == "drain: ok\n"  # again: nothing more to close
        assert not [pid for pid in before if alive(pid)]
        assert not totals(d).get("LEASED")
        done = len(d.finals())
        assert done < 8
        holds(lambda: closed() and len(d.finals()) == done, 1.5, "nothing runs while drained")
        assert "STOPPED" in ctl(d, "status").stdout
        assert ctl(d, "resume").stdout == "resume: ok\n"
        wait_until(lambda: all(w["pid"] for w in d.status()["workers"]), 20,
                   what="new workers")
        after = [w["pid"] for w in d.status()["workers"]]
        assert not set(after) & set(before)
        assert d.wait_report("drained")["counts"] == {"COMPLETED": 8}


# -- retry, cancel ---------------------------------------------------------------------


def test_retry_failed_reruns_failed_pos_and_retry_id_reruns_a_batch(tmp_path):
    # 4xxxxx is throttled on every attempt: FAILED once tasks.max_attempts are spent. Each
    # throttle also pauses the pool a few seconds, hence one attempt only.
    with daemon(tmp_path, BASE, engine=FAKE, pool={"workers": 1, "tabs_per_worker": 2},
                tasks={"max_attempts": 1}) as d:
        d.drop("flaky.csv", csv_of("100081", "400082", "100083"))
        assert d.wait_report("flaky", timeout=60)["counts"] == {"COMPLETED": 2, "FAILED": 1}
        assert d.finals()["PO400082"] == "FAILED"
        flaky = only_batch(d)
        assert d.status()["throttle"]["throttled"] == 1

        def rerun_done(batch: dict[str, Any]) -> bool:
            now = d.call("batch", id=batch["id"])
            return bool(now["state"] == "DONE" and now["finished_at"] > batch["finished_at"])

        assert ctl_json(d, "retry", "--failed") == {"requeued": 1}
        wait_until(lambda: rerun_done(flaky), 60, what="the re-run of the failed PO")
        assert d.status()["throttle"]["throttled"] == 2  # it was tried again
        tasks = {t["po"]: t for t in d.call("batch", id=flaky["id"])["tasks"]}
        assert tasks["PO400082"]["state"] == "FAILED"
        assert tasks["PO400082"]["attempts"] == 1  # the count starts again for a re-run
        assert tasks["PO100081"]["attempts"] == 1  # the completed ones were not re-run

        d.drop("fine.csv", csv_of("100084", "200085"))
        d.wait_report("fine")
        fine = next(b for b in d.call("batches") if b["name"] == "fine")
        # Two batches of today share a prefix: the daemon asks which.
        shared = flaky["id"][:9]
        out = coupactl("--socket", d.socket, "batch", shared)
        assert out.returncode == 1
        assert f"{shared!r} matches 2 batches" in out.stderr
        assert ctl(d, "retry", fine["id"]).stdout == "requeued 2 PO(s)\n"
        wait_until(lambda: rerun_done(fine), 30, what="the re-run of a whole batch")
        tasks = {t["po"]: t for t in d.call("batch", id=fine["id"])["tasks"]}
        assert tasks["PO100084"]["state"] == "COMPLETED"
        assert tasks["PO200085"]["state"] == "NO_ATTACHMENTS"
        assert ctl(d, "retry", "--failed").stdout == "requeued 1 PO(s)\n"
        wait_until(lambda: not d.status()["batches"], 30, what="the last re-run")
        finals = d.finals()  # one final folder per PO, whatever ran twice
        assert finals == {"PO100081": "COMPLETED", "PO400082": "FAILED", "PO100083": "COMPLETED",
                          "PO100084": "COMPLETED", "PO200085": "NO_ATTACHMENTS"}


def test_retry_needs_an_id_or_failed(tmp_path):
    out = coupactl("--socket", tmp_path / "none.sock", "retry")
    assert out.returncode == 2 and "one of the arguments id --failed is required" in out.stderr
    out = coupactl("--socket", tmp_path / "none.sock", "retry", "x", "--failed")
    assert out.returncode == 2 and "not allowed with argument" in out.stderr


def test_cancel_ends_a_batch_s_waiting_pos_and_still_writes_its_report(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "0.7"},
                pool={"workers": 1, "tabs_per_worker": 1}) as d:
        pos = [f"10009{n}" for n in range(6)]
        d.drop("cancelled.csv", csv_of(*pos))
        wait_until(lambda: totals(d).get("COMPLETED"), 30, what="a first PO done")
        # Paused with nothing in flight, the POs still waiting are known for certain.
        ctl(d, "pause")
        wait_until(lambda: not totals(d).get("LEASED"), 10, what="the in-flight PO to end")
        batch = only_batch(d)
        waiting = [t["po"] for t in d.call("batch", id=batch["id"])["tasks"]
                   if t["state"] == "QUEUED"]
        assert len(waiting) >= 2
        out = ctl(d, "cancel", batch["id"][:-1]).stdout
        assert out == f"cancelled {len(waiting)} PO(s) of batch {batch['id']}\n"
        summary = d.wait_report("cancelled")
        assert summary["counts"] == {"COMPLETED": 6 - len(waiting), "CANCELLED": len(waiting)}
        rows = {f"PO{r['PO Number']}": r for r in d.report_rows("cancelled")}
        for po in waiting:
            assert rows[po]["STATUS"] == "CANCELLED"
            assert rows[po]["ERROR_MESSAGE"] == "cancelled by the user"
            assert rows[po]["DOWNLOAD_FOLDER"] == ""
        assert ctl_json(d, "cancel", batch["id"]) == {"cancelled": 0, "batch": batch["id"]}
        (listed,) = ctl_json(d, "batches")
        assert listed["state"] == "CANCELLED"
        ctl(d, "resume")
        holds(lambda: not totals(d).get("LEASED"), 1.5, "nothing of the batch runs again")
        assert sorted(d.finals()) == sorted(p for p in rows if p not in waiting)


def test_cancel_with_a_po_in_flight_keeps_its_folder_and_report_in_agreement(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "3.0"},
                pool={"workers": 1, "tabs_per_worker": 1}) as d:
        d.drop("inflight.csv", csv_of("100101", "100102", "100103"))
        wait_until(lambda: totals(d).get("LEASED") == 1, 30, what="a PO in flight")
        batch = only_batch(d)
        (flying,) = [t["po"] for t in d.call("batch", id=batch["id"])["tasks"]
                     if t["state"] == "LEASED"]
        assert ctl_json(d, "cancel", batch["id"])["cancelled"] == 2  # the two not started
        d.wait_report("inflight")
        wait_until(lambda: d.finals().get(flying), 10, what="the in-flight PO's folder")
        row = next(r for r in d.report_rows("inflight") if f"PO{r['PO Number']}" == flying)
        assert row["STATUS"] == d.finals()[flying] == "COMPLETED"
        assert row["DOWNLOAD_FOLDER"] == str(d.downloads / f"{flying}_COMPLETED")


# -- stop, and no daemon at all --------------------------------------------------------


def test_stop_lets_the_po_in_flight_finish_and_the_daemon_exit_0(tmp_path):
    with daemon(tmp_path, BASE, engine=FAKE, env={"COUPAD_FAKE_DELAY": "1.5"},
                pool={"workers": 1, "tabs_per_worker": 1}) as d:
        assert d.proc is not None
        d.drop("stopped.csv", csv_of("100111", "100112", "100113"))
        wait_until(lambda: totals(d).get("LEASED") == 1, 30, what="a PO in flight")
        (flying,) = [t["po"] for t in d.call("batch", id=only_batch(d)["id"])["tasks"]
                     if t["state"] == "LEASED"]
        assert ctl_json(d, "stop") == {"stopping": True}
        assert d.proc.wait(30) == 0
        finals = d.finals()
        assert finals[flying] == "COMPLETED"  # drained, not abandoned
        assert len(finals) < 3 and set(finals.values()) == {"COMPLETED"}  # none started after
        assert not d.socket.exists()
        out = coupactl("--socket", d.socket, "status")
        assert out.returncode == NOT_RUNNING
        assert out.stderr.strip() == f"coupactl: coupad is not running (no answer on {d.socket})"
        d.start()
        assert ctl(d, "stop").stdout == "stop: ok\n"
        assert d.proc.wait(30) == 0


def command_line(command: str) -> list[str]:
    """``command`` with the arguments it requires."""
    return {"batch": ["batch", "x"], "cancel": ["cancel", "x"], "retry": ["retry", "--failed"],
            "submit": ["submit", "x.csv"]}.get(command, [command])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_without_a_daemon_exits_3_saying_not_running(tmp_path, command):
    where = tmp_path / "coupad.sock"
    out = coupactl("--socket", where, *command_line(command))
    assert out.returncode == NOT_RUNNING, out
    assert out.stderr.strip() == f"coupactl: coupad is not running (no answer on {where})"
    assert out.stdout == ""
    out = coupactl("--socket", where, *command_line(command), "--json")
    assert out.returncode == NOT_RUNNING, out
    assert json.loads(out.stdout) == {
        "running": False, "error": f"coupad is not running (no answer on {where})"}


def test_a_stale_socket_or_a_plain_file_means_not_running(tmp_path):
    stale = tmp_path / "stale.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(stale))  # a daemon killed with -9 leaves its socket file, nobody listening
    left.close()
    plain = tmp_path / "plain.sock"
    plain.write_text("not a socket", encoding="utf-8")
    for where in (stale, plain):
        out = coupactl("--socket", where, "status")
        assert out.returncode == NOT_RUNNING, out
        assert "not running" in out.stderr


def test_status_through_a_config_without_a_daemon_and_a_missing_config(tmp_path):
    config = write_config(tmp_path, BASE)
    out = coupactl("-c", config, "status")
    assert out.returncode == NOT_RUNNING
    assert str(tmp_path / "state" / "coupad.sock") in out.stderr
    out = coupactl("-c", tmp_path / "nowhere.toml", "status")
    assert out.returncode == 78  # EX_CONFIG
    assert "does not exist" in out.stderr


@pytest.mark.parametrize(("change", "said"), [
    (lambda s: s["daemon"].pop("pid"), "status.daemon: field 'pid' is missing"),
    (lambda s: s["daemon"].update(pid="12"), "status.daemon.pid: '12' is not int"),
    (lambda s: s["daemon"].update(pid=True), "status.daemon.pid: True is not int"),
    (lambda s: s.update(workers=[{"slot": 1}]), "status.workers[0]: field 'name' is missing"),
    (lambda s: s.update(surprise=1), "status: unknown fields ['surprise']"),
    (lambda s: s.update(totals={"COMPLETED": "many"}), "status.totals['COMPLETED']"),
    (lambda s: s.update(batches="none"), "status.batches: a list expected"),
])
def test_a_status_answer_that_is_not_the_snapshot_is_refused_naming_the_field(
        change: Any, said: str) -> None:
    good = {
        "daemon": {"pid": 7, "version": "1", "state": "running", "started_at": 1.0,
                   "uptime_seconds": 2, "config": None, "base_url": BASE, "problems": []},
        "troubles": {}, "sign_in": {"mode": "form", "needed": False, "failed": False,
                                    "since": None, "detail": ""},
        "throttle": None, "memory": None, "workers": [], "batches": [], "totals": {},
    }
    assert Snapshot.parse(good).daemon.uptime_seconds == 2.0
    change(good)
    with pytest.raises(PlainError, match=re.escape(said)):
        Snapshot.parse(good)
