"""What each coupactl command does inside the daemon; the loop calls these between passes.

Each handler takes the daemon (as :class:`Controlled`: what a command may read and ask of
it), ``now`` and the request's arguments and returns plain data for the answer, or raises
CommandFailed with an error code the client shows. What changes the daemon's own state
(pause, resume, drain, stop) is the daemon's methods; the handlers only call them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from coupad.config import Config
from coupad.control import CommandFailed
from coupad.journal import Journal
from coupad.states import TaskState

log = logging.getLogger("coupad.daemon")


class Controlled(Protocol):
    """What the commands need of the daemon (:class:`coupad.daemon.Daemon` is one)."""

    config: Config
    journal: Journal | None

    def pause(self) -> None: ...

    def resume(self, now: float) -> None: ...

    def drain(self) -> None: ...

    def request_stop(self, now: float) -> None: ...

    def base_profile_updated(self, now: float) -> None: ...


def batches(daemon: Controlled, now: float) -> list[dict[str, Any]]:
    assert daemon.journal is not None
    counts = daemon.journal.counts()
    return [_batch_dict(b, counts.get(b.id, {})) for b in daemon.journal.batches()]


def batch(daemon: Controlled, now: float, id: str) -> dict[str, Any]:
    assert daemon.journal is not None
    batch = _batch_or_fail(daemon, id)
    data = _batch_dict(batch, daemon.journal.counts().get(batch.id, {}))
    data["tasks"] = [_task_dict(t) for t in daemon.journal.tasks(batch.id)]
    return data


def pause(daemon: Controlled, now: float) -> dict[str, Any]:
    daemon.pause()
    return {"paused": True}


def resume(daemon: Controlled, now: float) -> dict[str, Any]:
    daemon.resume(now)
    return {"paused": False}


def drain(daemon: Controlled, now: float) -> dict[str, Any]:
    daemon.drain()
    return {"paused": True, "draining": True}


def retry(
    daemon: Controlled, now: float, id: object = None, failed: object = False
) -> dict[str, Any]:
    """Re-run one batch's final POs, or with ``failed`` every FAILED or PARTIAL PO.

    Only ``failed`` reaches every batch: an id that is blank, not a string or not a known
    batch is refused, never taken for "all".
    """
    assert daemon.journal is not None
    if not isinstance(failed, bool):
        raise CommandFailed("BAD_REQUEST", "failed must be true or false")
    if id is None:
        if not failed:
            raise CommandFailed("BAD_REQUEST", "give a batch id or --failed")
        count = daemon.journal.requeue(batch_id=None, failed_only=True, now=now)
    else:
        batch_id = _batch_or_fail(daemon, id).id
        count = daemon.journal.requeue(batch_id=batch_id, failed_only=failed, now=now)
    log.info("requeued %d PO(s) for a re-run", count)
    return {"requeued": count}


def cancel(daemon: Controlled, now: float, id: str) -> dict[str, Any]:
    assert daemon.journal is not None
    batch = _batch_or_fail(daemon, id)
    count = daemon.journal.cancel_batch(batch.id, now)
    log.info("cancelled batch %s (%d PO(s) not started)", batch.id, count)
    return {"cancelled": count, "batch": batch.id}


def stop(daemon: Controlled, now: float) -> dict[str, Any]:
    daemon.request_stop(now)
    return {"stopping": True}


def paths(daemon: Controlled, now: float) -> dict[str, str]:
    paths = daemon.config.paths
    return {
        "inbox": str(paths.inbox),
        "outbox": str(paths.outbox),
        "downloads": str(paths.downloads),
        "state": str(paths.state),
    }


def profile_updated(daemon: Controlled, now: float) -> dict[str, Any]:
    daemon.base_profile_updated(now)
    return {"ok": True}


def _batch_or_fail(daemon: Controlled, batch_id: object) -> Any:
    assert daemon.journal is not None
    if not isinstance(batch_id, str) or not batch_id.strip():
        raise CommandFailed("BAD_REQUEST", f"not a batch id: {_shown(batch_id)}")
    batch = daemon.journal.batch(batch_id)
    if batch is None:
        raise CommandFailed("NO_SUCH_BATCH", f"no batch {batch_id!r}")
    return batch


def _shown(value: object) -> str:
    """A client's value in a message, short whatever it is (it may nest deep or run long)."""
    if isinstance(value, str):
        return repr(value[:40])
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)[:40]
    return f"a JSON {'list' if isinstance(value, list) else 'object'}"


def _batch_dict(batch: Any, counts: dict[str, int]) -> dict[str, Any]:
    total = sum(counts.values())
    done = sum(n for state, n in counts.items() if TaskState(state).final)
    return {
        "id": batch.id,
        "name": batch.name,
        "priority": batch.priority,
        "state": getattr(batch.state, "value", batch.state),
        "total": total,
        "done": done,
        "counts": counts,
        "created_at": batch.created_at,
        "finished_at": batch.finished_at,
        "reports": list(batch.report_paths or ()),
    }


def _task_dict(task: Any) -> dict[str, Any]:
    return {
        "id": task.id,
        "po": f"PO{task.po_digits}",
        "state": task.state.value,
        "attempts": task.attempts,
        "supplier": task.supplier,
        "found": task.found,
        "downloaded": task.downloaded,
        "folder": task.folder,
        "reason": task.reason,
        "last_processed": task.last_processed,
    }


HANDLERS: dict[str, Callable[..., Any]] = {
    "batches": batches,
    "batch": batch,
    "pause": pause,
    "resume": resume,
    "drain": drain,
    "retry": retry,
    "cancel": cancel,
    "stop": stop,
    "paths": paths,
    "profile_updated": profile_updated,
}
