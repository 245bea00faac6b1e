"""One PO in the engine: the job, its outcome and result, and the record of its run.

A run goes through the :class:`Stage` values in order (see :mod:`coupad.engine`); the
:class:`PoRun` holds everything the engine learnt about the PO on the way, so that finishing it
is a matter of reading the record.
"""

from __future__ import annotations

import concurrent.futures
import enum
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from coupad.download import Fetched
from coupad.folders import PoFolder
from coupad.page import Attachment
from coupad.ponumber import PoNumber


class Outcome(enum.Enum):
    """How one attempt at a PO ended."""

    COMPLETED = "COMPLETED"
    NO_ATTACHMENTS = "NO_ATTACHMENTS"
    NOT_FOUND = "NOT_FOUND"
    ACCESS_DENIED = "ACCESS_DENIED"
    SIGNED_OUT = "SIGNED_OUT"  # never final: the daemon turns it into AUTH_WAIT
    THROTTLED = "THROTTLED"
    SERVER_ERROR = "SERVER_ERROR"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"  # download failures and the unexpected; files already on disk are kept
    # A download problem no retry will change (a file Coupa says does not exist or may not be
    # fetched, too many redirects, ...): the PO ends at once, PARTIAL when some files are on disk.
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"

    @property
    def final(self) -> bool:
        """Whether the PO is done: its folder has been renamed to ``<PO>_<STATUS>``."""
        return self in _FINAL

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed (sign-in is neither final nor retryable)."""
        return self in _RETRYABLE


_FINAL = frozenset({Outcome.COMPLETED, Outcome.NO_ATTACHMENTS, Outcome.NOT_FOUND, Outcome.ACCESS_DENIED,
                    Outcome.PARTIAL, Outcome.FAILED})
_RETRYABLE = frozenset({Outcome.THROTTLED, Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.ERROR})


@dataclass(frozen=True)
class PoJob:
    """One PO to process; ``deadline_s`` is its time budget in seconds from submit."""

    po: PoNumber
    key: str  # the task id, opaque to the engine
    deadline_s: float | None = None  # None: tasks.po_timeout


@dataclass(frozen=True)
class PoResult:
    """What one attempt at a PO found, downloaded and ended with."""

    job: PoJob
    outcome: Outcome
    reason: str
    supplier: str | None
    found: int
    downloaded: int
    names: tuple[str, ...]
    folder: Path | None
    final_url: str
    timings: dict[str, float]
    retry_after: float | None = None

    @property
    def partial(self) -> bool:
        """A retryable outcome with some of the PO's files already on disk."""
        return self.outcome.retryable and self.downloaded > 0


class Stage(enum.Enum):
    """Where a tab stands."""

    OPEN = "open"
    LOAD = "load"
    CLICKS = "clicks"
    DOWNLOADS = "downloads"


@dataclass(frozen=True)
class Planned:
    """An attachment to download for a PO."""

    attachment: Attachment
    source: str  # "po" | "requisition"

    @property
    def key(self) -> str:
        return self.attachment.key(self.source)


@dataclass
class ClickDownload:
    """A browser download started by a click, followed by the browser's download events."""

    planned: Planned
    page_url: str  # where it was clicked: the manifest's source for a file with no URL of its own
    clicked_at: float
    guid: str | None = None  # the browser's id for it, once it has begun
    last_bytes: int = -1
    last_progress: float = 0.0
    done_path: Path | None = None  # the complete file, named by its guid in the staging folder
    failed: str | None = None  # why the browser gave it up


@dataclass
class PoRun:
    """One PO in flight in one browser tab: where it stands and what it found."""

    job: PoJob
    handle: str
    submitted: float
    deadline: float
    navigable: bool  # a navigation may start: the tab is blank or its document retired (see above)
    blanked_at: float = 0.0  # when it was sent to about:blank (a tab not yet navigable)
    stage: Stage = Stage.OPEN
    target: str = "po"  # which page the tab is on: "po" | "requisition"
    url: str = ""
    expected_path: str = ""
    nav_at: float = 0.0
    committed: bool = False  # the tab's document is the one navigated to (see module docstring)
    ready_at: float | None = None
    page_requests: bool = True  # at the last look, the page had a request in flight (or no hook)
    list_sig: str | None = None  # the attachment list's signature at the last look
    list_changed_at: float = 0.0  # when the list last changed after the first look
    look_at: float = 0.0  # when to take the next snapshot
    last_url: str = ""
    folder: PoFolder | None = None
    supplier: str | None = None
    planned: list[Planned] = field(default_factory=list)
    clicks: deque[Planned] = field(default_factory=deque)
    clicking: ClickDownload | None = None
    browser_downloads: list[ClickDownload] = field(default_factory=list)
    fetches: dict[concurrent.futures.Future[Fetched], tuple[Planned, Path]] = field(default_factory=dict)
    refetched: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    transient: bool = False  # one of the failures may go away on another attempt
    signed_out: str | None = None
    retry_after: float | None = None
    requisition_id: str | None = None
    page_outcome: Outcome | None = None  # a page said stop (throttled, server error, ...)
    page_reason: str = ""
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    downloads_started: float | None = None

    @property
    def watching(self) -> bool:
        """Whether the PO only watches its loaded page for evidence: no page load, request of
        the page or download of the PO in flight, so the tenant feels nothing of it."""
        return (self.stage is Stage.LOAD and self.committed and self.ready_at is not None
                and not self.page_requests and not self.fetches
                and not self.browser_downloads and self.clicking is None)

    def fail(self, message: str, retry_after: float | None = None, *, permanent: bool = False) -> None:
        self.failures.append(message)
        self.transient = self.transient or not permanent
        if retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, retry_after)

    def time(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` to the time the PO spent in ``stage``."""
        self.timings[stage] = round(self.timings.get(stage, 0.0) + seconds, 4)

    def downloaded(self) -> list[str]:
        """The names on disk of the PO's planned files, in the page's order."""
        if self.folder is None:
            return []
        by_key = {e.key: e.name for e in self.folder.entries}
        return [by_key[p.key] for p in self.planned if p.key in by_key]

    @property
    def idle(self) -> bool:
        """Whether the PO can finish: past its pages, nothing still clicking or downloading."""
        return self.stage is Stage.DOWNLOADS and not (self.fetches or self.browser_downloads or self.clicking)

    def ending(self) -> tuple[Outcome, str]:
        """How an idle PO ends, and why."""
        if self.signed_out is not None:
            return Outcome.SIGNED_OUT, self.signed_out
        if self.page_outcome is not None:
            return self.page_outcome, "; ".join([self.page_reason, *self.failures, *self.notes])
        if self.failures:
            if not self.transient:
                # Nothing another attempt could change: end now rather than retry in vain.
                outcome = Outcome.PARTIAL if self.downloaded() else Outcome.FAILED
                return outcome, "; ".join(self.failures + self.notes)
            return Outcome.ERROR, "; ".join(self.failures + self.notes)
        outcome = Outcome.COMPLETED if self.planned else Outcome.NO_ATTACHMENTS
        return outcome, "; ".join(self.notes)

    def result(self, outcome: Outcome, reason: str, folder: Path | None, final_url: str) -> PoResult:
        """What this attempt found, downloaded and ended with."""
        names = self.downloaded()
        return PoResult(
            job=self.job,
            outcome=outcome,
            reason=reason,
            supplier=self.supplier,
            found=len(self.planned),
            downloaded=len(names),
            names=tuple(names),
            folder=folder,
            final_url=final_url,
            timings=dict(self.timings),
            retry_after=self.retry_after,
        )

    def click_of(self, key: str) -> ClickDownload | None:
        """The click download for an attachment key, awaiting its start or running."""
        if self.clicking is not None and self.clicking.planned.key == key:
            return self.clicking
        return next((d for d in self.browser_downloads if d.planned.key == key), None)
