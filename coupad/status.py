"""The status snapshot: what `coupactl status` shows, built once per pass of the daemon loop.

The control plane only ever reads the latest snapshot, so answering a status request costs
nothing however large the journal is.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from coupad import __version__
from coupad.states import TaskState

if TYPE_CHECKING:
    from coupad.daemon import Daemon

FINAL = {s.value for s in TaskState if s.final}


def build_snapshot(daemon: Daemon, now: float) -> dict[str, Any]:
    """A plain, JSON-ready picture of the daemon now."""
    assert daemon.journal is not None
    counts = daemon.journal.counts()
    batches = []
    for batch in daemon.journal.batches(open_only=True):
        per_state = counts.get(batch.id, {})
        total = sum(per_state.values())
        done = sum(n for state, n in per_state.items() if state in FINAL)
        elapsed = max(now - batch.created_at, 1e-9)
        rate = done / elapsed * 60 if done else 0.0
        eta = (total - done) / (rate / 60) if rate else None
        batches.append({
            "id": batch.id,
            "name": batch.name,
            "priority": batch.priority,
            "state": batch.state.value if hasattr(batch.state, "value") else str(batch.state),
            "total": total,
            "done": done,
            "counts": per_state,
            "created_at": batch.created_at,
            "rate_per_min": round(rate, 2),
            "eta_seconds": round(eta, 1) if eta is not None else None,
        })
    if daemon.stopping_since is not None:
        state = "stopping"
    elif daemon.sign_in.failed:
        state = "sign_in_failed"
    elif daemon.sign_in.needed:
        state = "waiting_for_sign_in"
    elif daemon.paused:
        state = "paused"
    else:
        state = "running"
    return {
        "daemon": {
            "pid": os.getpid(),
            "version": __version__,
            "state": state,
            "started_at": daemon.started_at,
            "uptime_seconds": round(now - daemon.started_at, 1),
            "config": str(daemon.config.source) if daemon.config.source else None,
            "base_url": daemon.config.coupa.base,
        },
        "sign_in": {
            "mode": daemon.config.coupa.sign_in,
            "needed": daemon.sign_in.needed,
            "failed": daemon.sign_in.failed,
            "since": daemon.sign_in.since or None,
            "detail": daemon.sign_in.detail,
        },
        "throttle": {
            "limit": daemon.throttle.limit,
            "cap": int(daemon.throttle.cap),
            "paused_for": round(max(0.0, daemon.throttle.paused_until - now), 1),
            "throttled": daemon.throttle.throttled_total,
        },
        "memory": None if daemon.memory is None else {
            "used_mb": round(daemon.memory.used / 2**20),
            "limit_mb": round(daemon.memory.limit / 2**20),
            "source": daemon.memory.source,
            "high": daemon.memory_high,
        },
        "workers": [
            {
                "slot": slot.index,
                "name": slot.name,
                "state": slot.state.value,
                "pid": slot.process.pid if slot.process is not None else None,
                "tabs": slot.tabs,
                "busy": len(slot.in_flight),
                "watching": len(slot.watching & slot.in_flight.keys()),
                "pos_done": slot.pos_done,
                "memory_mb": round(slot.memory_mb, 1),
                "restarts": slot.restarts,
                "last_error": slot.last_error,
                "recycle_reason": slot.recycle_reason,
            }
            for slot in daemon.pool.slots
        ],
        "batches": batches,
        "totals": daemon.journal.totals(),
    }


def starting_snapshot(daemon: Daemon, now: float) -> dict[str, Any]:
    """What status shows before the first pass of the loop (journal not open yet)."""
    return {
        "daemon": {"pid": os.getpid(), "version": __version__, "state": "starting",
                   "started_at": daemon.started_at, "uptime_seconds": 0.0,
                   "config": str(daemon.config.source) if daemon.config.source else None,
                   "base_url": daemon.config.coupa.base},
        "sign_in": {"mode": daemon.config.coupa.sign_in, "needed": False, "failed": False,
                    "since": None, "detail": ""},
        "throttle": None, "memory": None,
        "workers": [], "batches": [], "totals": {},
    }


def status_line(snap: dict[str, Any]) -> str:
    """One line for systemd's STATUS= and the log."""
    workers = snap["workers"]
    busy = sum(w["busy"] for w in workers)
    up = sum(1 for w in workers if w["state"] in ("READY", "BUSY"))
    pending = sum(b["total"] - b["done"] for b in snap["batches"])
    state = snap["daemon"]["state"]
    return (f"{state}: {up}/{len(workers)} workers up, {busy} POs in flight, "
            f"{len(snap['batches'])} open batches, {pending} POs to go")
