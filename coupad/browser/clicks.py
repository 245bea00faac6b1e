"""Click downloads of POs in flight: the browser's download events handed to their clicks,
and running downloads judged done, failed, stalled or overdue.

Each tab clicks one attachment at a time and waits for its download to begin, so the events
the :class:`coupad.browser.downloads.DownloadRouter` attributes to a tab and an attachment key
name one :class:`coupad.browser.po.ClickDownload`. The engine clicks; this module keeps the
books, with the time as a parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from coupad.browser.downloads import Began, Completed, Failed, Progress, Refused
from coupad.browser.po import PoRun
from coupad.download import is_sign_in_download

log = logging.getLogger("coupad.engine")

CLICK_START_TIMEOUT = 30.0  # a click must start its download within this (bounded by download_timeout)
STALL_TIMEOUT = 120.0  # a browser download whose size does not move for this long has failed


def route(events: Iterable[object], runs: Iterable[PoRun], now: float) -> None:
    """Hand the browser's download events to the clicks they belong to."""
    by_handle = {r.handle: r for r in runs}
    for event in events:
        if isinstance(event, Refused):
            log.warning("a download no PO expected was cancelled (%s): %s",
                        event.suggested_name, event.reason)
            continue
        if not isinstance(event, (Began, Progress, Completed, Failed)):
            continue
        run = by_handle.get(event.tab_id)
        if run is None:
            continue
        download = run.click_of(event.key)
        if download is None:
            continue
        if isinstance(event, Began):
            download.guid = event.guid
            download.last_progress = now
            if run.clicking is download:
                run.clicking = None
                run.browser_downloads.append(download)
        elif isinstance(event, Progress):
            if event.received != download.last_bytes:
                download.last_bytes = event.received
                download.last_progress = now
        elif isinstance(event, Completed):
            download.done_path = event.path
            if run.clicking is download:
                run.clicking = None
                run.browser_downloads.append(download)
        elif isinstance(event, Failed):
            download.failed = event.reason
            if run.clicking is download:
                run.clicking = None
                run.browser_downloads.append(download)


def settle(run: PoRun, now: float, timeout: float, cancel: Callable[[str, str], None] | None) -> None:
    """File the run's finished browser downloads into its folder and fail the failed, stalled
    and overdue ones (``timeout``: ``coupa.download_timeout``), cancelling those in the
    browser with ``cancel(guid, why)``."""
    for download in list(run.browser_downloads):
        name = download.planned.attachment.name
        if download.done_path is not None:
            run.browser_downloads.remove(download)
            if is_sign_in_download(download.done_path, name):
                run.signed_out = f"{name or 'attachment'}: the download was a sign-in page"
                run.clicks.clear()
                download.done_path.unlink(missing_ok=True)
                continue
            assert run.folder is not None
            run.folder.add_file(
                download.done_path, name or "attachment", download.page_url,
                download.planned.source, download.planned.key,
            )
            continue
        if download.failed is not None:
            run.browser_downloads.remove(download)
            run.fail(f"{name}: the browser download failed ({download.failed})")
            continue
        stalled = now - download.last_progress > min(STALL_TIMEOUT, timeout)
        if stalled or now - download.clicked_at > timeout:
            run.browser_downloads.remove(download)
            why = "stalled" if stalled else f"took longer than {timeout:.0f} s"
            if cancel is not None and download.guid is not None:
                cancel(download.guid, why)
            run.fail(f"{name}: the browser download {why}")
