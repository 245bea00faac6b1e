"""The tables of legal moves, checked pair by pair against the rules written out again here."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from coupad import states
from coupad.states import (
    BatchState,
    IllegalTransition,
    PdfState,
    TaskState,
    WorkerState,
    check,
    check_batch,
    check_pdf,
    check_worker,
)

T = TaskState
FINALS = [T.COMPLETED, T.PARTIAL, T.NO_ATTACHMENTS, T.NOT_FOUND, T.ACCESS_DENIED, T.FAILED,
          T.CANCELLED]

# The rules of the issue, spelled out independently of coupad.states so a change there fails.
LEGAL: set[tuple[TaskState, TaskState]] = {
    (T.QUEUED, T.LEASED),
    (T.QUEUED, T.CANCELLED),
    *((T.LEASED, final) for final in FINALS),
    (T.LEASED, T.RETRY_WAIT),
    (T.LEASED, T.AUTH_WAIT),
    (T.LEASED, T.QUEUED),
    (T.RETRY_WAIT, T.LEASED),
    (T.RETRY_WAIT, T.QUEUED),
    (T.RETRY_WAIT, T.CANCELLED),
    (T.AUTH_WAIT, T.QUEUED),
    (T.AUTH_WAIT, T.CANCELLED),
}
RERUN_ONLY: set[tuple[TaskState, TaskState]] = {(final, T.QUEUED) for final in FINALS}


def _name(pair: tuple[TaskState, TaskState]) -> str:
    return f"{pair[0].value.lower()}_to_{pair[1].value.lower()}"


ALL_PAIRS = list(itertools.product(TaskState, TaskState))
LEGAL_PAIRS = sorted(LEGAL, key=_name)
RERUN_PAIRS = sorted(RERUN_ONLY, key=_name)
ILLEGAL_PAIRS = [p for p in ALL_PAIRS if p not in LEGAL and p not in RERUN_ONLY]


def test_values_are_the_upper_case_names() -> None:
    for state in TaskState:
        assert state.value == state.name
        assert TaskState(state.name) is state
    for worker_state in WorkerState:
        assert worker_state.value == worker_state.name
    for batch_state in BatchState:
        assert batch_state.value == batch_state.name


def test_final_property_and_set() -> None:
    assert set(states.FINAL) == set(FINALS)
    assert states.NOT_FINAL == {T.QUEUED, T.LEASED, T.RETRY_WAIT, T.AUTH_WAIT}
    for state in TaskState:
        assert state.final == (state in FINALS)


def test_the_table_lists_every_state() -> None:
    assert set(states.TRANSITIONS) == set(TaskState)
    assert set(states.WORKER_TRANSITIONS) == set(WorkerState)
    assert set(states.BATCH_TRANSITIONS) == set(BatchState)


def test_pairs_cover_the_whole_table() -> None:
    assert len(LEGAL_PAIRS) + len(RERUN_PAIRS) + len(ILLEGAL_PAIRS) == len(TaskState) ** 2


@pytest.mark.parametrize("old,new", LEGAL_PAIRS, ids=[_name(p) for p in LEGAL_PAIRS])
def test_legal_task_move(old: TaskState, new: TaskState) -> None:
    check(old, new)
    check(old, new, rerun=True)  # a re-run request does not make a legal move illegal
    assert old in states.sources(new)


@pytest.mark.parametrize("old,new", RERUN_PAIRS, ids=[_name(p) for p in RERUN_PAIRS])
def test_final_to_queued_only_by_rerun(old: TaskState, new: TaskState) -> None:
    with pytest.raises(IllegalTransition, match="explicit re-run"):
        check(old, new)
    check(old, new, rerun=True)
    assert old not in states.sources(new)
    assert old in states.sources(new, rerun=True)


@pytest.mark.parametrize("old,new", ILLEGAL_PAIRS, ids=[_name(p) for p in ILLEGAL_PAIRS])
def test_illegal_task_move(old: TaskState, new: TaskState) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check(old, new)
    assert caught.value.old is old and caught.value.new is new
    assert f"{old.value} → {new.value}" in str(caught.value)
    with pytest.raises(IllegalTransition):
        check(old, new, rerun=True)
    assert old not in states.sources(new, rerun=True)


def test_same_state_moves_are_illegal() -> None:
    for state in TaskState:
        with pytest.raises(IllegalTransition):
            check(state, state, rerun=True)


def test_leased_to_retry_wait_and_back_to_leased_once_due() -> None:
    check(T.LEASED, T.RETRY_WAIT)
    check(T.RETRY_WAIT, T.LEASED)


def test_queued_to_completed_skips_the_lease_and_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        check(T.QUEUED, T.COMPLETED)


def test_auth_wait_to_leased_is_illegal_sign_in_first_requeues() -> None:
    with pytest.raises(IllegalTransition):
        check(T.AUTH_WAIT, T.LEASED)


W = WorkerState
WORKER_LEGAL: set[tuple[WorkerState, WorkerState]] = {
    (W.STOPPED, W.STARTING),
    (W.STARTING, W.READY), (W.STARTING, W.BACKOFF), (W.STARTING, W.STOPPED),
    (W.READY, W.BUSY), (W.READY, W.RECYCLING), (W.READY, W.BACKOFF), (W.READY, W.STOPPED),
    (W.BUSY, W.READY), (W.BUSY, W.RECYCLING), (W.BUSY, W.BACKOFF), (W.BUSY, W.STOPPED),
    (W.RECYCLING, W.STARTING), (W.RECYCLING, W.BACKOFF), (W.RECYCLING, W.STOPPED),
    (W.BACKOFF, W.STARTING), (W.BACKOFF, W.FATAL), (W.BACKOFF, W.STOPPED),
    (W.FATAL, W.STARTING), (W.FATAL, W.STOPPED),
}
WORKER_PAIRS = list(itertools.product(WorkerState, WorkerState))


@pytest.mark.parametrize(
    "old,new", WORKER_PAIRS, ids=[f"{o.value.lower()}_to_{n.value.lower()}" for o, n in WORKER_PAIRS]
)
def test_worker_move(old: WorkerState, new: WorkerState) -> None:
    if (old, new) in WORKER_LEGAL:
        check_worker(old, new)
    else:
        with pytest.raises(IllegalTransition):
            check_worker(old, new)


B = BatchState
BATCH_LEGAL = {(B.OPEN, B.DONE), (B.OPEN, B.CANCELLED), (B.DONE, B.OPEN), (B.CANCELLED, B.OPEN)}
BATCH_PAIRS = list(itertools.product(BatchState, BatchState))


@pytest.mark.parametrize(
    "old,new", BATCH_PAIRS, ids=[f"{o.value.lower()}_to_{n.value.lower()}" for o, n in BATCH_PAIRS]
)
def test_batch_move(old: BatchState, new: BatchState) -> None:
    if (old, new) in BATCH_LEGAL:
        check_batch(old, new)
    else:
        with pytest.raises(IllegalTransition):
            check_batch(old, new)


P = PdfState
PDF_LEGAL = {(P.PENDING, P.MADE), (P.PENDING, P.FAILED), (P.MADE, P.PENDING),
             (P.FAILED, P.PENDING)}
PDF_PAIRS = list(itertools.product(PdfState, PdfState))


@pytest.mark.parametrize(
    "old,new", PDF_PAIRS, ids=[f"{o.value.lower()}_to_{n.value.lower()}" for o, n in PDF_PAIRS]
)
def test_pdf_move(old: PdfState, new: PdfState) -> None:
    if (old, new) in PDF_LEGAL:
        check_pdf(old, new)
    else:
        with pytest.raises(IllegalTransition):
            check_pdf(old, new)


def test_states_imports_nothing_of_coupad_but_its_error_base() -> None:
    """The state tables stand alone; coupad.errors, itself importing nothing of coupad, gives
    IllegalTransition its base."""
    tree = ast.parse(Path(states.__file__).read_text(encoding="utf-8"))
    imported = [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert [name for name in imported if name.startswith("coupad")] == ["coupad.errors"]
    errors = ast.parse(Path(states.__file__).with_name("errors.py").read_text(encoding="utf-8"))
    assert not [node for node in ast.walk(errors)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("coupad")]
