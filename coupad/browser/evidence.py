"""Evidence before verdict: when a loaded page's attachment list can be believed.

Coupa renders attachment lists after the page has loaded — seconds later on a busy tenant, by
a timer or by the page's own requests, sometimes in steps — so an empty or short list seen
early proves nothing. A loaded page (``readyState`` complete) is read only when one of these
holds, and until then it is looked at again:

1. *The page is idle*: the hook (:mod:`coupad.page`), installed before the page's own
   scripts ran, sees no request in flight (nor a script or frame inserted after load), no
   socket, event stream or worker open, no timer, interval or animation frame due within
   ``coupa.late_list_window``, and nothing done for a moment. Nothing the page started can
   change it any more, so it is read at once, with no clock to wait out.
2. *The list has stopped changing*: a page that keeps working (polls, animates, holds a
   socket, or whose hook came late) is read once its attachment list — and its requisition
   links — have not changed for ``coupa.late_list_window`` since it loaded or last changed,
   and none of its requests is in flight (a request still open may be the list, late on a
   busy tenant: it is waited for up to ``coupa.settle_timeout``).

A list that is still changing ``coupa.settle_timeout`` after load ends the attempt as a
retryable error; so does a page one of whose own requests failed (429, 5xx, network error),
since what it shows may lack a part. The window bounds what is promised: an attachment that
appears within ``coupa.late_list_window`` of the page's load, or of the list's previous change,
is never missed. The rules here take the time as a parameter; the engine looks and acts.
"""

from __future__ import annotations

from coupad.browser.po import PoRun
from coupad.page import Snapshot, idle_wait, is_idle

WATCH_INTERVAL = 0.1  # a loaded page that is not evidence yet is looked at at least this often


def note_list(run: PoRun, snap: Snapshot, now: float) -> None:
    """Remember when the page's attachment list (or its requisition links) last changed."""
    if snap.list_sig != run.list_sig:
        if run.list_sig is not None:
            run.list_changed_at = now
        run.list_sig = snap.list_sig


def evidence(run: PoRun, snap: Snapshot, now: float, *, window: float, settle_timeout: float) -> str | None:
    """Why the loaded page can be believed now (see above), or None; ``window`` is
    ``coupa.late_list_window``, ``settle_timeout`` ``coupa.settle_timeout``."""
    if is_idle(snap, window):
        return "idle"
    assert run.ready_at is not None
    if now - max(run.ready_at, run.list_changed_at) < window:
        return None
    if snap.hook is None or snap.hook.inflight == 0:
        return "list unchanged"
    # A request of the page is still open: it may be the list, late on a busy tenant.
    if now - run.ready_at > settle_timeout:
        return "list unchanged, a request still open at coupa.settle_timeout"
    return None


def next_look(run: PoRun, snap: Snapshot, now: float, *, window: float, look_interval: float) -> float:
    """In how many seconds to look at a page that is not evidence yet: when it may turn idle
    or its list may have been unchanged long enough, at least every WATCH_INTERVAL meanwhile,
    and never sooner than ``look_interval``."""
    assert run.ready_at is not None
    stable_in = window - (now - max(run.ready_at, run.list_changed_at))
    idle_in = idle_wait(snap, window)
    due = min(WATCH_INTERVAL, stable_in, idle_in if idle_in is not None else WATCH_INTERVAL)
    return max(look_interval, due)
