"""The journal's record of mails' PDFs: pending once the PO is final, made or failed after."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from coupad.journal import FileRecord, Journal, JournalError, PdfRecord, TaskOutcome
from coupad.states import PdfState, TaskState
from test_journal import NOW, claim_one, make_batch

P = PdfState


def files(*names: str) -> tuple[FileRecord, ...]:
    return tuple(FileRecord(n, n, 10, "0" * 64, f"https://t/{n}") for n in names)


def completed(*names: str, mails: tuple[str, ...] | None = None) -> TaskOutcome:
    mails = tuple(n for n in names if n.endswith(".msg")) if mails is None else mails
    return TaskOutcome("COMPLETED", found=len(names), downloaded=len(names), names=names,
                       folder="/d/PO1_COMPLETED", files=files(*names), mails=mails)


def made(record: PdfRecord) -> PdfRecord:
    return replace(record, state=P.MADE, pdf=record.mail + ".pdf", size=123, sha256="a" * 64)


def test_a_final_po_s_mails_are_pending_in_the_same_transaction(journal: Journal) -> None:
    batch = make_batch(journal, ["1000001"])
    task = claim_one(journal)
    assert journal.pending_pdfs(10) == []
    journal.record(task.id, "w1", completed("a.msg", "q.pdf", "b.MSG", mails=("a.msg", "b.MSG")),
                   NOW)
    pending = journal.pending_pdfs(10)
    assert [(p.task_id, p.po_digits, p.mail, p.state) for p in pending] == [
        (task.id, "1000001", "a.msg", P.PENDING), (task.id, "1000001", "b.MSG", P.PENDING)]
    assert journal.pdfs_pending(batch.id) == 2
    # Every task is final: the daemon holds the report back while pdfs_pending counts any.
    assert [b.id for b in journal.finished_batches()] == [batch.id]


def test_pending_to_made_and_pending_to_failed_are_recorded_with_an_event(journal: Journal) -> None:
    batch = make_batch(journal, ["1000001"])
    task = claim_one(journal)
    journal.record(task.id, "w1", completed("a.msg", "b.msg"), NOW)
    first, second = journal.pending_pdfs(10)
    assert journal.pdf_done(made(first), NOW)
    failed = replace(second, state=P.FAILED, reason="not an Outlook .msg file")
    assert journal.pdf_done(failed, NOW)
    assert not journal.pdf_done(failed, NOW)  # no longer pending: nothing recorded twice
    assert journal.pdfs_pending(batch.id) == 0 and journal.pending_pdfs(10) == []
    assert [(p.mail, p.state, p.pdf, p.reason) for p in journal.pdfs(task.id)] == [
        ("a.msg", P.MADE, "a.msg.pdf", None), ("b.msg", P.FAILED, None, "not an Outlook .msg file")]
    kinds = [e.kind for e in journal.events(newest=True, limit=2)]
    assert kinds == ["pdf_made", "pdf_failed"]
    rows = journal.report_rows(batch.id)
    assert [p.state for p in rows[0].pdfs] == [P.MADE, P.FAILED]


def test_made_to_pending_when_the_po_ends_again_and_mails_no_longer_listed_are_forgotten(
        journal: Journal) -> None:
    batch = make_batch(journal, ["1000001"])
    task = claim_one(journal)
    journal.record(task.id, "w1", completed("a.msg", "b.msg"), NOW)
    for record in journal.pending_pdfs(10):
        journal.pdf_done(made(record), NOW)
    assert journal.requeue(batch_id=batch.id, now=NOW) == 1
    assert journal.pending_pdfs(10) == []
    task = claim_one(journal)
    journal.record(task.id, "w1", completed("a.msg", "c.msg"), NOW)
    assert [(p.mail, p.state) for p in journal.pdfs(task.id)] == [("a.msg", P.PENDING),
                                                                  ("c.msg", P.PENDING)]


def test_a_po_in_flight_in_another_batch_holds_its_pdfs_back(journal: Journal) -> None:
    make_batch(journal, ["1000001", "1000002"])
    first = claim_one(journal)
    journal.record(first.id, "w1", completed("a.msg"), NOW)
    make_batch(journal, ["1000001"], skip_completed=False)
    second_task = journal.claim("w1", 5, NOW, 60.0)
    assert sorted(t.po_digits for t in second_task) == ["1000001", "1000002"]
    assert journal.pending_pdfs(10) == []  # a worker may be reopening PO1000001's folder
    journal.release("w1", [t.id for t in second_task], NOW)
    assert [p.mail for p in journal.pending_pdfs(10)] == ["a.msg"]
    assert journal.pending_pdfs(10, exclude_pos={"1000001"}) == []


def test_claim_leaves_out_the_pos_whose_folders_get_pdfs(journal: Journal) -> None:
    make_batch(journal, ["1000001", "1000002", "1000003"])
    claimed = journal.claim("w1", 3, NOW, 60.0, exclude_pos={"1000001", "1000003"})
    assert [t.po_digits for t in claimed] == ["1000002"]
    assert [t.po_digits for t in journal.claim("w1", 3, NOW, 60.0)] == ["1000001", "1000003"]


def test_retry_wait_keeps_no_pending_pdf(journal: Journal) -> None:
    make_batch(journal, ["1000001"])
    task = claim_one(journal)
    outcome = TaskOutcome("TIMEOUT", reason="slow", files=files("a.msg"), mails=("a.msg",))
    assert journal.record(task.id, "w1", outcome, NOW).state is TaskState.RETRY_WAIT
    assert journal.pdfs(task.id) == []


def test_a_made_pdf_cannot_be_made_again_without_a_new_result(journal: Journal) -> None:
    make_batch(journal, ["1000001"])
    task = claim_one(journal)
    journal.record(task.id, "w1", completed("a.msg"), NOW)
    (record,) = journal.pending_pdfs(10)
    journal.pdf_done(made(record), NOW)
    with pytest.raises(JournalError):
        journal._check_pdf(P.MADE, P.FAILED)
    assert not journal.pdf_done(replace(record, state=P.FAILED, reason="late"), NOW)
    assert journal.pdfs(task.id)[0].state is P.MADE


def test_an_older_journal_gets_the_pdfs_table_on_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal.open(path).close()
    conn = sqlite3.connect(path)
    with conn:  # as a coupad before PDFs left it
        conn.execute("DROP TABLE pdfs")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0002_pdfs'")
    conn.close()
    with Journal.open(path) as journal:
        make_batch(journal, ["1000001"])
        task = claim_one(journal)
        journal.record(task.id, "w1", completed("a.msg"), NOW)
        assert [p.mail for p in journal.pending_pdfs(10)] == ["a.msg"]


def test_a_po_taken_from_an_earlier_batch_brings_its_pdfs(journal: Journal, tmp_path: Path) -> None:
    folder = tmp_path / "PO1000001_COMPLETED"
    folder.mkdir()
    make_batch(journal, ["1000001"])
    task = claim_one(journal)
    journal.record(task.id, "w1", replace(completed("a.msg", "b.msg"), folder=str(folder)), NOW)
    first, second = journal.pending_pdfs(10)
    journal.pdf_done(made(first), NOW)
    journal.pdf_done(replace(second, state=P.FAILED, reason="damaged"), NOW)
    later = make_batch(journal, ["1000001"])
    (row,) = journal.report_rows(later.id)
    assert row.task is not None and row.task.id != task.id
    assert row.task.state is TaskState.COMPLETED
    assert [(p.mail, p.state, p.pdf, p.reason) for p in row.pdfs] == [
        ("a.msg", P.MADE, "a.msg.pdf", None), ("b.msg", P.FAILED, None, "damaged")]
    assert journal.pdfs_pending(later.id) == 0
