"""PDFs of the Outlook mails in final PO folders, made by the daemon off its loop.

With ``downloads.msg_to_pdf`` on, every ``.msg`` file a PO ends with gets a PDF beside it
(``approval.msg`` → ``approval.msg.pdf``), listed in the folder's manifest as derived from
the mail; a mail that cannot be converted keeps no PDF and its manifest entry says why
(``pdf_error``). How, and why this way:

- **After the PO, not in its way.** A mail is converted once its PO's folder is final — the
  worker has reported the PO and its tab serves the next one; nothing of Coupa is involved,
  so no politeness slot is held either. The PO's status is never changed by a conversion.
- **One converter, in the daemon.** A renderer is a whole Chromium of its own (locked down:
  :mod:`coupad.msg.renderer`); one per worker would double the memory of every slot for
  work that comes rarely. The daemon owns one :class:`~coupad.msg.Converter`, started by
  the first mail and closed after :data:`IDLE_SECONDS` without one.
- **Off the loop.** A mail takes from a fraction of a second to the converter's time-outs:
  :class:`PdfMaker` runs each PO folder's mails as a job on a thread of its own
  (:class:`~coupad.offloop.Offloop`), a few folders queued at a time, and the loop records
  each result in the journal when it collects the job.
- **One writer per folder.** A job starts only for a PO none of whose tasks is in flight,
  and while it runs the daemon claims no task of that PO, so a worker never reopens a
  folder a job writes into.
- **Crash safety.** The journal's PENDING rows, written in the transaction that records
  the PO final, are the list of work; the manifest is the record of what is on disk. A PDF
  is written whole (temporary file, fsync, rename) before the manifest lists it; a job that
  finds a PDF already listed with the right sha256 takes it as made. After ``kill -9`` at
  any moment the next start converts what is still PENDING: a PDF is neither lost, nor left
  half-written, nor listed twice, and nothing is downloaded again.
- **The report waits** while any PDF of the batch is PENDING (see ``Daemon._batches``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from coupad import manifest
from coupad.faults import crash_point
from coupad.folders import file_sha256
from coupad.manifest import DERIVED, MANIFEST
from coupad.msg import Converter, pdf_name
from coupad.names import safe_name, unique_name
from coupad.offloop import Offloop
from coupad.ponumber import PoNumber
from coupad.records import FileRecord, PdfRecord
from coupad.states import PdfState

log = logging.getLogger("coupad.pdfs")

IDLE_SECONDS = 30.0  # the converter's processes stop after this long without a mail
QUEUED_FOLDERS = 2  # folders handed to the thread at once: the rest of the PO stays claimable
GONE = "the mail is no longer in the PO's folder"


def is_mail(name: str) -> bool:
    """Whether a file of a PO folder is an Outlook mail, by its name."""
    return name.lower().endswith(".msg")


def mails_of(files: Iterable[FileRecord]) -> tuple[str, ...]:
    """The names of the mails among a PO's downloaded files."""
    return tuple(f.name for f in files if f.source != DERIVED and is_mail(f.name))


@dataclass(frozen=True)
class Made:
    """What became of one mail: its PDF's entry, or the reason there is none."""

    pdf: FileRecord | None
    reason: str | None = None

    def record(self, pending: PdfRecord) -> PdfRecord:
        """``pending`` as made or failed, for the journal."""
        if self.pdf is None:
            return replace(pending, state=PdfState.FAILED, reason=self.reason)
        return replace(pending, state=PdfState.MADE, pdf=self.pdf.name, size=self.pdf.size,
                       sha256=self.pdf.sha256)


@dataclass(frozen=True)
class FolderJob:
    """The pending PDFs of one PO, whose final folder is ``folder``."""

    po: PoNumber
    folder: Path
    pending: tuple[PdfRecord, ...]

    @property
    def mails(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.mail for p in self.pending))


def make(folder: Path, po: PoNumber, mails: Sequence[str], converter: Converter,
         stopping: Callable[[], bool] = lambda: False) -> dict[str, Made]:
    """Give each mail of a final PO folder its PDF, or its reason in the manifest.

    Idempotent: a PDF the manifest lists with the right size and sha256 is kept as made;
    one that is not intact is made again. The manifest is rewritten after each mail, so
    what is done stays done. A mail reached once ``stopping()`` is true is left out of the
    answer (it stays pending), and so is one whose conversion failed while stopping.
    """
    listed = manifest.read(folder, po)
    entries = list(listed.entries)
    done: dict[str, Made] = {}
    for mail in mails:
        if stopping():
            break
        index = next((i for i, e in enumerate(entries) if e.name == mail and not e.derived), None)
        if index is None:
            done[mail] = Made(None, GONE)
            continue
        source = entries[index]
        previous = next((e for e in entries if e.derived_from == mail), None)
        if previous is not None:
            if file_sha256(folder / previous.name) == previous.sha256:
                done[mail] = Made(previous)
                continue
            entries.remove(previous)
            (folder / previous.name).unlink(missing_ok=True)
            index = entries.index(source)
        name = unique_name(safe_name(pdf_name(Path(mail))), [e.name for e in entries] + [MANIFEST])
        _remove_temporaries(folder, name)
        result = converter.convert(folder / mail, folder / name)
        if not result.ok and stopping():
            break  # the converter was stopped under it: not the mail's fault
        if result.transient:  # a full or read-only disk: the mail stays pending
            raise OSError(f"{folder}: {result.reason}")
        if result.ok:
            crash_point("pdf")
            assert result.sha256 is not None
            made = FileRecord(
                name=name, original_name=pdf_name(Path(source.original_name)),
                source_url=source.source_url, size=result.size, sha256=result.sha256,
                source=DERIVED, key=f"{DERIVED}:{source.key}", derived_from=mail)
            entries[index] = replace(source, pdf_error=None)
            entries.append(made)
            done[mail] = Made(made)
            log.info("%s: %s made of %s (%d bytes)", po, name, mail, result.size)
        else:
            (folder / name).unlink(missing_ok=True)  # an unlisted PDF of an earlier life
            entries[index] = replace(source, pdf_error=result.reason)
            done[mail] = Made(None, result.reason)
        manifest.write(folder, po, entries, listed.status, listed.finished_at)
    return done


def _remove_temporaries(folder: Path, name: str) -> None:
    """Temporary files of an earlier write of ``name`` that a crash left behind."""
    for leftover in folder.glob(f".{_glob_escape(name)}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


class PdfMaker:
    """The daemon's one converter, on a thread of its own; every method is the loop's.

    ``submit`` hands a PO folder's mails to the thread, ``collect`` returns finished jobs,
    ``idle`` closes the converter's processes after :data:`IDLE_SECONDS` without work, and
    ``close`` stops it all at exit.
    """

    def __init__(self, wake: Callable[[], None], *, idle_seconds: float = IDLE_SECONDS,
                 converter: Converter | None = None) -> None:
        self._offloop = Offloop("coupad-pdf", wake)
        self._converter = converter or Converter()
        self._idle_seconds = idle_seconds
        self._jobs: dict[str, tuple[FolderJob, Future[dict[str, Made]]]] = {}
        self._stopping = threading.Event()
        self._warm = False  # the converter may have processes running
        self._last_work = time.monotonic()

    @property
    def busy_pos(self) -> frozenset[str]:
        """PO digits whose folders a job may be writing into: claim none of their tasks."""
        return frozenset(self._jobs)

    @property
    def room(self) -> int:
        """How many more folders may be handed to the thread now."""
        return 0 if self._stopping.is_set() else max(0, QUEUED_FOLDERS - len(self._jobs))

    @property
    def renderer_pid(self) -> int | None:
        """The renderer's browser process (its process group's too), while one runs."""
        return self._converter.renderer.pid

    def submit(self, job: FolderJob) -> None:
        self._warm = True
        self._jobs[job.po.digits] = (job, self._offloop.submit(
            lambda: make(job.folder, job.po, job.mails, self._converter, self._stopping.is_set)))

    def collect(self) -> list[tuple[FolderJob, dict[str, Made] | Exception]]:
        """Finished jobs and what became of their mails, or what the job raised (a disk that
        refuses writes, most likely: its mails stay pending)."""
        finished: list[tuple[FolderJob, dict[str, Made] | Exception]] = []
        for digits, (job, future) in list(self._jobs.items()):
            if not future.done():
                continue
            del self._jobs[digits]
            self._last_work = time.monotonic()
            try:
                finished.append((job, future.result()))
            except Exception as exc:
                finished.append((job, exc))
        return finished

    def idle(self) -> None:
        """Stop the converter's processes once it has had no work for a while."""
        if self._warm and not self._jobs and (
                time.monotonic() - self._last_work >= self._idle_seconds):
            self._warm = False
            log.info("no mail for %.0f s: stopping the PDF converter", self._idle_seconds)
            self._offloop.submit(self._converter.close)

    def close(self, timeout: float) -> None:
        """Stop: the current mail may finish within ``timeout`` seconds, then the converter's
        processes are killed (one that started after is ended by its pipe closing with us)."""
        self._stopping.set()
        self._offloop.stop()
        if not self._offloop.join(timeout):
            log.warning("a mail was still being converted after %.0f s; stopping it", timeout)
        self._converter.close()
