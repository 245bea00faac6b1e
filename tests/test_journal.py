"""The journal on real SQLite files: batches, scheduling, retries, leases, crash safety."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from coupad.errors import CoupadError
from coupad.records import RETRY_AFTER_CAP
from coupad.journal import (
    Batch,
    DuplicateContent,
    FileRecord,
    Journal,
    JournalError,
    RetryPolicy,
    RowIn,
    Task,
    TaskOutcome,
    resolve,
)
from coupad.states import FINAL, BatchState, TaskState
from util import wait_until

T = TaskState
NOW = 1_795_000_000.0  # a fixed clock: tests step time, never sleep


def rows_for(pos: list[str | None], errors: dict[int, str] | None = None) -> list[RowIn]:
    """One row per entry; None or an entry in ``errors`` makes an invalid row."""
    errors = errors or {}
    return [
        RowIn(row_no=i + 2, values=(str(po), f"extra {i}"),
              po_digits=None if (po is None or i in errors) else po,
              error=errors.get(i) or (None if po is not None else "the PO number is empty"))
        for i, po in enumerate(pos)
    ]


def make_batch(j: Journal, pos: list[str | None], *, sha: str | None = None,
               priority: str = "normal", now: float = NOW, max_attempts: int = 3,
               skip_completed: bool = True, errors: dict[int, str] | None = None) -> Batch:
    return j.create_batch(
        name="orders", source="orders.csv", content_sha256=sha or os.urandom(8).hex(),
        priority=priority, fmt="csv", columns=["PO_NUMBER", "NOTE"], po_column="PO_NUMBER",
        rows=rows_for(pos, errors), now=now, max_attempts=max_attempts,
        skip_completed=skip_completed,
    )


def pos(n: int, start: int = 1_000_000) -> list[str | None]:
    return [str(start + i) for i in range(n)]


def claim_one(j: Journal, owner: str = "w1", now: float = NOW) -> Task:
    tasks = j.claim(owner, 1, now, 60.0)
    assert len(tasks) == 1
    return tasks[0]


def brute_force_counts(path: Path) -> dict[str, dict[str, int]]:
    conn = sqlite3.connect(path)
    try:
        result: dict[str, dict[str, int]] = {}
        for batch_id, state, n in conn.execute(
            "SELECT batch_id, state, count(*) FROM tasks GROUP BY batch_id, state"
        ):
            result.setdefault(batch_id, {})[state] = n
        return result
    finally:
        conn.close()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


COMPLETED = TaskOutcome("COMPLETED", found=1, downloaded=1, names=("a.pdf",))


# -- opening ---------------------------------------------------------------------------------


def test_open_creates_folders_wal_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state" / "journal.sqlite"
    with Journal.open(path) as j:
        make_batch(j, pos(3))
    with Journal.open(path) as j:  # second open: migrations already applied, data intact
        assert sum(j.totals().values()) == 3
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        applied = conn.execute("SELECT migration_set, name FROM _sqlite_migrations").fetchall()
        assert applied == [("coupad.journal", "0001_initial"), ("coupad.journal", "0002_pdfs")]
    finally:
        conn.close()


def test_open_sets_pragmas_on_its_connection(journal: Journal) -> None:
    conn = journal._conn
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_open_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"this is not SQLite\x00" * 100)
    with pytest.raises(JournalError, match="cannot open the journal"):
        Journal.open(path)


def test_journal_error_is_a_coupad_error() -> None:
    assert issubclass(JournalError, CoupadError)


def test_a_connection_refuses_to_cross_a_fork(journal: Journal) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what using the inherited journal did, then leave at once
        try:
            journal.totals()
            os.write(write, b"used")
        except JournalError:
            os.write(write, b"refused")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 100) == b"refused"
    os.close(read)
    assert journal.totals() == {}  # the parent's connection still works


def test_deleting_tasks_is_refused(journal: Journal) -> None:
    make_batch(journal, pos(2))
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        journal._conn.execute("DELETE FROM tasks")


# -- batches ---------------------------------------------------------------------------------


def test_create_batch_with_duplicates_and_invalid_rows_keeps_every_row_in_order(
    journal: Journal,
) -> None:
    entries: list[str | None] = ["1000001", "1000002", None, "1000001", "1000003", "1000002"]
    batch = make_batch(journal, entries, errors={4: "'PO12x' is not a PO number"})
    assert batch.row_count == 6
    assert batch.task_count == 2  # 1000001 and 1000002; row 4 is invalid
    tasks = journal.tasks(batch.id)
    assert [t.po_digits for t in tasks] == ["1000001", "1000002"]
    assert all(t.state is T.QUEUED and t.attempts == 0 for t in tasks)
    report = journal.report_rows(batch.id)
    assert [r.row_no for r in report] == [2, 3, 4, 5, 6, 7]
    assert [r.values for r in report] == [(str(p), f"extra {i}") for i, p in enumerate(entries)]
    assert report[0].task is not None and report[3].task is not None
    assert report[0].task.id == report[3].task.id  # duplicates share one task
    assert report[2].task is None and report[2].error == "the PO number is empty"
    assert report[4].task is None and report[4].error == "'PO12x' is not a PO number"
    assert report[5].task is not None and report[5].task.po_digits == "1000002"


def test_create_batch_keeps_hostile_cells_verbatim(journal: Journal) -> None:
    cells = ("=HYPERLINK(\"http://x\")", "a\x00b", "é\u202e😀", "x" * 100_000, "", "\r\n;\"")
    batch = journal.create_batch(
        name="../../etc/passwd", source="we\x00ird.csv", content_sha256="s", priority="low",
        fmt="csv", columns=["PO", "a\nb"], po_column="PO",
        rows=[RowIn(row_no=2, values=cells, po_digits="1234567")], now=NOW, max_attempts=2,
    )
    assert re.fullmatch(r"\d{8}-[0-9a-f]{4}", batch.id)
    assert batch.name == "../../etc/passwd" and batch.columns == ("PO", "a\nb")
    assert journal.report_rows(batch.id)[0].values == cells


@pytest.mark.parametrize("digits", ["12a4567", "", " 1234567", "١٢٣٤٥٦٧", "1234567'; DROP TABLE tasks;--"])
def test_create_batch_refuses_po_digits_that_are_not_digits(journal: Journal, digits: str) -> None:
    with pytest.raises(JournalError, match="PO digits expected"):
        journal.create_batch(
            name="x", source="x.csv", content_sha256="s", priority="normal", fmt="csv",
            columns=["PO"], po_column="PO", rows=[RowIn(2, ("x",), digits)], now=NOW,
            max_attempts=3,
        )
    assert journal.batches() == []  # nothing half-created


def test_create_batch_refuses_unknown_priority_and_zero_attempts(journal: Journal) -> None:
    with pytest.raises(JournalError, match="priority must be one of high, normal, low"):
        make_batch(journal, pos(1), priority="urgent")
    with pytest.raises(JournalError, match="max_attempts"):
        make_batch(journal, pos(1), max_attempts=0)


def test_batch_where_every_row_is_invalid_is_finished_at_once(journal: Journal) -> None:
    batch = make_batch(journal, [None, None])
    assert batch.task_count == 0 and batch.row_count == 2
    assert [b.id for b in journal.finished_batches()] == [batch.id]
    journal.mark_done(batch.id, NOW, ["out/orders.report.csv"])
    done = journal.batch(batch.id)
    assert done is not None and done.state is BatchState.DONE
    assert done.report_paths == ("out/orders.report.csv",) and done.finished_at == NOW


def test_batch_ids_are_short_unique_and_found_by_prefix(journal: Journal) -> None:
    ids = {make_batch(journal, pos(1, 2_000_000 + i)).id for i in range(40)}
    assert len(ids) == 40
    assert all(re.fullmatch(r"\d{8}-[0-9a-f]{4,8}", i) for i in ids)
    some = sorted(ids)[0]
    prefix = next(some[:n] for n in range(9, len(some) + 1)
                  if sum(other.startswith(some[:n]) for other in ids) == 1)
    found = journal.batch(prefix)
    assert found is not None and found.id == some
    with pytest.raises(JournalError, match="matches 40 batches"):
        journal.batch(some[:8])  # the date part is shared by all of them
    assert journal.batch("nope") is None
    assert journal.batch("") is None


def test_same_content_while_open_does_not_create_a_second_batch(journal: Journal) -> None:
    first = make_batch(journal, pos(2), sha="abc")
    found = journal.open_batch_with_content("abc")
    assert found is not None and found.id == first.id
    with pytest.raises(DuplicateContent) as caught:
        make_batch(journal, pos(2), sha="abc")
    assert caught.value.batch.id == first.id
    assert len(journal.batches()) == 1
    for task in journal.claim("w1", 2, NOW, 60):
        journal.record(task.id, "w1", COMPLETED, NOW)
    journal.mark_done(first.id, NOW, [])
    assert journal.open_batch_with_content("abc") is None
    second = make_batch(journal, pos(2), sha="abc", skip_completed=False)
    assert second.id != first.id


def test_skip_completed_points_to_the_existing_folder(journal: Journal, tmp_path: Path) -> None:
    folder = tmp_path / "downloads" / "PO1000000_COMPLETED"
    folder.mkdir(parents=True)
    first = make_batch(journal, pos(2))
    a, b = journal.claim("w1", 2, NOW, 60)
    journal.record(a.id, "w1", TaskOutcome("COMPLETED", supplier="ACME", found=2, downloaded=2,
                                           names=("q.pdf", "c.msg"), folder=str(folder),
                                           url="https://x/order_headers/1000000"), NOW)
    journal.record(b.id, "w1", TaskOutcome("COMPLETED", folder=str(tmp_path / "gone")), NOW)
    second = make_batch(journal, pos(3), now=NOW + 10)
    assert second.task_count == 3
    skipped, deleted, new = journal.tasks(second.id)
    assert skipped.state is T.COMPLETED
    assert skipped.reason == f"already downloaded in batch {first.id}"
    assert skipped.folder == str(folder) and skipped.supplier == "ACME"
    assert skipped.names == ("q.pdf", "c.msg") and skipped.found == 2
    assert skipped.last_processed == journal.task(a.id).last_processed is not None
    assert skipped.attempts == 0 and skipped.url == "https://x/order_headers/1000000"
    assert deleted.state is T.QUEUED  # its folder no longer exists: download again
    assert new.state is T.QUEUED
    assert journal.counts()[second.id] == {"COMPLETED": 1, "QUEUED": 2}
    third = make_batch(journal, pos(1), skip_completed=False)
    assert journal.tasks(third.id)[0].state is T.QUEUED  # the user asked for a re-run


def test_skip_completed_looks_at_the_latest_earlier_task_only(journal: Journal,
                                                             tmp_path: Path) -> None:
    folder = tmp_path / "PO1000000_COMPLETED"
    folder.mkdir()
    make_batch(journal, pos(1))
    journal.record(claim_one(journal).id, "w1", TaskOutcome("COMPLETED", folder=str(folder)), NOW)
    make_batch(journal, pos(1), skip_completed=False)
    journal.record(claim_one(journal).id, "w1", TaskOutcome("NOT_FOUND"), NOW)
    latest = make_batch(journal, pos(1))
    assert journal.tasks(latest.id)[0].state is T.QUEUED


# -- scheduling ------------------------------------------------------------------------------


def test_claim_takes_input_order_within_a_batch(journal: Journal) -> None:
    batch = make_batch(journal, ["1000005", "1000001", "1000009", "1000001", "1000003"])
    tasks = journal.claim("w1", 10, NOW, 60)
    assert [t.po_digits for t in tasks] == ["1000005", "1000001", "1000009", "1000003"]
    assert all(t.state is T.LEASED and t.lease_owner == "w1" for t in tasks)
    assert all(t.lease_expires == NOW + 60 for t in tasks)
    assert journal.claim("w2", 10, NOW, 60) == []
    assert journal.counts() == {batch.id: {"LEASED": 4}}


def test_claim_high_priority_beats_normal_beats_low(journal: Journal) -> None:
    low = make_batch(journal, pos(3, 3_000_000), priority="low", now=NOW)
    normal = make_batch(journal, pos(3, 2_000_000), priority="normal", now=NOW + 1)
    high = make_batch(journal, pos(3, 1_000_000), priority="high", now=NOW + 2)
    order = [t.batch_id for t in journal.claim("w1", 9, NOW, 60)]
    assert order == [high.id] * 3 + [normal.id] * 3 + [low.id] * 3


def test_claim_round_robin_small_batch_is_not_stuck_behind_a_huge_one(journal: Journal) -> None:
    huge = make_batch(journal, pos(20_000, 5_000_000), now=NOW)
    small = make_batch(journal, pos(20, 9_000_000), now=NOW + 1)
    served = []
    for i in range(40):  # one PO at a time, each finished before the next claim
        task = claim_one(journal, now=NOW + i)
        served.append(task.batch_id)
        journal.record(task.id, "w1", COMPLETED, NOW + i)
    assert served.count(small.id) == 20 and served.count(huge.id) == 20
    assert all(served[i] != served[i + 1] for i in range(39))  # strictly alternating
    assert journal.counts()[small.id] == {"COMPLETED": 20}
    # One claim of several slots interleaves too; the small batch is done, the huge one goes on.
    assert [t.batch_id for t in journal.claim("w1", 5, NOW, 60)] == [huge.id] * 5


def test_claim_of_many_slots_interleaves_equal_priorities(journal: Journal) -> None:
    a = make_batch(journal, pos(10, 1_000_000), now=NOW)
    b = make_batch(journal, pos(10, 2_000_000), now=NOW + 1)
    c = make_batch(journal, pos(2, 3_000_000), now=NOW + 2)
    order = [t.batch_id for t in journal.claim("w1", 8, NOW, 60)]
    assert order == [a.id, b.id, c.id, a.id, b.id, c.id, a.id, b.id]
    # The rotation carries over between claims: c is empty, so a and b keep alternating.
    assert [t.batch_id for t in journal.claim("w1", 3, NOW, 60)] == [a.id, b.id, a.id]


def test_a_new_batch_is_served_at_once_between_turns(journal: Journal) -> None:
    a = make_batch(journal, pos(10, 1_000_000), now=NOW)
    journal.claim("w1", 3, NOW, 60)
    b = make_batch(journal, pos(10, 2_000_000), now=NOW + 1)
    assert [t.batch_id for t in journal.claim("w1", 3, NOW, 60)] == [b.id, a.id, b.id]


def test_claim_zero_or_nothing_eligible_returns_nothing(journal: Journal) -> None:
    assert journal.claim("w1", 5, NOW, 60) == []
    make_batch(journal, pos(1))
    assert journal.claim("w1", 0, NOW, 60) == []
    assert journal.totals() == {"QUEUED": 1}


# -- outcomes and retries --------------------------------------------------------------------


@pytest.mark.parametrize("status", ["COMPLETED", "NO_ATTACHMENTS", "NOT_FOUND", "ACCESS_DENIED"])
def test_leased_to_final_outcome_at_once_never_retried(journal: Journal, status: str) -> None:
    make_batch(journal, pos(1))
    task = claim_one(journal)
    after = journal.record(task.id, "w1", TaskOutcome(status, reason="why"), NOW + 5)
    assert after.state is T(status) and after.attempts == 1
    assert after.lease_owner is None and after.lease_expires is None and after.not_before is None
    assert after.reason == "why" and after.last_processed is not None
    assert journal.claim("w1", 1, NOW + 10**6, 60) == []


def test_leased_to_retry_wait_then_claimed_again_once_due(journal: Journal) -> None:
    make_batch(journal, pos(1))
    task = claim_one(journal)
    after = journal.record(task.id, "w1", TaskOutcome("SERVER_ERROR", reason="HTTP 502"), NOW,
                           rng=random.Random(1))
    assert after.state is T.RETRY_WAIT and after.attempts == 1 and after.reason == "HTTP 502"
    assert after.not_before is not None and NOW + 2.5 <= after.not_before <= NOW + 7.5
    assert journal.claim("w1", 1, after.not_before - 0.01, 60) == []
    again = claim_one(journal, now=after.not_before)
    assert again.id == task.id and again.state is T.LEASED and again.not_before is None


def test_retry_backoff_grows_is_capped_and_respects_retry_after() -> None:
    policy = RetryPolicy(base_seconds=5, max_seconds=100)

    class Middle(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return (a + b) / 2  # no jitter: the bare schedule

    rng = Middle()
    assert [policy.delay(n, rng) for n in range(1, 7)] == [5, 10, 20, 40, 80, 100]
    assert policy.delay(10_000, rng) == 100  # no overflow for absurd attempt counts
    assert policy.delay(1, rng, retry_after=30) == 30
    assert policy.delay(6, rng, retry_after=900) == 900  # the server's word beats the cap
    assert policy.delay(6, rng, retry_after=3) == 100
    # ... up to an hour: a Retry-After of a year is a mistake or hostile, not a plan.
    assert policy.delay(1, rng, retry_after=365 * 86400) == RETRY_AFTER_CAP == 3600


def test_retry_jitter_is_bounded_and_seeded() -> None:
    policy = RetryPolicy(base_seconds=4, max_seconds=10_000)
    for attempts in range(1, 8):
        raw = 4 * 2 ** (attempts - 1)
        samples = [policy.delay(attempts, random.Random(seed)) for seed in range(200)]
        assert all(0.5 * raw <= s <= 1.5 * raw for s in samples)
        assert max(samples) - min(samples) > 0.5 * raw  # the spread is real, not constant
    assert policy.delay(3, random.Random(7)) == policy.delay(3, random.Random(7))


def test_record_uses_backoff_with_jitter_and_retry_after(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite", retry=RetryPolicy(2, 50)) as j:
        make_batch(j, pos(1), max_attempts=10)
        delays = []
        now = NOW
        for attempt in range(1, 8):
            task = claim_one(j, now=now)
            after = j.record(task.id, "w1", TaskOutcome("THROTTLED", reason="429"), now,
                             rng=random.Random(attempt))
            assert after.attempts == attempt
            assert after.not_before is not None
            delays.append(after.not_before - now)
            now = after.not_before
        for attempt, delay in enumerate(delays, 1):
            raw = 2 * 2 ** (attempt - 1)
            assert min(50, 0.5 * raw) <= delay <= min(50, 1.5 * raw)
        assert delays[-1] == 50  # 2 * 2^6 = 128 even with -50 %: capped
        assert delays[0] < delays[2] < delays[4]  # grows
        task = claim_one(j, now=now)
        after = j.record(task.id, "w1", TaskOutcome("THROTTLED", retry_after=120), now)
        assert after.not_before == now + 120


def test_retries_exhausted_end_failed_with_the_last_reason(journal: Journal) -> None:
    make_batch(journal, pos(1), max_attempts=3)
    now = NOW
    for i, status in enumerate(["TIMEOUT", "SERVER_ERROR", "ERROR"], 1):
        task = claim_one(journal, now=now)
        after = journal.record(task.id, "w1", TaskOutcome(status, reason=f"reason {i}"), now)
        now = after.not_before or now
    assert after.state is T.FAILED and after.attempts == 3
    assert after.reason == "gave up after 3 attempts: reason 3"
    assert after.not_before is None
    assert journal.claim("w1", 1, now + 10**6, 60) == []


def test_retries_exhausted_with_files_on_disk_end_partial(journal: Journal) -> None:
    make_batch(journal, pos(1), max_attempts=2)
    task = claim_one(journal)
    first = journal.record(task.id, "w1", TaskOutcome("ERROR", reason="disk", found=3,
                                                      downloaded=2), NOW)
    assert first.state is T.RETRY_WAIT and first.found == 3 and first.downloaded == 2
    task = claim_one(journal, now=first.not_before or NOW)
    # The second attempt knows nothing about files (a lost worker): the journal's count stands.
    assert resolve(task, TaskOutcome("ERROR", reason="worker lost")) is T.PARTIAL
    after = journal.record(task.id, "w1", TaskOutcome("ERROR", reason="worker lost"), NOW + 99)
    assert after.state is T.PARTIAL and after.downloaded == 2
    assert after.reason == "gave up after 2 attempts: worker lost"


def test_leased_to_auth_wait_on_signed_out_does_not_count_the_attempt(journal: Journal) -> None:
    make_batch(journal, pos(2), max_attempts=1)
    task = claim_one(journal)
    after = journal.record(task.id, "w1", TaskOutcome("SIGNED_OUT", reason="sign-in page"), NOW)
    assert after.state is T.AUTH_WAIT and after.attempts == 0 and after.lease_owner is None
    other = claim_one(journal)  # the other PO, never the one waiting for sign-in
    assert other.id != task.id
    assert journal.claim("w1", 5, NOW + 10**6, 60) == []
    assert journal.release_auth_wait(NOW) == 1  # auth_wait_to_queued
    assert journal.task(task.id).state is T.QUEUED
    again = claim_one(journal)
    done = journal.record(again.id, "w1", COMPLETED, NOW)
    assert done.state is T.COMPLETED and done.attempts == 1  # max_attempts=1 was not spent


def test_record_refuses_unknown_outcomes_and_changes_nothing(journal: Journal) -> None:
    make_batch(journal, pos(1))
    task = claim_one(journal)
    for status in ("DONE", "QUEUED", "LEASED", "", "completed"):
        with pytest.raises(JournalError):
            journal.record(task.id, "w1", TaskOutcome(status), NOW)
    assert journal.task(task.id) == task


def test_record_keeps_known_fields_and_replaces_attachments(journal: Journal) -> None:
    make_batch(journal, pos(1))
    task = claim_one(journal)
    files = (FileRecord("a.pdf", "a.pdf", 10, "00" * 32, "https://x/a", "po"),
             FileRecord("b (2).pdf", "b.pdf", 20, "11" * 32, "https://x/b", "requisition"))
    first = journal.record(task.id, "w1", TaskOutcome(
        "ERROR", reason="one download failed", supplier="ACME", found=3, downloaded=2,
        names=("a.pdf", "b (2).pdf"), folder="/d/PO1000000__WORK", url="https://x/o/1",
        timings={"page": 1.5}, files=files), NOW)
    assert journal.attachments(task.id) == list(files)
    task = claim_one(journal, now=first.not_before or NOW)
    after = journal.record(task.id, "w1", TaskOutcome(
        "COMPLETED", found=3, downloaded=3, folder="/d/PO1000000_COMPLETED",
        files=files[:1]), NOW + 100)
    assert after.supplier == "ACME" and after.url == "https://x/o/1"  # kept: not given again
    assert after.timings == {"page": 1.5} and after.names == ("a.pdf", "b (2).pdf")
    assert after.folder == "/d/PO1000000_COMPLETED" and after.downloaded == 3
    assert after.reason is None
    assert journal.attachments(task.id) == [files[0]]


# -- leases ----------------------------------------------------------------------------------


def test_heartbeat_extends_only_the_owners_leases(journal: Journal) -> None:
    make_batch(journal, pos(3))
    mine = journal.claim("w1", 2, NOW, 30)
    theirs = claim_one(journal, "w2")
    ids = [t.id for t in mine] + [theirs.id]
    assert journal.heartbeat("w1", ids, NOW + 20, 30) == 2
    assert journal.heartbeat("w1", [], NOW + 20, 30) == 0
    assert [journal.task(t.id).lease_expires for t in mine] == [NOW + 50, NOW + 50]
    assert journal.task(theirs.id).lease_expires == NOW + 60  # claim_one leases for 60 s
    assert journal.expire_leases(NOW + 49) == []
    assert [t.id for t in journal.expire_leases(NOW + 55)] == [t.id for t in mine]
    assert [t.id for t in journal.expire_leases(NOW + 61)] == [theirs.id]


def test_heartbeat_keeps_a_lease_alive_past_its_first_expiry(journal: Journal) -> None:
    make_batch(journal, pos(1))
    task = journal.claim("w1", 1, NOW, 10)[0]
    for step in range(1, 10):
        journal.heartbeat("w1", [task.id], NOW + step * 5, 10)
        assert journal.expire_leases(NOW + step * 5 + 9) == []
    assert journal.task(task.id).state is T.LEASED


def test_leased_to_queued_when_the_lease_expires_counting_the_attempt(journal: Journal) -> None:
    make_batch(journal, pos(2), max_attempts=3)
    task = journal.claim("w1", 1, NOW, 30)[0]
    assert journal.expire_leases(NOW + 30) == []  # expires strictly after lease_expires
    expired = journal.expire_leases(NOW + 31)
    assert len(expired) == 1
    back = expired[0]
    assert back.id == task.id and back.state is T.QUEUED and back.attempts == 1
    assert back.lost == 1 and back.lease_owner is None
    assert back.reason == "worker lost 1 time (lease expired)"
    assert [e.kind for e in journal.events() if e.task_id == task.id] == ["lease_expired"]


def test_lease_expiry_exhausting_the_budget_ends_failed(journal: Journal) -> None:
    make_batch(journal, pos(1), max_attempts=2)
    now = NOW
    for _ in range(2):
        journal.claim("w1", 1, now, 10)
        now += 11
        expired = journal.expire_leases(now)
    assert expired[0].state is T.FAILED
    assert expired[0].reason == "gave up after 2 attempts: worker lost 2 times"


def test_expire_leases_at_start_up_takes_every_lease(journal: Journal) -> None:
    make_batch(journal, pos(3))
    journal.claim("w1", 2, NOW, 3600)
    expired = journal.expire_leases(float("inf"))
    assert len(expired) == 2 and all(t.state is T.QUEUED for t in expired)
    assert journal.leased() == []
    assert all(e.at < float("inf") for e in journal.events())


def test_stale_owners_result_is_ignored(journal: Journal) -> None:
    make_batch(journal, pos(1))
    task = journal.claim("w1", 1, NOW, 10)[0]
    journal.expire_leases(NOW + 11)
    again = journal.claim("w2", 1, NOW + 12, 10)[0]
    assert again.id == task.id
    ignored = journal.record(task.id, "w1", TaskOutcome("NOT_FOUND"), NOW + 13)
    assert ignored == again  # unchanged: still leased to w2
    assert journal.heartbeat("w1", [task.id], NOW + 13, 10) == 0
    assert journal.release("w1", [task.id], NOW + 13) == 0
    done = journal.record(task.id, "w2", COMPLETED, NOW + 14)
    assert done.state is T.COMPLETED
    late = journal.record(task.id, "w2", TaskOutcome("ERROR"), NOW + 15)
    assert late.state is T.COMPLETED  # a second result for a final task changes nothing
    kinds = [e.kind for e in journal.events()]
    assert kinds.count("stale_result") == 2


def test_leased_to_queued_on_release_does_not_count_an_attempt(journal: Journal) -> None:
    make_batch(journal, pos(4))
    mine = journal.claim("w1", 3, NOW, 60)
    theirs = claim_one(journal, "w2")
    assert journal.release("w1", [mine[0].id, theirs.id], NOW) == 1
    assert journal.task(mine[0].id).state is T.QUEUED
    assert journal.task(mine[0].id).attempts == 0
    assert journal.release("w1", None, NOW) == 2  # everything w1 still holds
    assert [t.id for t in journal.leased()] == [theirs.id]


# -- daemon-decided moves, cancel and re-run -------------------------------------------------


def test_set_final_checks_the_move_and_set_folder_records_the_rename(journal: Journal) -> None:
    make_batch(journal, pos(2))
    task = claim_one(journal)
    failed = journal.set_final(task.id, T.FAILED, "hostile page", NOW, folder="/d/PO1_WORK")
    assert failed.state is T.FAILED and failed.reason == "hostile page"
    assert failed.lease_owner is None and failed.folder == "/d/PO1_WORK"
    journal.set_folder(task.id, "/d/PO1_FAILED")
    assert journal.task(task.id).folder == "/d/PO1_FAILED"
    queued = journal.tasks(journal.batches()[0].id)[1]
    with pytest.raises(JournalError, match="illegal move QUEUED → COMPLETED"):
        journal.set_final(queued.id, T.COMPLETED, "no", NOW)  # queued_to_completed
    with pytest.raises(JournalError, match="illegal move FAILED → COMPLETED"):
        journal.set_final(task.id, T.COMPLETED, "no", NOW)  # final_to_final
    with pytest.raises(JournalError, match="not a final state"):
        journal.set_final(queued.id, T.LEASED, "no", NOW)
    with pytest.raises(JournalError, match="no task"):
        journal.set_folder(10**9, "/x")
    with pytest.raises(JournalError, match="no task"):
        journal.task(10**9)
    assert journal.task(queued.id).state is T.QUEUED


def test_cancel_moves_every_waiting_state_to_cancelled_and_lets_flight_land(
    journal: Journal,
) -> None:
    batch = make_batch(journal, pos(6))
    done, leased, retrying, waiting, _queued, second = journal.claim("w1", 6, NOW, 60)[:6]
    journal.record(done.id, "w1", COMPLETED, NOW)
    journal.record(retrying.id, "w1", TaskOutcome("TIMEOUT"), NOW)
    journal.record(waiting.id, "w1", TaskOutcome("SIGNED_OUT"), NOW)
    journal.release("w1", [_queued.id], NOW)
    assert journal.cancel_batch(batch.id[:-1], NOW) == 3  # a unique prefix is enough
    states_now = {t.id: t.state for t in journal.tasks(batch.id)}
    assert states_now[done.id] is T.COMPLETED
    assert all(states_now[t.id] is T.CANCELLED for t in (retrying, waiting, _queued))
    # In flight: not cancelled under the worker, so folder and report agree when it lands.
    assert states_now[leased.id] is T.LEASED and states_now[second.id] is T.LEASED
    cancelled = journal.batch(batch.id)
    assert cancelled is not None and cancelled.state is BatchState.CANCELLED
    assert journal.finished_batches() == []  # not while something is in flight
    assert journal.record(leased.id, "w1", COMPLETED, NOW).state is T.COMPLETED
    # One that would be tried again is cancelled instead of waiting for ever.
    assert journal.record(second.id, "w1", TaskOutcome("TIMEOUT"), NOW).state is T.CANCELLED
    assert [b.id for b in journal.finished_batches()] == [batch.id]
    assert journal.claim("w1", 5, NOW + 10**6, 60) == []
    assert journal.cancel_batch(batch.id, NOW) == 0
    assert [b.id for b in journal.finished_batches()] == [batch.id]  # still gets its report
    journal.mark_done(batch.id, NOW, ["r.csv"])
    after = journal.batch(batch.id)
    assert after is not None and after.state is BatchState.CANCELLED and after.finished_at == NOW
    assert journal.finished_batches() == []
    with pytest.raises(JournalError, match="no batch"):
        journal.cancel_batch("19990101-0000", NOW)


def test_requeue_failed_only_reruns_failed_and_partial_and_reopens(journal: Journal) -> None:
    batch = make_batch(journal, pos(4), max_attempts=1)
    ok, failed, partial, absent = journal.claim("w1", 4, NOW, 60)
    journal.record(ok.id, "w1", COMPLETED, NOW)
    journal.record(failed.id, "w1", TaskOutcome("ERROR", reason="x"), NOW)
    journal.record(partial.id, "w1", TaskOutcome("ERROR", downloaded=1), NOW)
    journal.record(absent.id, "w1", TaskOutcome("NOT_FOUND"), NOW)
    journal.mark_done(batch.id, NOW, ["r.csv"])
    assert journal.requeue(batch_id=batch.id, failed_only=True, now=NOW + 1) == 2
    by_id = {t.id: t for t in journal.tasks(batch.id)}
    assert by_id[failed.id].state is T.QUEUED and by_id[partial.id].state is T.QUEUED
    assert by_id[failed.id].attempts == 0 and by_id[failed.id].reason is None
    assert by_id[ok.id].state is T.COMPLETED and by_id[absent.id].state is T.NOT_FOUND
    reopened = journal.batch(batch.id)
    assert reopened is not None and reopened.state is BatchState.OPEN
    assert reopened.finished_at is None and reopened.report_paths == ()
    assert journal.finished_batches() == []
    assert {t.id for t in journal.claim("w1", 4, NOW + 1, 60)} == {failed.id, partial.id}


def test_requeue_everything_reruns_every_final_task_of_every_batch(journal: Journal) -> None:
    a = make_batch(journal, pos(2, 1_000_000))
    b = make_batch(journal, pos(1, 2_000_000))
    for task in journal.claim("w1", 3, NOW, 60):
        journal.record(task.id, "w1", COMPLETED, NOW)
    untouched = make_batch(journal, pos(1, 3_000_000))
    assert journal.requeue(now=NOW) == 3
    assert journal.counts() == {a.id: {"QUEUED": 2}, b.id: {"QUEUED": 1},
                                untouched.id: {"QUEUED": 1}}
    assert journal.requeue(now=NOW) == 0


def test_mark_done_refuses_a_batch_with_work_left(journal: Journal) -> None:
    batch = make_batch(journal, pos(2))
    with pytest.raises(JournalError, match="still has 2 PO"):
        journal.mark_done(batch.id, NOW, [])


def test_finished_batches_waits_for_every_task(journal: Journal) -> None:
    batch = make_batch(journal, pos(2))
    first, second = journal.claim("w1", 2, NOW, 60)
    journal.record(first.id, "w1", COMPLETED, NOW)
    assert journal.finished_batches() == []
    journal.record(second.id, "w1", TaskOutcome("ACCESS_DENIED"), NOW)
    assert [b.id for b in journal.finished_batches()] == [batch.id]
    assert journal.batches(open_only=True)[0].id == batch.id
    journal.mark_done(batch.id, NOW, [])
    assert journal.batches(open_only=True) == [] and len(journal.batches()) == 1


# -- events and snapshots --------------------------------------------------------------------


def test_events_page_by_id_and_keep_detail(journal: Journal) -> None:
    for i in range(5):
        journal.log_event("tick", NOW + i, batch_id="b", task_id=i, n=i, path=Path("/x"))
    events = journal.events()
    assert [e.detail["n"] for e in events] == [0, 1, 2, 3, 4]
    assert events[0].detail["path"] == "/x" and events[0].batch_id == "b"
    assert [e.detail["n"] for e in journal.events(since_id=events[1].id, limit=2)] == [2, 3]
    assert [e.detail["n"] for e in journal.events(limit=2, newest=True)] == [3, 4]


def test_counts_match_a_brute_force_count_after_a_random_workload(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    rng = random.Random(4)
    outcomes = ["COMPLETED", "NO_ATTACHMENTS", "NOT_FOUND", "ACCESS_DENIED", "SIGNED_OUT",
                "THROTTLED", "SERVER_ERROR", "TIMEOUT", "ERROR"]
    with Journal.open(path) as j:
        now = NOW
        for _ in range(1500):
            now += rng.uniform(0, 20)
            roll = rng.random()
            if roll < 0.05:
                make_batch(j, pos(rng.randint(0, 40), rng.randint(1, 50) * 100_000),
                           priority=rng.choice(["high", "normal", "low"]), now=now)
            elif roll < 0.5:
                owner = rng.choice(["w1", "w2"])
                for task in j.claim(owner, rng.randint(1, 4), now, 30):
                    if rng.random() < 0.9:
                        j.record(task.id, owner, TaskOutcome(rng.choice(outcomes)), now, rng=rng)
            elif roll < 0.6:
                j.expire_leases(now)
            elif roll < 0.65:
                j.release(rng.choice(["w1", "w2"]), None, now)
            elif roll < 0.7:
                j.release_auth_wait(now)
            elif roll < 0.72 and j.batches(open_only=True):
                j.cancel_batch(rng.choice(j.batches(open_only=True)).id, now)
            elif roll < 0.74:
                j.requeue(failed_only=rng.random() < 0.5, now=now)
            else:
                for batch in j.finished_batches():
                    j.mark_done(batch.id, now, [])
        counts = j.counts()
        totals = j.totals()
        assert sum(totals.values()) > 300  # the workload really ran
        assert len({s for per in counts.values() for s in per}) >= 8
    expected = brute_force_counts(path)
    assert counts == expected
    summed: dict[str, int] = {}
    for per in expected.values():
        for state, n in per.items():
            summed[state] = summed.get(state, 0) + n
    assert totals == summed


def test_the_journal_serves_several_threads(journal: Journal) -> None:
    make_batch(journal, pos(400))
    errors: list[BaseException] = []

    def work(owner: str) -> None:
        try:
            while tasks := journal.claim(owner, 2, NOW, 60):
                for task in tasks:
                    journal.record(task.id, owner, COMPLETED, NOW)
                journal.counts()
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert journal.totals() == {"COMPLETED": 400}
    assert len(journal.events()) == 100  # the first page
    assert len([e for e in journal.events(limit=1000) if e.kind == "completed"]) == 400


# -- crash safety ----------------------------------------------------------------------------

WORKLOAD = textwrap.dedent(
    """
    import random, sys, time
    from coupad.journal import Journal, RowIn, TaskOutcome
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    j = Journal.open(path)
    now = 1_795_000_000.0 + seed * 10**6
    outcomes = ["COMPLETED", "NOT_FOUND", "THROTTLED", "ERROR", "SIGNED_OUT", "NO_ATTACHMENTS"]
    batch_no = 0
    while True:
        now += 1000  # retries fall due at once: the loop never idles
        if batch_no < 3 or rng.random() < 0.005:
            base = 10_000_000 + seed * 10**6 + batch_no * 10_000
            rows = [RowIn(i + 2, (str(base + i % 1600), "x" * 50), str(base + i % 1600))
                    for i in range(2000)]
            j.create_batch(name=f"b{batch_no}", source="s.csv", content_sha256=f"{seed}-{batch_no}",
                           priority=rng.choice(["high", "normal", "low"]), fmt="csv",
                           columns=["PO", "X"], po_column="PO", rows=rows, now=now,
                           max_attempts=3)
            batch_no += 1
        for task in j.claim("crashy", 3, now, 30):
            j.record(task.id, "crashy", TaskOutcome(rng.choice(outcomes), reason="r"), now, rng=rng)
        if rng.random() < 0.05:
            j.release_auth_wait(now)
        if rng.random() < 0.01:
            j.requeue(failed_only=True, now=now)
    """
)


def _final_events_per_task(path: Path) -> dict[int, int]:
    conn = sqlite3.connect(path)
    try:
        finals = [s.value.lower() for s in FINAL]
        marks = ",".join("?" * len(finals))
        rows = conn.execute(
            f"SELECT task_id, kind FROM events WHERE kind IN ({marks}) OR kind = 'batch_requeued' "
            "ORDER BY id", finals
        ).fetchall()
    finally:
        conn.close()
    seen: dict[int, int] = {}
    for task_id, kind in rows:
        if kind == "batch_requeued":
            seen.clear()  # a re-run makes a second final event legitimate
        else:
            seen[task_id] = seen.get(task_id, 0) + 1
    return seen


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed,progress", [(1, 200), (2, 1000), (3, 2500)])
def test_kill_9_mid_workload_loses_nothing_and_does_nothing_twice(
    tmp_path: Path, seed: int, progress: int
) -> None:
    path = tmp_path / "state" / "journal.sqlite"
    with Journal.open(path) as j:  # created (and migrated) before the child starts
        pass
    child = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(path), str(seed)],
                             stderr=subprocess.PIPE)
    try:
        with Journal.open(path) as watcher:
            def advanced() -> bool:
                assert child.poll() is None, child.stderr.read() if child.stderr else ""
                return sum(n for s, n in watcher.totals().items() if T(s).final) >= progress

            wait_until(advanced, timeout=60, interval=0.02, what=f"{progress} final tasks")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr:
            child.stderr.close()

    assert integrity(path) == "ok"
    with Journal.open(path) as j:
        assert j.counts() == brute_force_counts(path)
        for batch in j.batches():  # every batch whole: rows and tasks or nothing
            assert len(j.report_rows(batch.id)) == batch.row_count == 2000
            assert len(j.tasks(batch.id)) == batch.task_count == 1600
        before = {t.id: t.attempts for t in j.leased()}
        recovered = j.expire_leases(float("inf"))  # start-up: every lease belonged to the dead
        assert {t.id for t in recovered} == set(before)
        assert all(t.attempts == before[t.id] + 1 for t in recovered)
        assert all(t.state in (T.QUEUED, T.FAILED) for t in recovered)
        assert j.leased() == []
        # Finish the work in this process: everything ends final, each task once.
        now = NOW + 10**9
        j.release_auth_wait(now)
        while tasks := j.claim("survivor", 500, now, 30):
            for task in tasks:
                j.record(task.id, "survivor", COMPLETED, now)
            now += 1000
        assert set(j.totals()) <= {s.value for s in FINAL}
        assert j.counts() == brute_force_counts(path)
    assert max(_final_events_per_task(path).values()) == 1
    assert integrity(path) == "ok"


@pytest.mark.timeout(120)
def test_kill_9_during_batch_creation_leaves_whole_batches_only(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    script = textwrap.dedent(
        """
        import sys
        from coupad.journal import Journal, RowIn
        j = Journal.open(sys.argv[1])
        for b in range(10**6):
            rows = [RowIn(i + 2, (str(10**7 + i),), str(10**7 + i)) for i in range(20000)]
            j.create_batch(name="big", source="big.csv", content_sha256=str(b), priority="normal",
                           fmt="csv", columns=["PO"], po_column="PO", rows=rows, now=1e9 + b,
                           max_attempts=3, skip_completed=False)
        """
    )
    Journal.open(path).close()
    child = subprocess.Popen([sys.executable, "-c", script, str(path)])
    try:
        with Journal.open(path) as watcher:
            wait_until(lambda: len(watcher.batches()) >= 3, timeout=60, interval=0.01,
                       what="three batches")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert integrity(path) == "ok"
    conn = sqlite3.connect(path)
    try:
        for batch_id, row_count, task_count in conn.execute(
            "SELECT id, row_count, task_count FROM batches"
        ).fetchall():
            assert conn.execute("SELECT count(*) FROM input_rows WHERE batch_id = ?",
                                (batch_id,)).fetchone()[0] == row_count == 20000
            assert conn.execute("SELECT count(*) FROM tasks WHERE batch_id = ?",
                                (batch_id,)).fetchone()[0] == task_count == 20000
        orphans = conn.execute(
            "SELECT count(*) FROM tasks WHERE batch_id NOT IN (SELECT id FROM batches)"
        ).fetchone()[0]
        assert orphans == 0
    finally:
        conn.close()
    with Journal.open(path) as j:
        assert j.counts() == brute_force_counts(path)
