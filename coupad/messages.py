"""What the daemon and a worker process say to each other over their pipe: one dataclass per
message, encoded and decoded side by side.

On the pipe a message is a pair ``(tag, fields)`` of plain data; :func:`encode` makes it and
:func:`decode` checks it (the tag is known, every field is there with the right type) and
builds the message again, so neither side compares string literals or indexes tuples.

daemon → worker: :class:`Run`, :class:`Drain`, :class:`Stop`.
worker → daemon: :class:`Launched`, :class:`Ready`, :class:`Heartbeat`, :class:`Watching`, :class:`Result`,
:class:`Released`, :class:`SignInRefused`, :class:`Fatal`.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from coupad.errors import CoupadError
from coupad.plain import PlainError, from_plain, show, to_plain
from coupad.records import FileRecord


class MessageError(CoupadError):
    """Something on the pipe is not a message this version knows."""


@dataclass(frozen=True)
class Job:
    """One PO for a worker: the task id as its key, and its time budget."""

    key: str
    digits: str
    group: str | None
    deadline_s: float


# ---- daemon → worker -------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Start these POs."""

    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class Drain:
    """Take nothing new, finish what is in flight, then exit 0."""


@dataclass(frozen=True)
class Stop:
    """Abandon in-flight POs (each reported back as :class:`Released`), then exit 0."""

    reason: str


# ---- worker → daemon -------------------------------------------------------------------


@dataclass(frozen=True)
class Launched:
    """The browser's processes run (before any sign-in): the process group to kill with the
    worker, whatever state it dies in."""

    pgid: int


@dataclass(frozen=True)
class Ready:
    """The browser is up."""

    pid: int
    pgid: int | None
    tabs: int


@dataclass(frozen=True)
class Heartbeat:
    """Sent from the thread that drives the browser, so that a hung call silences it."""

    busy: tuple[str, ...]
    free: int
    # A browser on another machine: what it reports of its memory, in MB (its tabs' heaps).
    browser_mb: float | None = None


@dataclass(frozen=True)
class Watching:
    """The POs whose tabs now only watch their page for evidence (no page load, request or
    download of theirs in flight); sent whenever that set changes."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    """One PO's attempt ended; ``outcome`` is an engine outcome name."""

    key: str
    outcome: str
    reason: str
    supplier: str | None
    found: int
    downloaded: int
    names: tuple[str, ...]
    folder: str | None
    url: str
    timings: dict[str, float]
    retry_after: float | None
    files: tuple[FileRecord, ...] = field(default=())


@dataclass(frozen=True)
class Released:
    """An in-flight PO abandoned at a stop, not attempted."""

    key: str


@dataclass(frozen=True)
class SignInRefused:
    """Coupa refused the sign-in when the browser started; the worker exits."""

    why: str


@dataclass(frozen=True)
class Fatal:
    """The browser cannot start; the worker exits with its FATAL code."""

    why: str


ToWorker = Run | Drain | Stop
ToDaemon = Launched | Ready | Heartbeat | Watching | Result | Released | SignInRefused | Fatal
Message = ToWorker | ToDaemon
TO_WORKER: tuple[type, ...] = (Run, Drain, Stop)
TO_DAEMON: tuple[type, ...] = (Launched, Ready, Heartbeat, Watching, Result, Released, SignInRefused, Fatal)

_TAGS: dict[type, str] = {
    Run: "run", Drain: "drain", Stop: "stop",
    Launched: "launched", Ready: "ready", Heartbeat: "heartbeat", Watching: "watching", Result: "result",
    Released: "released", SignInRefused: "sign_in_refused", Fatal: "fatal",
}
_BY_TAG = {tag: kind for kind, tag in _TAGS.items()}


def encode(message: Message) -> tuple[str, dict[str, Any]]:
    """The message as plain data for the pipe."""
    tag = _TAGS.get(type(message))
    if tag is None:
        raise MessageError(f"not a message: {type(message).__name__}")
    return tag, to_plain(message)


def decode(raw: Any) -> Message:
    """The message a pair from the pipe stands for; MessageError for anything else."""
    if not (isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[0], str)
            and isinstance(raw[1], dict)):
        raise MessageError(f"not a (tag, fields) pair: {show(raw)}")
    kind = _BY_TAG.get(raw[0])
    if kind is None:
        raise MessageError(f"unknown message {show(raw[0])}")
    try:
        return typing.cast(Message, from_plain(kind, raw[1], raw[0]))
    except PlainError as exc:
        raise MessageError(str(exc)) from None
