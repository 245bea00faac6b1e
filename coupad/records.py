"""The journal's records: plain, frozen dataclasses that cross module and process lines.

Rows in (from the intake), attempts' outcomes (from workers), and what the journal gives
back (tasks, batches, report rows, events), plus the retry policy that spaces attempts.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from coupad.states import BatchState, PdfState, TaskState


@dataclass(frozen=True)
class RowIn:
    """One input row as the intake read it: cells as text, the PO digits or why not, and the
    first row with the same PO (the journal keeps every row, and runs each PO once)."""

    row_no: int
    values: tuple[str, ...]
    po_digits: str | None
    error: str | None = None
    duplicate_of: int | None = None  # row_no of the first row with the same PO


@dataclass(frozen=True)
class FileRecord:
    """One file of a PO folder: as its manifest.json lists it (coupad.manifest), as a worker
    reports it, and as the journal keeps it for the report."""

    name: str  # the file's name in the PO folder (safe, unique in the folder)
    original_name: str  # the name Coupa gave it (for a derived file: the original's + ".pdf")
    size: int
    sha256: str
    source_url: str
    source: str = "po"  # "po" | "requisition" | "derived"
    # The attachment's identity across retries (the engine's); "" where it is not kept, as in
    # the journal, which records files for the report only.
    key: str = ""
    derived_from: str | None = None  # a derived file: the name of the file it was made from
    pdf_error: str | None = None  # a mail: why no PDF could be made of it

    @property
    def derived(self) -> bool:
        return self.derived_from is not None

    def to_json(self) -> dict[str, Any]:
        """The record as manifest.json spells it: the optional fields only when set."""
        document = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for optional in ("derived_from", "pdf_error"):
            if document[optional] is None:
                del document[optional]
        return document


@dataclass(frozen=True)
class TaskOutcome:
    """What one attempt at one PO ended with; None means "not known, keep what the journal has".

    ``status`` is an engine outcome (COMPLETED, NO_ATTACHMENTS, NOT_FOUND, ACCESS_DENIED,
    SIGNED_OUT, THROTTLED, SERVER_ERROR, TIMEOUT, ERROR) or a final TaskState name.
    """

    status: str
    reason: str = ""
    supplier: str | None = None
    found: int | None = None
    downloaded: int | None = None
    names: tuple[str, ...] | None = None
    folder: str | None = None
    url: str | None = None
    retry_after: float | None = None
    timings: dict[str, float] | None = None
    files: tuple[FileRecord, ...] | None = None
    # Names in the PO folder of the Outlook mails to make PDFs of once the PO is final
    # (downloads.msg_to_pdf); with ``files`` given, mails not named here are forgotten.
    mails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """One PO of one batch and everything known about its processing."""

    id: int
    batch_id: str
    po_digits: str
    state: TaskState
    attempts: int  # ended attempts that count against max_attempts
    max_attempts: int
    lost: int  # leases that expired (worker lost)
    not_before: float | None  # RETRY_WAIT: claimable from this time on
    lease_owner: str | None
    lease_expires: float | None
    reason: str | None
    supplier: str | None
    found: int | None
    downloaded: int | None
    names: tuple[str, ...]
    folder: str | None
    url: str | None
    last_processed: str | None  # ISO 8601, local time with offset
    timings: dict[str, float]


@dataclass(frozen=True)
class Batch:
    """One accepted input file."""

    id: str
    name: str
    source: str
    content_sha256: str
    priority: str
    fmt: str
    columns: tuple[str, ...]
    po_column: str
    state: BatchState
    created_at: float
    finished_at: float | None  # when its report was written; None while one is due
    row_count: int
    task_count: int
    report_paths: tuple[str, ...]


@dataclass(frozen=True)
class PdfRecord:
    """The PDF of one Outlook mail of a task's folder: made, failed (with why), or pending."""

    task_id: int
    po_digits: str
    mail: str  # the mail's name in the PO folder
    state: PdfState
    pdf: str | None = None  # the PDF's name beside it
    size: int | None = None
    sha256: str | None = None
    reason: str | None = None
    folder: str | None = None  # the task's PO folder, when the journal knows it


@dataclass(frozen=True)
class ReportRow:
    """One input row in input order with its task (None for an invalid row)."""

    row_no: int
    values: tuple[str, ...]
    po_digits: str | None
    error: str | None
    task: Task | None
    pdfs: tuple[PdfRecord, ...] = ()  # the PDFs of the task's mails


@dataclass(frozen=True)
class Event:
    """One line of the journal's event log."""

    id: int
    at: float
    kind: str
    batch_id: str | None
    task_id: int | None
    detail: dict[str, Any] = field(default_factory=dict)


RETRY_AFTER_CAP = 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with ±50 % jitter, capped, never sooner than the server asked —
    up to :data:`RETRY_AFTER_CAP` (a longer Retry-After is a mistake or hostile, and would
    park a PO for days). The daemon's journal and ``coupad fetch`` both retry by it."""

    base_seconds: float = 5.0
    max_seconds: float = 600.0

    @classmethod
    def of(cls, tasks: Any) -> RetryPolicy:
        """The policy of a ``[tasks]`` config section (``retry_base_seconds``, ``retry_max_seconds``)."""
        return cls(base_seconds=tasks.retry_base_seconds, max_seconds=tasks.retry_max_seconds)

    def delay(self, attempts: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        raw = self.base_seconds * 2.0 ** min(max(attempts - 1, 0), 60)
        jittered = min(self.max_seconds, raw * rng.uniform(0.5, 1.5))
        return max(jittered, min(retry_after or 0.0, RETRY_AFTER_CAP))
