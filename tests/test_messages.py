"""The daemon ↔ worker messages: every message survives the pipe, and nothing else gets through."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from coupad.messages import (
    Drain,
    Fatal,
    Heartbeat,
    Job,
    Launched,
    MessageError,
    Ready,
    Released,
    Result,
    Run,
    SignInRefused,
    Stop,
    Watching,
    decode,
    encode,
)
from coupad.records import FileRecord

EVERY = [
    Run(jobs=(Job(key="7", digits="15262984", deadline_s=900.0),
              Job(key="8", digits="15262985", deadline_s=30.5))),
    Run(jobs=()),
    Drain(),
    Stop(reason="shutting down"),
    Launched(pgid=4712),
    Ready(pid=4711, pgid=None, tabs=3),
    Ready(pid=4711, pgid=4712, tabs=3),
    Heartbeat(busy=("7", "8"), room=1),
    Watching(keys=("7",)),
    Watching(keys=()),
    Result(key="7", outcome="COMPLETED", reason="", supplier="ACME Corp", found=2, downloaded=2,
           names=("a.pdf", "b (2).pdf"), folder="/d/PO15262984_COMPLETED", url="https://x/o/1",
           timings={"page": 0.8, "total": 1.5}, retry_after=None,
           files=(FileRecord(name="a.pdf", original_name="a.pdf", size=3, sha256="ab" * 32,
                             source_url="https://x/attachment_file/1", source="po"),)),
    Result(key="8", outcome="THROTTLED", reason="429", supplier=None, found=0, downloaded=0,
           names=(), folder=None, url="", timings={}, retry_after=2.0),
    Released(key="8"),
    SignInRefused(why="Invalid email or password."),
    Fatal(why="Chromium is missing"),
]


@pytest.mark.parametrize("message", EVERY, ids=lambda m: type(m).__name__)
def test_every_message_comes_back_equal_through_the_pipe(message: Any) -> None:
    wire = pickle.loads(pickle.dumps(encode(message)))  # what multiprocessing does
    assert decode(wire) == message


def test_integers_are_accepted_where_seconds_are_expected() -> None:
    tag, fields = encode(Heartbeat(busy=(), room=0))
    assert decode(("result", {**encode(EVERY[-4])[1], "retry_after": 3})).retry_after == 3.0  # type: ignore[union-attr]
    assert decode((tag, fields)) == Heartbeat(busy=(), room=0)


@pytest.mark.parametrize("raw", [
    None, "ready", ("ready",), ("ready", {}, {}), ["ready", {}], (1, {}), ("ready", []),
    ("teleport", {}),
    ("ready", {"pid": 1, "pgid": None}),  # a field missing
    ("ready", {"pid": 1, "pgid": None, "tabs": 3, "extra": 1}),  # a field unknown
    ("ready", {"pid": "1", "pgid": None, "tabs": 3}),
    ("ready", {"pid": True, "pgid": None, "tabs": 3}),  # a bool is not a pid
    ("heartbeat", {"busy": "78", "room": 1}),
    ("heartbeat", {"busy": [7], "room": 1}),
    ("watching", {"keys": "78"}),
    ("watching", {"keys": [None]}),
    ("watching", {}),
    ("run", {"jobs": [{"key": "1", "digits": "1"}]}),
    ("run", {"jobs": [["1", "1", None, 1.0]]}),
    ("stop", {"reason": None}),
    ("result", {**encode(EVERY[-4])[1], "timings": {"page": "fast"}}),
    ("result", {**encode(EVERY[-4])[1], "files": [{"name": "a"}]}),
    ("result", {**encode(EVERY[-4])[1], "retry_after": "soon"}),
])
def test_anything_else_on_the_pipe_is_refused_with_a_reason(raw: Any) -> None:
    with pytest.raises(MessageError) as refused:
        decode(raw)
    assert str(refused.value)


def test_only_messages_are_encoded() -> None:
    with pytest.raises(MessageError):
        encode(Job(key="1", digits="1", deadline_s=1.0))  # type: ignore[arg-type]
