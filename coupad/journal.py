"""The journal: batches, their tasks (one per PO per batch), input rows, attachments and events.

One SQLite file under ``paths.state``; all of coupad's SQL lives in this module. Every state
change is one transaction, checked against the table in ``coupad.states``. Time is never read
here: every method that depends on it takes ``now`` (epoch seconds), so tests step time.

Crash safety: the file runs in WAL mode with ``synchronous=NORMAL``. A committed transaction
survives the death of the process (kill -9 included) because the WAL is in the OS page cache;
only a power loss or kernel crash may roll back the last few commits — never corrupt the file
or split a transaction. Work is never done twice because a claimed task carries a lease: a
worker that dies stops extending it, and ``expire_leases`` returns the task to the queue,
counting the attempt.

Per-batch per-state counts live in a small ``counts`` table, kept inside the same
transactions as the task rows (by a trigger on every state change, and by ``create_batch``
for new tasks), so a status snapshot reads a few rows however large the journal grows.

One ``Journal`` (one connection) per process; it refuses to be used across a fork. Its methods
may be called from several threads (a lock serialises them).

A daemon pass uses it in this order: ``expire_leases(now)`` (``math.inf`` once at start-up),
``create_batch`` for new input, ``claim`` for free tabs, ``heartbeat`` and ``record`` as
workers report, ``finished_batches`` → write the report → ``mark_done``, and ``counts`` /
``totals`` for the status snapshot.

Mails get PDFs after their PO: ``record`` notes each Outlook mail of a final PO as PENDING in
the same transaction, ``pending_pdfs`` gives the daemon those it may convert now, ``pdf_done``
records each PDF made or failed, and a batch's report waits while ``pdfs_pending`` counts any.

Events the journal writes itself (``kind``): batch_created, batch_cancelled, batch_requeued,
batch_done, released, auth_released, lease_expired, stale_result, pdf_made, pdf_failed, and
for each recorded result the new state in lower case (retry_wait, auth_wait, completed, ...).
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import math
import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from coupad import states
from coupad.errors import CoupadError, ExitCode
from coupad.records import (
    Batch,
    Event,
    FileRecord,
    PdfRecord,
    ReportRow,
    RetryPolicy,
    RowIn,
    Task,
    TaskOutcome,
)
from coupad.states import BatchState, IllegalTransition, PdfState, TaskState

__all__ = [
    "Batch", "DuplicateContent", "Event", "FileRecord", "Journal", "JournalError",
    "JournalIncompatible", "JournalUnwritable", "PdfRecord", "ReportRow", "RetryPolicy", "RowIn", "Task", "TaskOutcome", "resolve",
]

log = logging.getLogger("coupad.journal")

# Claim order: lower rank first.
PRIORITIES: dict[str, int] = {"high": 0, "normal": 1, "low": 2}

# Engine outcome names (coupad.engine.Outcome) besides the final TaskState names.
SIGNED_OUT = "SIGNED_OUT"
RETRYABLE: frozenset[str] = frozenset({"THROTTLED", "SERVER_ERROR", "TIMEOUT", "ERROR"})
# What `coupactl retry --failed` re-runs.
RERUN_WITH_FAILED: frozenset[TaskState] = frozenset({TaskState.FAILED, TaskState.PARTIAL})


class JournalError(CoupadError):
    """The journal refused a request: unknown id, illegal state change, bad input."""


class JournalIncompatible(JournalError):
    """The journal is from a newer coupad, or lacks tables or columns this one needs."""

    exit_code = ExitCode.JOURNAL


class JournalUnwritable(JournalError):
    """The journal's disk refused a write (full, read-only, failing); the daemon waits it out."""


class DuplicateContent(JournalError):
    """The same file content is already an open batch; ``batch`` is that batch."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        super().__init__(f"the same content is already open as batch {batch.id}")


def resolve(task: Task, outcome: TaskOutcome) -> TaskState:
    """The state ``record`` moves the leased ``task`` to for ``outcome``.

    The daemon may call it first to name a folder after the state (PARTIAL or FAILED when
    the attempt budget runs out) before recording the result.
    """
    status = outcome.status
    if status == SIGNED_OUT:
        return TaskState.AUTH_WAIT
    if status in RETRYABLE:
        if task.attempts + 1 < task.max_attempts:
            return TaskState.RETRY_WAIT
        downloaded = outcome.downloaded if outcome.downloaded is not None else task.downloaded
        return TaskState.PARTIAL if (downloaded or 0) > 0 else TaskState.FAILED
    try:
        state = TaskState(status)
    except ValueError:
        raise JournalError(f"unknown outcome {status!r}") from None
    if not state.final:
        raise JournalError(f"outcome {status!r} is not a result")
    return state


# -- schema ----------------------------------------------------------------------------------

MIGRATIONS = Migrations("coupad.journal")


@MIGRATIONS(name="0001_initial")
def _initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            content_sha256 TEXT NOT NULL,
            priority TEXT NOT NULL,
            rank INTEGER NOT NULL,
            fmt TEXT NOT NULL,
            columns TEXT NOT NULL,
            po_column TEXT NOT NULL,
            state TEXT NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0,  -- unused; kept so existing journals open as they are
            served INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            finished_at REAL,
            row_count INTEGER NOT NULL,
            task_count INTEGER NOT NULL,
            report_paths TEXT NOT NULL DEFAULT '[]'
        );
        CREATE INDEX batches_content ON batches (content_sha256);

        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY,
            batch_id TEXT NOT NULL REFERENCES batches (id),
            po_digits TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            lost INTEGER NOT NULL DEFAULT 0,
            not_before REAL,
            lease_owner TEXT,
            lease_expires REAL,
            reason TEXT,
            supplier TEXT,
            found INTEGER,
            downloaded INTEGER,
            names TEXT NOT NULL DEFAULT '[]',
            folder TEXT,
            url TEXT,
            last_processed REAL,
            timings TEXT NOT NULL DEFAULT '{}',
            UNIQUE (batch_id, po_digits)
        );
        -- claim: the next task of a batch in input order (ids follow input order)
        CREATE INDEX tasks_claim ON tasks (batch_id, state, id);
        -- retries that fall due, leases that expire, sign-in waits
        CREATE INDEX tasks_due ON tasks (state, not_before);
        -- skip_completed: the latest task of a PO
        CREATE INDEX tasks_po ON tasks (po_digits, id);

        CREATE TABLE input_rows (
            batch_id TEXT NOT NULL REFERENCES batches (id),
            seq INTEGER NOT NULL,
            row_no INTEGER NOT NULL,
            cells TEXT NOT NULL,
            po_digits TEXT,
            error TEXT,
            PRIMARY KEY (batch_id, seq)
        ) WITHOUT ROWID;

        CREATE TABLE attachments (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL REFERENCES tasks (id),
            name TEXT NOT NULL,
            original_name TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            source_url TEXT NOT NULL,
            source TEXT NOT NULL
        );
        CREATE INDEX attachments_task ON attachments (task_id);

        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            batch_id TEXT,
            task_id INTEGER,
            detail TEXT NOT NULL DEFAULT '{}'
        );

        CREATE TABLE counts (
            batch_id TEXT NOT NULL,
            state TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (batch_id, state)
        ) WITHOUT ROWID;

        -- Tasks are inserted only by create_batch, which adds its counts in one statement:
        -- an insert trigger would double the cost of ingesting 100,000 rows.
        CREATE TRIGGER tasks_count_update AFTER UPDATE OF state ON tasks
        WHEN old.state <> new.state BEGIN
            UPDATE counts SET n = n - 1 WHERE batch_id = old.batch_id AND state = old.state;
            INSERT INTO counts (batch_id, state, n) VALUES (new.batch_id, new.state, 1)
            ON CONFLICT (batch_id, state) DO UPDATE SET n = n + 1;
        END;
        -- tasks are history: nothing deletes them, and the counts rely on it
        CREATE TRIGGER tasks_no_delete BEFORE DELETE ON tasks BEGIN
            SELECT RAISE(ABORT, 'tasks are never deleted');
        END;
        """
    )


@MIGRATIONS(name="0002_pdfs")
def _pdfs(db: Database) -> None:
    db.executescript(
        """
        -- The PDF of each Outlook mail in a final PO folder (downloads.msg_to_pdf): one row per
        -- task and mail, PENDING from the moment the task is recorded final with its files.
        CREATE TABLE pdfs (
            task_id INTEGER NOT NULL REFERENCES tasks (id),
            mail TEXT NOT NULL,
            state TEXT NOT NULL,
            pdf TEXT,
            size INTEGER,
            sha256 TEXT,
            reason TEXT,
            PRIMARY KEY (task_id, mail)
        ) WITHOUT ROWID;
        CREATE INDEX pdfs_state ON pdfs (state, task_id);
        """
    )


def schema_version(name: str) -> int:
    """The schema version a migration brings the journal to: its name's number (``0001_…``)."""
    digits = name.split("_", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _known_migrations() -> list[str]:
    """The names of every migration this coupad has, in order."""
    conn = sqlite3.connect(":memory:")
    try:
        return [m.name for m in MIGRATIONS.pending(Database(conn, execute_plugins=False))]
    finally:
        conn.close()


KNOWN_MIGRATIONS = _known_migrations()
SCHEMA = max(schema_version(name) for name in KNOWN_MIGRATIONS)  # what this coupad writes


def _expected_columns() -> dict[str, frozenset[str]]:
    """Table → columns of the schema the migrations build, read off an in-memory copy."""
    conn = sqlite3.connect(":memory:")
    try:
        MIGRATIONS.apply(Database(conn, execute_plugins=False))
        return _columns(conn)
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection) -> dict[str, frozenset[str]]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {t: frozenset(r[1] for r in conn.execute(f"PRAGMA table_info('{t}')")) for t in tables}


def _check_not_newer(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a journal a newer coupad migrated: its rows would mean what this one cannot know."""
    known = set(KNOWN_MIGRATIONS)
    table = Migrations.migrations_table
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (table,)).fetchone() is None:
        return
    applied = [r[0] for r in conn.execute(
        f"SELECT name FROM {table} WHERE migration_set = ?", (MIGRATIONS.name,))]
    unknown = [name for name in applied if name not in known]
    if unknown:
        newest = max(schema_version(name) for name in unknown)
        raise JournalIncompatible(
            f"journal {path} was written by a newer coupad (schema {max(newest, SCHEMA + 1)}; "
            f"this one knows up to {SCHEMA}): run that coupad, or move the journal aside to "
            "start with an empty one")


def _check_complete(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a journal that lacks a table or column of the schema, before any query needs it."""
    have = _columns(conn)
    missing = []
    for table, columns in sorted(_expected_columns().items()):
        if table not in have:
            missing.append(f"table {table}")
            continue
        missing += [f"column {table}.{c}" for c in sorted(columns - have[table])]
    if missing:
        raise JournalIncompatible(
            f"journal {path} is not a coupad journal this version can use: it lacks "
            f"{', '.join(missing)}. Restore it from a backup, or move it aside to start with "
            "an empty one")


# SQLite's primary result codes for a disk that refuses writes: worth waiting for, not a bug.
_STORAGE_CODES = frozenset({
    8,   # SQLITE_READONLY
    10,  # SQLITE_IOERR (SHMSIZE and friends when a full disk cannot hold the WAL index)
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
})


def _unwritable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _STORAGE_CODES


_TASK_COLUMNS = (
    "id, batch_id, po_digits, state, attempts, max_attempts, lost, not_before, lease_owner, "
    "lease_expires, reason, supplier, found, downloaded, names, folder, url, last_processed, "
    "timings"
)
_BATCH_COLUMNS = (
    "id, name, source, content_sha256, priority, fmt, columns, po_column, state, "
    "created_at, finished_at, row_count, task_count, report_paths"
)
_PDF_COLUMNS = "p.task_id, t.po_digits, p.mail, p.state, p.pdf, p.size, p.sha256, p.reason"
# A lease's bookkeeping, cleared whenever a task leaves LEASED.
_NO_LEASE = "lease_owner = NULL, lease_expires = NULL"


_STATES = {state.value: state for state in TaskState}  # faster than TaskState(value)


def _task(row: Sequence[Any]) -> Task:
    return Task(
        id=row[0], batch_id=row[1], po_digits=row[2], state=_STATES[row[3]], attempts=row[4],
        max_attempts=row[5], lost=row[6], not_before=row[7], lease_owner=row[8],
        lease_expires=row[9], reason=row[10], supplier=row[11], found=row[12],
        downloaded=row[13], names=() if row[14] == "[]" else tuple(json.loads(row[14])),
        folder=row[15], url=row[16], last_processed=_iso(row[17]),
        timings={} if row[18] == "{}" else json.loads(row[18]),
    )


def _batch(row: Sequence[Any]) -> Batch:
    return Batch(
        id=row[0], name=row[1], source=row[2], content_sha256=row[3], priority=row[4],
        fmt=row[5], columns=tuple(json.loads(row[6])), po_column=row[7],
        state=BatchState(row[8]), created_at=row[9], finished_at=row[10],
        row_count=row[11], task_count=row[12], report_paths=tuple(json.loads(row[13])),
    )


def _pdf(row: Sequence[Any]) -> PdfRecord:
    return PdfRecord(task_id=row[0], po_digits=row[1], mail=row[2], state=PdfState(row[3]),
                     pdf=row[4], size=row[5], sha256=row[6], reason=row[7])


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _json_list(values: Iterable[Any]) -> str:
    """One JSON parameter for ``IN (SELECT value FROM json_each(?))``: no variable limit."""
    return json.dumps(list(values))


def _states(values: Iterable[TaskState]) -> str:
    return _json_list(sorted(s.value for s in values))


def _times(n: int) -> str:
    return f"{n} time{'s' if n != 1 else ''}"


# -- the journal -----------------------------------------------------------------------------


class Journal:
    """The journal file, through one connection; see the module docstring."""

    def __init__(self, conn: sqlite3.Connection, path: Path, retry: RetryPolicy) -> None:
        """Use ``Journal.open``; this only wraps an opened, migrated connection."""
        self.path = path
        self.retry = retry
        self._conn = conn
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._rng = random.Random()

    @classmethod
    def open(cls, path: Path, *, retry: RetryPolicy | None = None) -> Journal:
        """Open (creating folders and file as needed) and bring the schema up to date."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit BEGIN; every transaction is opened explicitly.
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None,
                                   check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise JournalUnwritable(f"{path}: cannot open the journal: {exc}") from exc
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{path}: cannot use WAL mode (got {mode!r})")
            # NORMAL in WAL mode: a process crash loses nothing committed (see module docstring).
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            db = Database(conn, execute_plugins=False)
            # Under a write lock, so two processes opening a new file do not both migrate.
            conn.execute("BEGIN IMMEDIATE")
            try:
                _check_not_newer(conn, path)
                MIGRATIONS.apply(db)
                _check_complete(conn, path)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            conn.close()
            kind = JournalUnwritable if _unwritable(exc) else JournalError
            raise kind(f"{path}: cannot open the journal: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, retry or RetryPolicy())

    def close(self) -> None:
        """Close the connection; the journal is unusable afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._same_process()
            yield self._conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The one transaction helper: everything inside commits together or not at all.

        Not sqlite-utils' ``db.atomic()``: that opens a deferred transaction, which fails at
        once with "database is locked" when it upgrades from reading to writing while another
        connection writes. BEGIN IMMEDIATE takes the write lock first, waiting busy_timeout.
        """
        with self._lock:
            self._same_process()
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _unwritable(exc):
                    raise JournalUnwritable(f"{self.path}: {exc}") from exc
                raise JournalError(f"{self.path}: the journal is busy: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and _unwritable(exc):
                    raise JournalUnwritable(f"{self.path}: {exc}") from exc
                raise

    def _same_process(self) -> None:
        # A SQLite connection copied by fork() corrupts locks; each process opens its own.
        if os.getpid() != self._pid:
            raise JournalError("a journal connection cannot be used after fork(); open one per process")

    # -- batches -------------------------------------------------------------------------

    def create_batch(
        self,
        *,
        name: str,
        source: str,
        content_sha256: str,
        priority: str,
        fmt: str,
        columns: Sequence[str],
        po_column: str,
        rows: Sequence[RowIn],
        now: float,
        max_attempts: int,
        skip_completed: bool = True,
    ) -> Batch:
        """Add one input file as a batch: every row kept, one task per distinct PO.

        Rows with an error (or no PO digits) are kept for the report without a task. With
        ``skip_completed``, a PO whose latest earlier task is COMPLETED and whose folder still
        exists is created COMPLETED at once, pointing to that folder. Raises DuplicateContent
        when an OPEN batch has the same ``content_sha256``.
        """
        rank = PRIORITIES.get(priority)
        if rank is None:
            raise JournalError(f"priority must be one of {', '.join(PRIORITIES)} (got {priority!r})")
        if max_attempts < 1:
            raise JournalError(f"max_attempts must be at least 1 (got {max_attempts})")
        row_params = []
        first_row: dict[str, int] = {}  # PO digits → row_no of its first row, in input order
        for seq, row in enumerate(rows):
            po, error = row.po_digits, row.error
            if error is None and po is None:
                error = "no PO number"
            if error is None and po is not None:
                if not (po.isascii() and po.isdigit()):
                    raise JournalError(f"row {row.row_no}: PO digits expected, got {po!r}")
                first_row.setdefault(po, row.row_no)
            row_params.append((seq, row.row_no, json.dumps(list(row.values)), po, error))
        with self._write() as conn:
            existing = self._open_with_content(conn, content_sha256)
            if existing is not None:
                raise DuplicateContent(existing)
            batch_id = self._new_batch_id(conn, now)
            conn.execute(
                "INSERT INTO batches (id, name, source, content_sha256, priority, rank, fmt, "
                "columns, po_column, state, created_at, row_count, task_count) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (batch_id, name, source, content_sha256, priority, rank, fmt,
                 json.dumps(list(columns)), po_column, BatchState.OPEN.value, now, len(rows),
                 len(first_row)),
            )
            conn.executemany(
                "INSERT INTO input_rows (batch_id, seq, row_no, cells, po_digits, error) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                ((batch_id, *params) for params in row_params),
            )
            done, earlier = (self._completed_earlier(conn, first_row) if skip_completed
                             else ({}, {}))
            conn.executemany(
                "INSERT INTO tasks (batch_id, po_digits, state, max_attempts, reason, supplier, "
                "found, downloaded, names, folder, url, last_processed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (batch_id, po, TaskState.COMPLETED.value, max_attempts, *done[po])
                    if po in done
                    else (batch_id, po, TaskState.QUEUED.value, max_attempts,
                          None, None, None, None, "[]", None, None, None)
                    for po in first_row
                ),
            )
            # A PO taken from an earlier batch brings the PDFs of its mails along.
            conn.executemany(
                "INSERT INTO pdfs (task_id, mail, state, pdf, size, sha256, reason) "
                "SELECT n.id, p.mail, p.state, p.pdf, p.size, p.sha256, p.reason FROM pdfs p "
                "JOIN tasks n ON n.batch_id = ? AND n.po_digits = ? WHERE p.task_id = ?",
                ((batch_id, po, task_id) for po, task_id in earlier.items()),
            )
            conn.executemany(
                "INSERT INTO counts (batch_id, state, n) VALUES (?, ?, ?)",
                [(batch_id, state.value, n)
                 for state, n in ((TaskState.COMPLETED, len(done)),
                                  (TaskState.QUEUED, len(first_row) - len(done))) if n],
            )
            self._event(conn, "batch_created", now, batch_id, None, name=name, source=source,
                        rows=len(rows), tasks=len(first_row), skipped=len(done),
                        priority=priority)
            batch = self._batch_by_id(conn, batch_id)
        assert batch is not None
        return batch

    def _completed_earlier(
        self, conn: sqlite3.Connection, pos: Iterable[str]
    ) -> tuple[dict[str, tuple[Any, ...]], dict[str, int]]:
        """POs whose latest task is COMPLETED with its folder on disk → the new task's fields,
        and → that earlier task's id."""
        found: dict[str, tuple[Any, ...]] = {}
        ids: dict[str, int] = {}
        rows = conn.execute(
            "SELECT t.po_digits, t.batch_id, t.supplier, t.found, t.downloaded, t.names, "
            "t.folder, t.url, t.last_processed, t.id FROM json_each(?) AS wanted "
            # CROSS JOIN keeps this order: one index lookup per PO (tasks_po), never a scan of
            # every COMPLETED task, whatever the size of the journal.
            "CROSS JOIN tasks t ON t.id = (SELECT max(p.id) FROM tasks p WHERE p.po_digits = wanted.value) "
            "WHERE t.state = ? AND t.folder IS NOT NULL",
            (_json_list(pos), TaskState.COMPLETED.value),
        )
        for po, batch_id, supplier, n_found, downloaded, names, folder, url, last, tid in rows:
            if Path(folder).is_dir():
                found[po] = (f"already downloaded in batch {batch_id}", supplier, n_found,
                             downloaded, names, folder, url, last)
                ids[po] = tid
        return found, ids

    def _new_batch_id(self, conn: sqlite3.Connection, now: float) -> str:
        """Short, readable, unique and safe in file names: ``20261124-3f9a``."""
        day = time.strftime("%Y%m%d", time.localtime(now))
        for attempt in range(100):
            candidate = f"{day}-{secrets.token_hex(2 if attempt < 20 else 4)}"
            if conn.execute("SELECT 1 FROM batches WHERE id = ?", (candidate,)).fetchone() is None:
                return candidate
        raise JournalError("cannot find a free batch id")  # 2^32 ids taken: not in this world

    def open_batch_with_content(self, content_sha256: str) -> Batch | None:
        """The OPEN batch made from the same content, if any."""
        with self._read() as conn:
            return self._open_with_content(conn, content_sha256)

    def _open_with_content(self, conn: sqlite3.Connection, sha: str) -> Batch | None:
        row = conn.execute(
            f"SELECT {_BATCH_COLUMNS} FROM batches WHERE content_sha256 = ? AND state = ? "
            "ORDER BY created_at DESC LIMIT 1",
            (sha, BatchState.OPEN.value),
        ).fetchone()
        return _batch(row) if row else None

    def batch(self, batch_id: str) -> Batch | None:
        """The batch with this id or unique id prefix; JournalError if the prefix is ambiguous."""
        with self._read() as conn:
            return self._find_batch(conn, batch_id)

    def _batch_by_id(self, conn: sqlite3.Connection, batch_id: str) -> Batch | None:
        row = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?",
                           (batch_id,)).fetchone()
        return _batch(row) if row else None

    def _find_batch(self, conn: sqlite3.Connection, batch_id: str) -> Batch | None:
        exact = self._batch_by_id(conn, batch_id)
        if exact is not None or not batch_id:
            return exact
        rows = conn.execute(
            f"SELECT {_BATCH_COLUMNS} FROM batches WHERE substr(id, 1, ?) = ? ORDER BY id",
            (len(batch_id), batch_id),
        ).fetchall()
        if len(rows) > 1:
            ids = ", ".join(r[0] for r in rows[:5])
            raise JournalError(f"{batch_id!r} matches {len(rows)} batches ({ids}); say more")
        return _batch(rows[0]) if rows else None

    def _known_batch(self, conn: sqlite3.Connection, batch_id: str) -> Batch:
        batch = self._find_batch(conn, batch_id)
        if batch is None:
            raise JournalError(f"no batch {batch_id!r}")
        return batch

    def batches(self, *, open_only: bool = False) -> list[Batch]:
        """Every batch (or the OPEN ones), oldest first."""
        where = "WHERE state = 'OPEN'" if open_only else ""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches {where} ORDER BY created_at, id"
            ).fetchall()
        return [_batch(r) for r in rows]

    def cancel_batch(self, batch_id: str, now: float) -> int:
        """Cancel every task that is not final or in flight; returns how many.

        A PO in flight finishes and is recorded as usual, so that its folder and the report
        agree; if it would be tried again, it is cancelled then. The batch gets its report
        once nothing of it is in flight.
        """
        with self._write() as conn:
            batch = self._known_batch(conn, batch_id)
            if batch.state is not BatchState.OPEN:
                return 0
            self._check_batch(batch.state, BatchState.CANCELLED)
            cancelled = conn.execute(
                f"UPDATE tasks SET state = ?, reason = ?, not_before = NULL, {_NO_LEASE} "
                "WHERE batch_id = ? AND state IN (SELECT value FROM json_each(?))",
                (TaskState.CANCELLED.value, "cancelled by the user", batch.id,
                 _states(states.sources(TaskState.CANCELLED) - {TaskState.LEASED})),
            ).rowcount
            conn.execute("UPDATE batches SET state = ? WHERE id = ?",
                         (BatchState.CANCELLED.value, batch.id))
            self._event(conn, "batch_cancelled", now, batch.id, None, tasks=cancelled)
        return cancelled

    def requeue(self, *, batch_id: str | None = None, failed_only: bool = False,
                now: float) -> int:
        """Re-run: final tasks (FAILED and PARTIAL only with ``failed_only``) back to QUEUED.

        Attempts start again from zero and every batch concerned reopens, so its report is
        written again when it ends. Without ``batch_id`` every batch is concerned.
        """
        targets = RERUN_WITH_FAILED if failed_only else states.FINAL
        with self._write() as conn:
            if batch_id is not None:
                batch_ids = [self._known_batch(conn, batch_id).id]
            else:
                batch_ids = [r[0] for r in conn.execute("SELECT id FROM batches")]
            total = 0
            for bid in batch_ids:
                moved = conn.execute(
                    f"UPDATE tasks SET state = ?, attempts = 0, lost = 0, not_before = NULL, "
                    f"reason = NULL, {_NO_LEASE} "
                    "WHERE batch_id = ? AND state IN (SELECT value FROM json_each(?))",
                    (TaskState.QUEUED.value, bid,
                     _states(targets & states.sources(TaskState.QUEUED, rerun=True))),
                ).rowcount
                if not moved:
                    continue
                total += moved
                batch = self._batch_by_id(conn, bid)
                assert batch is not None
                if batch.state is not BatchState.OPEN:
                    self._check_batch(batch.state, BatchState.OPEN)
                conn.execute(
                    "UPDATE batches SET state = ?, finished_at = NULL, report_paths = '[]' "
                    "WHERE id = ?",
                    (BatchState.OPEN.value, bid),
                )
                self._event(conn, "batch_requeued", now, bid, None, tasks=moved,
                            failed_only=failed_only)
        return total

    def finished_batches(self) -> list[Batch]:
        """Batches whose every task is final and whose report is not written yet."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches b WHERE finished_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM counts c WHERE c.batch_id = b.id AND c.n > 0 "
                "AND c.state IN (SELECT value FROM json_each(?))) ORDER BY created_at, id",
                (_states(states.NOT_FINAL),),
            ).fetchall()
        return [_batch(r) for r in rows]

    def unfinished_folders(self, batch_id: str) -> list[Task]:
        """FAILED and PARTIAL tasks of a batch whose folder is not renamed to its final name
        yet (the daemon could not, e.g. on a read-only disk); the report waits for them."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE batch_id = ? AND state IN (?, ?) "
                "AND (folder IS NULL OR substr(folder, -6) = ?) ORDER BY id",
                (batch_id, TaskState.FAILED.value, TaskState.PARTIAL.value, "__WORK"),
            ).fetchall()
        return [_task(r) for r in rows]

    def mark_done(self, batch_id: str, now: float, report_paths: Sequence[str]) -> None:
        """Record that the report of a finished batch is written (OPEN → DONE)."""
        with self._write() as conn:
            batch = self._known_batch(conn, batch_id)
            pending = conn.execute(
                "SELECT coalesce(sum(n), 0) FROM counts WHERE batch_id = ? "
                "AND state IN (SELECT value FROM json_each(?))",
                (batch.id, _states(states.NOT_FINAL)),
            ).fetchone()[0]
            if pending:
                raise JournalError(f"batch {batch.id} still has {pending} PO(s) to process")
            new_state = batch.state
            if batch.state is BatchState.OPEN:
                self._check_batch(batch.state, BatchState.DONE)
                new_state = BatchState.DONE
            conn.execute(
                "UPDATE batches SET state = ?, finished_at = ?, report_paths = ? WHERE id = ?",
                (new_state.value, now, json.dumps(list(report_paths)), batch.id),
            )
            self._event(conn, "batch_done", now, batch.id, None, state=new_state.value,
                        reports=list(report_paths))

    # -- tasks ---------------------------------------------------------------------------

    def claim(self, owner: str, limit: int, now: float, lease_seconds: float, *,
              exclude_pos: Collection[str] = ()) -> list[Task]:
        """Lease up to ``limit`` tasks to ``owner`` until ``now + lease_seconds``.

        Eligible: QUEUED, or RETRY_WAIT with ``not_before <= now``, in OPEN batches,
        of a PO not in ``exclude_pos`` (the daemon is writing PDFs into their folders).
        Order: priority first; between batches of equal priority round-robin (each claimed
        task sends its batch to the back); input order within a batch.
        """
        excluded = _json_list(sorted(exclude_pos)) if exclude_pos else None
        if limit <= 0:
            return []
        claimed: list[int] = []
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, rank, served FROM batches b WHERE state = 'OPEN' "
                "AND EXISTS (SELECT 1 FROM counts c WHERE c.batch_id = b.id AND c.n > 0 "
                "AND c.state IN (?, ?)) ORDER BY rank, served, created_at, id",
                (TaskState.QUEUED.value, TaskState.RETRY_WAIT.value),
            ).fetchall()
            ticket = conn.execute("SELECT coalesce(max(served), 0) FROM batches").fetchone()[0]
            # (rank, served, position) — position keeps the SQL order for equal tickets.
            turn = [(rank, served, i, bid) for i, (bid, rank, served) in enumerate(rows)]
            heapq.heapify(turn)
            ready: dict[str, list[int]] = {}
            while turn and len(claimed) < limit:
                rank, _, position, bid = heapq.heappop(turn)
                if bid not in ready:
                    ready[bid] = self._eligible(conn, bid, now, limit, excluded)
                if not ready[bid]:
                    continue  # nothing due in this batch: it leaves the turn
                task_id = ready[bid].pop(0)
                claimed.append(task_id)
                ticket += 1
                conn.execute("UPDATE batches SET served = ? WHERE id = ?", (ticket, bid))
                heapq.heappush(turn, (rank, ticket, position, bid))
            if not claimed:
                return []
            for task_id in claimed:
                old = TaskState(conn.execute("SELECT state FROM tasks WHERE id = ?",
                                             (task_id,)).fetchone()[0])
                self._check(old, TaskState.LEASED)
            conn.execute(
                "UPDATE tasks SET state = ?, lease_owner = ?, lease_expires = ?, "
                "not_before = NULL WHERE id IN (SELECT value FROM json_each(?))",
                (TaskState.LEASED.value, owner, now + lease_seconds, _json_list(claimed)),
            )
            tasks = self._tasks_by_id(conn, claimed)
        return [tasks[i] for i in claimed]

    def _eligible(self, conn: sqlite3.Connection, batch_id: str, now: float,
                  limit: int, excluded: str | None = None) -> list[int]:
        """The first ``limit`` claimable task ids of a batch, in input order, of POs not in
        ``excluded`` (a JSON list)."""
        # Two index range scans on (batch_id, state, id) instead of one OR that would sort.
        skip = "" if excluded is None else (
            " AND po_digits NOT IN (SELECT value FROM json_each(?))")
        extra = () if excluded is None else (excluded,)
        queued = conn.execute(
            f"SELECT id FROM tasks WHERE batch_id = ? AND state = ?{skip} ORDER BY id LIMIT ?",
            (batch_id, TaskState.QUEUED.value, *extra, limit),
        ).fetchall()
        due = conn.execute(
            f"SELECT id FROM tasks WHERE batch_id = ? AND state = ? AND not_before <= ?{skip} "
            "ORDER BY id LIMIT ?",
            (batch_id, TaskState.RETRY_WAIT.value, now, *extra, limit),
        ).fetchall()
        return sorted(r[0] for r in queued + due)[:limit]

    def heartbeat(self, owner: str, task_ids: Sequence[int], now: float,
                  lease_seconds: float) -> int:
        """Extend ``owner``'s leases on these tasks to ``now + lease_seconds``; returns how many.

        A task the owner no longer holds is not touched (its lease expired or it was cancelled).
        """
        if not task_ids:
            return 0
        with self._write() as conn:
            return conn.execute(
                "UPDATE tasks SET lease_expires = ? WHERE state = ? AND lease_owner = ? "
                "AND id IN (SELECT value FROM json_each(?))",
                (now + lease_seconds, TaskState.LEASED.value, owner, _json_list(task_ids)),
            ).rowcount

    def record(self, task_id: int, owner: str, outcome: TaskOutcome, now: float,
               rng: random.Random | None = None) -> Task:
        """Record the outcome of one attempt and move the task on; returns the task after.

        Final outcomes → that state. SIGNED_OUT → AUTH_WAIT, the attempt not counted.
        Retryable outcomes count the attempt and wait in RETRY_WAIT (``RetryPolicy``), or,
        with the budget spent, end PARTIAL (files on disk) or FAILED, the reason kept:
        "gave up after 5 attempts: <reason>". A result from an owner that no longer holds
        the lease is ignored: the task is returned unchanged and the event logged.
        The outcome's files, when given, replace the task's attachment list; a final task's
        ``mails`` each get a PENDING PDF (see ``pending_pdfs``).
        """
        with self._write() as conn:
            task = self._task_by_id(conn, task_id)
            if task.state is not TaskState.LEASED or task.lease_owner != owner:
                log.warning("ignoring a stale result for task %d (PO %s) from %s: the task "
                            "is %s, held by %s", task.id, task.po_digits, owner,
                            task.state.value, task.lease_owner)
                self._event(conn, "stale_result", now, task.batch_id, task.id, owner=owner,
                            status=outcome.status, state=task.state.value,
                            holder=task.lease_owner)
                return task
            new = resolve(task, outcome)
            self._check(task.state, new)
            counted = new is not TaskState.AUTH_WAIT
            attempts = task.attempts + 1 if counted else task.attempts
            reason = outcome.reason or None
            not_before = None
            if new is TaskState.RETRY_WAIT:
                delay = self.retry.delay(attempts, rng or self._rng, outcome.retry_after)
                not_before = now + delay
            elif outcome.status in RETRYABLE:
                reason = f"gave up after {attempts} attempts: {outcome.reason or outcome.status}"
            conn.execute(
                f"UPDATE tasks SET state = ?, attempts = ?, not_before = ?, {_NO_LEASE}, "
                "reason = ?, supplier = coalesce(?, supplier), found = coalesce(?, found), "
                "downloaded = coalesce(?, downloaded), names = coalesce(?, names), "
                "folder = coalesce(?, folder), url = coalesce(?, url), last_processed = ?, "
                "timings = coalesce(?, timings) WHERE id = ?",
                (new.value, attempts, not_before, reason, outcome.supplier, outcome.found,
                 outcome.downloaded,
                 None if outcome.names is None else json.dumps(list(outcome.names)),
                 outcome.folder, outcome.url, now,
                 None if outcome.timings is None else json.dumps(outcome.timings), task.id),
            )
            if outcome.files is not None:
                conn.execute("DELETE FROM attachments WHERE task_id = ?", (task.id,))
                conn.executemany(
                    "INSERT INTO attachments (task_id, name, original_name, size, sha256, "
                    "source_url, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ((task.id, f.name, f.original_name, f.size, f.sha256, f.source_url,
                      f.source) for f in outcome.files),
                )
            if new.final:
                self._mails(conn, task.id, outcome)
            self._event(conn, new.value.lower(), now, task.batch_id, task.id,
                        status=outcome.status, attempts=attempts, reason=reason,
                        not_before=not_before)
            self._cancel_leftovers(conn, now)
            return self._task_by_id(conn, task.id)

    def release(self, owner: str, task_ids: Sequence[int] | None, now: float) -> int:
        """Give leased tasks back to the queue without counting an attempt (graceful stop).

        ``task_ids`` None releases everything ``owner`` holds. Returns how many moved.
        """
        self._check(TaskState.LEASED, TaskState.QUEUED)
        with self._write() as conn:
            sql = f"UPDATE tasks SET state = ?, {_NO_LEASE} WHERE state = ? AND lease_owner = ?"
            params: tuple[Any, ...] = (TaskState.QUEUED.value, TaskState.LEASED.value, owner)
            if task_ids is not None:
                sql += " AND id IN (SELECT value FROM json_each(?))"
                params += (_json_list(task_ids),)
            released = conn.execute(sql, params).rowcount
            if released:
                self._event(conn, "released", now, None, None, owner=owner, tasks=released)
                self._cancel_leftovers(conn, now)
        return released

    def expire_leases(self, now: float) -> list[Task]:
        """Return tasks whose lease ended before ``now`` to the queue, counting the attempt.

        A task whose budget is spent ends FAILED (PARTIAL if files were downloaded) with
        "gave up after N attempts: worker lost M times"; the caller then finalises its folder
        and calls ``set_folder``. At start-up pass ``math.inf``: no worker of an earlier
        daemon survives it. Returns the tasks as they are now.
        """
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state = ? AND lease_expires < ? "
                "ORDER BY id",
                (TaskState.LEASED.value, now),
            ).fetchall()
            expired = [_task(r) for r in rows]
            # An infinite `now` (start-up) is not a time to log.
            at = now if math.isfinite(now) else time.time()
            for task in expired:
                attempts, lost = task.attempts + 1, task.lost + 1
                if attempts < task.max_attempts:
                    new = TaskState.QUEUED
                    reason = f"worker lost {_times(lost)} (lease expired)"
                else:
                    new = TaskState.PARTIAL if (task.downloaded or 0) > 0 else TaskState.FAILED
                    reason = f"gave up after {attempts} attempts: worker lost {_times(lost)}"
                self._check(task.state, new)
                conn.execute(
                    f"UPDATE tasks SET state = ?, attempts = ?, lost = ?, reason = ?, {_NO_LEASE} "
                    "WHERE id = ?",
                    (new.value, attempts, lost, reason, task.id),
                )
                self._event(conn, "lease_expired", at, task.batch_id, task.id,
                            owner=task.lease_owner, state=new.value, attempts=attempts)
            if expired:
                self._cancel_leftovers(conn, at)
            fresh = self._tasks_by_id(conn, [t.id for t in expired])
        return [fresh[t.id] for t in expired]

    def release_auth_wait(self, now: float) -> int:
        """After a sign-in: every task waiting for it goes back to the queue. Returns how many."""
        self._check(TaskState.AUTH_WAIT, TaskState.QUEUED)
        with self._write() as conn:
            released = conn.execute(
                "UPDATE tasks SET state = ? WHERE state = ?",
                (TaskState.QUEUED.value, TaskState.AUTH_WAIT.value),
            ).rowcount
            if released:
                self._event(conn, "auth_released", now, None, None, tasks=released)
                self._cancel_leftovers(conn, now)
        return released

    def _cancel_leftovers(self, conn: sqlite3.Connection, now: float) -> None:
        """Tasks of a cancelled batch that came back from flight waiting again: cancel them."""
        moved = conn.execute(
            "UPDATE tasks SET state = ?, reason = coalesce(reason || '; ', '') || ?, "
            "not_before = NULL WHERE state IN (SELECT value FROM json_each(?)) AND batch_id IN "
            "(SELECT id FROM batches WHERE state = ?)",
            (TaskState.CANCELLED.value, "cancelled by the user",
             _states(states.sources(TaskState.CANCELLED) - {TaskState.LEASED}),
             BatchState.CANCELLED.value),
        ).rowcount
        if moved:
            self._event(conn, "cancelled_after_flight", now, None, None, tasks=moved)

    def set_final(self, task_id: int, state: TaskState, reason: str, now: float,
                  folder: str | None = None) -> Task:
        """Put a task in a final state decided by the daemon, not by an engine outcome.

        The move must be legal (in practice from LEASED, or CANCELLED from any waiting state);
        the lease owner is not checked: the daemon speaks for every worker.
        """
        if not state.final:
            raise JournalError(f"{state.value} is not a final state")
        with self._write() as conn:
            task = self._task_by_id(conn, task_id)
            self._check(task.state, state)
            conn.execute(
                f"UPDATE tasks SET state = ?, reason = ?, folder = coalesce(?, folder), "
                f"not_before = NULL, last_processed = ?, {_NO_LEASE} WHERE id = ?",
                (state.value, reason, folder, now, task.id),
            )
            self._event(conn, state.value.lower(), now, task.batch_id, task.id, reason=reason)
            return self._task_by_id(conn, task.id)

    def set_folder(self, task_id: int, folder: str) -> None:
        """Record where a task's folder is now (after the daemon renamed it); not a state change."""
        with self._write() as conn:
            if not conn.execute("UPDATE tasks SET folder = ? WHERE id = ?",
                                (folder, task_id)).rowcount:
                raise JournalError(f"no task {task_id}")

    def task(self, task_id: int) -> Task:
        """One task; JournalError if there is none with this id."""
        with self._read() as conn:
            return self._task_by_id(conn, task_id)

    def _task_by_id(self, conn: sqlite3.Connection, task_id: int) -> Task:
        row = conn.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?",
                           (task_id,)).fetchone()
        if row is None:
            raise JournalError(f"no task {task_id}")
        return _task(row)

    def _tasks_by_id(self, conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Task]:
        rows = conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id IN (SELECT value FROM json_each(?))",
            (_json_list(ids),),
        ).fetchall()
        return {r[0]: _task(r) for r in rows}

    def tasks(self, batch_id: str) -> list[Task]:
        """Every task of a batch in input order."""
        with self._read() as conn:
            batch = self._known_batch(conn, batch_id)
            rows = conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE batch_id = ? ORDER BY id", (batch.id,)
            ).fetchall()
        return [_task(r) for r in rows]

    def attachments(self, task_id: int) -> list[FileRecord]:
        """The files last recorded for a task."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT name, original_name, size, sha256, source_url, source FROM attachments "
                "WHERE task_id = ? ORDER BY id", (task_id,)
            ).fetchall()
        return [FileRecord(name=r[0], original_name=r[1], size=r[2], sha256=r[3], source_url=r[4],
                           source=r[5]) for r in rows]

    def report_rows(self, batch_id: str) -> list[ReportRow]:
        """Every input row in input order, with its task (None for an invalid row)."""
        by_po = {t.po_digits: t for t in self.tasks(batch_id)}
        with self._read() as conn:
            batch = self._known_batch(conn, batch_id)
            rows = conn.execute(
                "SELECT row_no, cells, po_digits, error FROM input_rows WHERE batch_id = ? "
                "ORDER BY seq", (batch.id,)
            ).fetchall()
            pdfs = self._pdfs_of_batch(conn, batch.id)
        report = []
        for row_no, cells, po, error in rows:
            task = None if error is not None else by_po.get(po or "")
            report.append(ReportRow(
                row_no=row_no, values=tuple(json.loads(cells)), po_digits=po, error=error,
                task=task, pdfs=tuple(pdfs.get(task.id, ())) if task is not None else ()))
        return report

    def leased(self) -> list[Task]:
        """Every task currently leased to a worker."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state = ? ORDER BY id",
                                (TaskState.LEASED.value,)).fetchall()
        return [_task(r) for r in rows]

    # -- PDFs of mails -------------------------------------------------------------------

    def _mails(self, conn: sqlite3.Connection, task_id: int, outcome: TaskOutcome) -> None:
        """A final task's mails wait for their PDFs; with its files known, the PDFs of mails
        it no longer lists are forgotten."""
        if outcome.files is not None:
            conn.execute("DELETE FROM pdfs WHERE task_id = ? AND mail NOT IN "
                         "(SELECT value FROM json_each(?))", (task_id, _json_list(outcome.mails)))
        for mail in dict.fromkeys(outcome.mails):
            row = conn.execute("SELECT state FROM pdfs WHERE task_id = ? AND mail = ?",
                               (task_id, mail)).fetchone()
            if row is not None:
                old = PdfState(row[0])
                if old is PdfState.PENDING:
                    continue
                self._check_pdf(old, PdfState.PENDING)
            conn.execute(
                "INSERT INTO pdfs (task_id, mail, state) VALUES (?, ?, ?) "
                "ON CONFLICT (task_id, mail) DO UPDATE SET state = excluded.state, pdf = NULL, "
                "size = NULL, sha256 = NULL, reason = NULL",
                (task_id, mail, PdfState.PENDING.value),
            )

    def pending_pdfs(self, limit: int, exclude_pos: Collection[str] = ()) -> list[PdfRecord]:
        """PENDING PDFs that may be made now, oldest task first: the task is final with its
        folder renamed, no task of its PO is in flight (its worker could be reopening the
        folder), and its PO is not in ``exclude_pos``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT p.task_id, t.po_digits, p.mail, t.folder FROM pdfs p "
                "JOIN tasks t ON t.id = p.task_id "
                "WHERE p.state = ? AND t.state IN (SELECT value FROM json_each(?)) "
                "AND t.folder IS NOT NULL AND substr(t.folder, -6) <> ? "
                "AND t.po_digits NOT IN (SELECT value FROM json_each(?)) AND NOT EXISTS "
                "(SELECT 1 FROM tasks l WHERE l.po_digits = t.po_digits AND l.state = ?) "
                "ORDER BY p.task_id, p.mail LIMIT ?",
                (PdfState.PENDING.value, _states(states.FINAL), "__WORK",
                 _json_list(sorted(exclude_pos)), TaskState.LEASED.value, limit),
            ).fetchall()
        return [PdfRecord(task_id, po, mail, PdfState.PENDING, folder=folder)
                for task_id, po, mail, folder in rows]

    def pdf_done(self, record: PdfRecord, now: float) -> bool:
        """Record a PENDING PDF as made or failed (``record.state``); False when it is not
        pending any more (its PO ended again meanwhile: it is made again)."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT p.state, t.batch_id FROM pdfs p JOIN tasks t ON t.id = p.task_id "
                "WHERE p.task_id = ? AND p.mail = ?", (record.task_id, record.mail)).fetchone()
            if row is None or row[0] != PdfState.PENDING.value:
                return False
            self._check_pdf(PdfState.PENDING, record.state)
            conn.execute(
                "UPDATE pdfs SET state = ?, pdf = ?, size = ?, sha256 = ?, reason = ? "
                "WHERE task_id = ? AND mail = ?",
                (record.state.value, record.pdf, record.size, record.sha256, record.reason,
                 record.task_id, record.mail),
            )
            kind = "pdf_made" if record.state is PdfState.MADE else "pdf_failed"
            self._event(conn, kind, now, row[1], record.task_id, mail=record.mail,
                        pdf=record.pdf, reason=record.reason)
        return True

    def pdfs_pending(self, batch_id: str) -> int:
        """How many PDFs of the batch's mails are still to be made (its report waits)."""
        with self._read() as conn:
            return int(conn.execute(
                "SELECT count(*) FROM pdfs p JOIN tasks t ON t.id = p.task_id "
                "WHERE p.state = ? AND t.batch_id = ?", (PdfState.PENDING.value, batch_id),
            ).fetchone()[0])

    def pdfs(self, task_id: int) -> list[PdfRecord]:
        """The PDFs of one task's mails, by mail name."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_PDF_COLUMNS} FROM pdfs p JOIN tasks t ON t.id = p.task_id "
                "WHERE p.task_id = ? ORDER BY p.mail", (task_id,)).fetchall()
        return [_pdf(r) for r in rows]

    def _pdfs_of_batch(self, conn: sqlite3.Connection, batch_id: str) -> dict[int, list[PdfRecord]]:
        found: dict[int, list[PdfRecord]] = {}
        for row in conn.execute(
            f"SELECT {_PDF_COLUMNS} FROM tasks t JOIN pdfs p ON p.task_id = t.id "
            "WHERE t.batch_id = ? ORDER BY p.task_id, p.mail", (batch_id,)
        ):
            found.setdefault(row[0], []).append(_pdf(row))
        return found

    # -- snapshots -----------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        """Batch id → state → number of tasks (states with none left out); reads a few rows."""
        result: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            for batch_id, state, n in conn.execute(
                "SELECT batch_id, state, n FROM counts WHERE n > 0 ORDER BY batch_id, state"
            ):
                result.setdefault(batch_id, {})[state] = n
        return result

    def totals(self) -> dict[str, int]:
        """State → number of tasks over every batch."""
        with self._read() as conn:
            return {
                state: n
                for state, n in conn.execute(
                    "SELECT state, sum(n) FROM counts GROUP BY state HAVING sum(n) > 0 ORDER BY state"
                )
            }

    # -- events --------------------------------------------------------------------------

    def log_event(self, kind: str, now: float, *, batch_id: str | None = None,
                  task_id: int | None = None, **detail: Any) -> None:
        """Append one event; ``detail`` must be JSON-friendly (other values become text)."""
        with self._write() as conn:
            self._event(conn, kind, now, batch_id, task_id, **detail)

    def _event(self, conn: sqlite3.Connection, kind: str, now: float, batch_id: str | None,
               task_id: int | None, **detail: Any) -> None:
        conn.execute(
            "INSERT INTO events (at, kind, batch_id, task_id, detail) VALUES (?, ?, ?, ?, ?)",
            (now, kind, batch_id, task_id, json.dumps(detail, default=str)),
        )

    def events(self, *, since_id: int = 0, limit: int = 100, newest: bool = False) -> list[Event]:
        """Events after ``since_id``, oldest first: the first ``limit``, or the last with ``newest``."""
        order = "DESC" if newest else "ASC"
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, at, kind, batch_id, task_id, detail FROM events WHERE id > ? "
                f"ORDER BY id {order} LIMIT ?", (since_id, limit)
            ).fetchall()
        events = [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]
        return sorted(events, key=lambda e: e.id)

    # -- the state table -----------------------------------------------------------------

    @staticmethod
    def _check(old: TaskState, new: TaskState) -> None:
        try:
            states.check(old, new)
        except IllegalTransition as exc:
            raise JournalError(str(exc)) from exc

    @staticmethod
    def _check_pdf(old: PdfState, new: PdfState) -> None:
        try:
            states.check_pdf(old, new)
        except IllegalTransition as exc:
            raise JournalError(str(exc)) from exc

    @staticmethod
    def _check_batch(old: BatchState, new: BatchState) -> None:
        try:
            states.check_batch(old, new)
        except IllegalTransition as exc:
            raise JournalError(str(exc)) from exc
