"""Crash points: where the crash-safety tests kill the daemon with SIGKILL on purpose.

A test sets ``COUPAD_CRASH_AT=<point>`` and ``COUPAD_CRASH_MARK=<file>`` in the daemon's
environment. The first time any coupad process passes that point, it creates the mark file
and sends SIGKILL to the daemon: to itself in the daemon, to its parent in a worker (which
then waits to be taken down with it, as after a real ``kill -9``). The mark makes each crash
happen once across restarts. Without the variables (always, in production) a crash point
costs one dictionary lookup.

Points: ``intake`` (batch journaled, file still in the inbox), ``download`` (a file fully
downloaded, not yet in the PO folder or manifest), ``rename`` (manifest final, folder not
yet renamed), ``report`` (CSV report written, summary not yet). For the PDFs of mails (only
reached by a batch with Outlook mails): ``pdf`` (a PDF written beside its mail, not yet in
the manifest), ``pdf_listed`` (PDFs listed in the manifest, not yet recorded in the journal).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

POINTS = ("intake", "download", "rename", "report")
MAIL_POINTS = ("pdf", "pdf_listed")


def crash_point(name: str) -> None:
    """SIGKILL the daemon here if a test asked for it (see the module docstring)."""
    if os.environ.get("COUPAD_CRASH_AT") != name:
        return
    mark = os.environ.get("COUPAD_CRASH_MARK", "")
    if not mark:
        return
    try:
        fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # this crash already happened
    os.write(fd, name.encode())
    os.close(fd)
    if multiprocessing.parent_process() is None:
        os.kill(os.getpid(), signal.SIGKILL)
    os.kill(os.getppid(), signal.SIGKILL)
    while True:  # a worker: the daemon is gone; its parent watch ends this process
        time.sleep(1)
