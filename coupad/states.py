"""Task, worker, batch and mail-PDF states, and the one table of legal moves between them.

This module imports nothing else of coupad so that every other module (journal, pool,
status, control) can share it. The journal refuses any task move this table does not list.
"""

from __future__ import annotations

import enum

from coupad.errors import CoupadError


class TaskState(enum.StrEnum):
    """Where one PO of one batch stands."""

    QUEUED = "QUEUED"  # waiting for a worker
    LEASED = "LEASED"  # claimed by a worker; its heartbeats extend the lease
    RETRY_WAIT = "RETRY_WAIT"  # a retryable outcome; claimable again once not_before passes
    AUTH_WAIT = "AUTH_WAIT"  # Coupa asked for sign-in; waits until someone signs in again
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    NO_ATTACHMENTS = "NO_ATTACHMENTS"
    NOT_FOUND = "NOT_FOUND"
    ACCESS_DENIED = "ACCESS_DENIED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        """True when nothing but an explicit re-run moves the task again."""
        return self in FINAL


FINAL: frozenset[TaskState] = frozenset(
    {
        TaskState.COMPLETED,
        TaskState.PARTIAL,
        TaskState.NO_ATTACHMENTS,
        TaskState.NOT_FOUND,
        TaskState.ACCESS_DENIED,
        TaskState.FAILED,
        TaskState.CANCELLED,
    }
)
NOT_FINAL: frozenset[TaskState] = frozenset(TaskState) - FINAL

# Every legal task move. LEASED → QUEUED covers both an expired lease (the journal counts the
# attempt) and a release at shutdown (it does not). A final state leaves only through an
# explicit re-run (RERUN below), never as a side effect of processing.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset({TaskState.LEASED, TaskState.CANCELLED}),
    TaskState.LEASED: FINAL
    | frozenset({TaskState.RETRY_WAIT, TaskState.AUTH_WAIT, TaskState.QUEUED}),
    TaskState.RETRY_WAIT: frozenset({TaskState.LEASED, TaskState.QUEUED, TaskState.CANCELLED}),
    TaskState.AUTH_WAIT: frozenset({TaskState.QUEUED, TaskState.CANCELLED}),
    **{state: frozenset({TaskState.QUEUED}) for state in FINAL},
}

# The moves that need the user's explicit request (`coupactl retry`).
RERUN: frozenset[tuple[TaskState, TaskState]] = frozenset(
    (state, TaskState.QUEUED) for state in FINAL
)


class IllegalTransition(CoupadError):
    """A state change that the table of legal moves does not allow."""

    def __init__(self, old: enum.Enum, new: enum.Enum, why: str = "") -> None:
        self.old = old
        self.new = new
        detail = f" ({why})" if why else ""
        super().__init__(f"illegal move {old.value} → {new.value}{detail}")


def check(old: TaskState, new: TaskState, *, rerun: bool = False) -> None:
    """Raise IllegalTransition unless ``old → new`` is legal (``rerun`` allows final → QUEUED)."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(old, new)
    if (old, new) in RERUN and not rerun:
        raise IllegalTransition(old, new, "a final state is left only by an explicit re-run")


def sources(new: TaskState, *, rerun: bool = False) -> frozenset[TaskState]:
    """Every state from which ``new`` is legal; the journal's bulk moves select on these."""
    return frozenset(
        old
        for old, targets in TRANSITIONS.items()
        if new in targets and (rerun or (old, new) not in RERUN)
    )


class WorkerState(enum.StrEnum):
    """Where one worker slot (one browser process) stands, supervisor-style."""

    STARTING = "STARTING"  # process spawned, browser launching
    READY = "READY"  # browser up, no PO in flight
    BUSY = "BUSY"  # at least one PO in flight
    RECYCLING = "RECYCLING"  # finishing in-flight POs, then restarting (memory, PO count)
    BACKOFF = "BACKOFF"  # exited unexpectedly; waits before the next start
    FATAL = "FATAL"  # too many fast failures; not restarted until asked
    STOPPED = "STOPPED"  # not running, on purpose


WORKER_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.STOPPED: frozenset({WorkerState.STARTING}),
    WorkerState.STARTING: frozenset({WorkerState.READY, WorkerState.BACKOFF, WorkerState.STOPPED}),
    WorkerState.READY: frozenset(
        {WorkerState.BUSY, WorkerState.RECYCLING, WorkerState.BACKOFF, WorkerState.STOPPED}
    ),
    WorkerState.BUSY: frozenset(
        {WorkerState.READY, WorkerState.RECYCLING, WorkerState.BACKOFF, WorkerState.STOPPED}
    ),
    WorkerState.RECYCLING: frozenset(
        {WorkerState.STARTING, WorkerState.BACKOFF, WorkerState.STOPPED}
    ),
    WorkerState.BACKOFF: frozenset({WorkerState.STARTING, WorkerState.FATAL, WorkerState.STOPPED}),
    # A person may ask again (resume, new sign-in): like supervisor's `start` on FATAL.
    WorkerState.FATAL: frozenset({WorkerState.STARTING, WorkerState.STOPPED}),
}


def check_worker(old: WorkerState, new: WorkerState) -> None:
    """Raise IllegalTransition unless the worker move ``old → new`` is legal."""
    if new not in WORKER_TRANSITIONS[old]:
        raise IllegalTransition(old, new)


class PdfState(enum.StrEnum):
    """Where the PDF of one Outlook mail in a PO's folder stands."""

    PENDING = "PENDING"  # the PO is final with the mail in its folder; no PDF made yet
    MADE = "MADE"  # the PDF is beside the mail, listed in the manifest
    FAILED = "FAILED"  # no PDF can be made of it; the manifest says why


PDF_TRANSITIONS: dict[PdfState, frozenset[PdfState]] = {
    PdfState.PENDING: frozenset({PdfState.MADE, PdfState.FAILED}),
    # A PO that ends again (a re-run) lists its mails again: each is looked at once more.
    PdfState.MADE: frozenset({PdfState.PENDING}),
    PdfState.FAILED: frozenset({PdfState.PENDING}),
}


def check_pdf(old: PdfState, new: PdfState) -> None:
    """Raise IllegalTransition unless the PDF move ``old → new`` is legal."""
    if new not in PDF_TRANSITIONS[old]:
        raise IllegalTransition(old, new)


class BatchState(enum.StrEnum):
    """Where one input file's batch stands."""

    OPEN = "OPEN"  # has POs to process, or its report is not written yet
    DONE = "DONE"  # every PO final and the report written
    CANCELLED = "CANCELLED"  # cancelled by the user; its report is still written


BATCH_TRANSITIONS: dict[BatchState, frozenset[BatchState]] = {
    BatchState.OPEN: frozenset({BatchState.DONE, BatchState.CANCELLED}),
    # A re-run (`coupactl retry`) reopens a batch; its report is written again when it ends.
    BatchState.DONE: frozenset({BatchState.OPEN}),
    BatchState.CANCELLED: frozenset({BatchState.OPEN}),
}


def check_batch(old: BatchState, new: BatchState) -> None:
    """Raise IllegalTransition unless the batch move ``old → new`` is legal."""
    if new not in BATCH_TRANSITIONS[old]:
        raise IllegalTransition(old, new)
