import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import corpus
from coupad.errors import InputError
from coupad.inbox import Inbox, InboxFile, is_candidate
from coupad.intake import parse_file
from util import wait_until

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def inboxes(tmp_path):
    """Start real inboxes on tmp_path, and stop every one of them afterwards."""
    started: list[Inbox] = []

    def make(quiet: float = 0.2, polling: bool = False) -> Inbox:
        inbox = Inbox(tmp_path / "inbox", quiet_seconds=quiet, polling=polling)
        started.append(inbox)
        inbox.start()
        return inbox

    yield make
    for inbox in started:
        inbox.stop()


def collect(inbox: Inbox, until, timeout: float = 15.0, seen=None) -> list[InboxFile]:
    """Run passes as the daemon does until ``until(all files returned so far)`` holds."""
    got: list[InboxFile] = [] if seen is None else seen

    def step() -> bool:
        got.extend(inbox.ready(time.time()))
        return bool(until(got))

    wait_until(step, timeout=timeout, interval=0.02, what="inbox files")
    return got


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def names(files: list[InboxFile]) -> list[str]:
    return sorted(f.path.name for f in files)


def named(name: str):
    return lambda got: any(f.path.name == name for f in got)


def daemon_pass(inbox: Inbox, outcomes: dict[str, str]) -> None:
    """What the daemon does with each ready file: parse, then accept or reject."""
    for f in inbox.ready(time.time()):
        try:
            parsed = parse_file(f.path, max_rows=corpus.MAX_ROWS)
        except InputError as exc:
            outcomes[f.path.name] = f"rejected as {inbox.reject(f, str(exc)).name}: {exc}"
        else:
            batch_id = "b" + parsed.content_sha256[:8]
            outcomes[f.path.name] = "accepted as " + inbox.accept(f, batch_id).name


@pytest.mark.parametrize(
    "name, candidate",
    [("orders.csv", True), ("ORDERS.XLSX", True), ("März 2024 ..x.csv", True),
     ("~$orders.xlsx", False), (".~lock.orders.csv#", False), ("orders.csv.part", False),
     ("orders.csv.tmp", False), ("orders.xlsx.crdownload", False), (".orders.csv", False),
     (".csv", False), ("orders.csv~", False), ("orders.txt", False), ("orders.xls", False),
     ("csv", False), ("a.csv", True), ("b.xlsx", True), (".xlsx", False)],
)
def test_is_candidate(name, candidate):
    # Regression: one-letter names (a.csv) were taken for bare extensions and never read.
    assert is_candidate(Path("/inbox") / name) is candidate


def test_files_present_at_start_are_picked_up_with_their_priority(tmp_path, inboxes):
    root = tmp_path / "inbox"
    for folder, name in (("", "plain.csv"), ("high", "urgent.xlsx"), ("low", "later.csv")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(corpus.GOOD_CSV)
    inbox = inboxes()
    got = collect(inbox, lambda got: len(got) == 3)
    assert {f.path.name: f.priority for f in got} == {
        "plain.csv": None, "urgent.xlsx": "high", "later.csv": "low"}
    assert all(f.path.parent.parent in (root, root.parent) for f in got)
    for folder in ("high", "low", "accepted", "rejected"):
        assert (root / folder).is_dir()


def test_three_files_dropped_at_once_are_three_ready_files(tmp_path, inboxes):
    inbox = inboxes()
    for n in range(3):
        (tmp_path / "inbox" / f"drop{n}.csv").write_bytes(corpus.GOOD_CSV)
    got = collect(inbox, lambda got: len(got) >= 3)
    assert names(got) == ["drop0.csv", "drop1.csv", "drop2.csv"]


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_a_file_written_slowly_in_pieces_is_returned_once_and_complete(
    tmp_path, inboxes, polling
):
    inbox = inboxes(quiet=0.5, polling=polling)
    path = tmp_path / "inbox" / "slow.csv"
    pieces = [b"PO_NUMBER,Note\r\n"] + [f"1526298{n},piece {n}\r\n".encode() for n in range(4)]
    complete = b"".join(pieces)
    finished = threading.Event()

    def write_slowly() -> None:
        with path.open("wb") as stream:
            for piece in pieces:
                stream.write(piece)
                stream.flush()
                time.sleep(0.3)  # the scenario: a slow writer, ~1.5 s in all
        finished.set()

    writer = threading.Thread(target=write_slowly)
    contents: list[bytes] = []
    writer.start()
    try:
        got: list[InboxFile] = []

        def read_what_is_handed_out(files: list[InboxFile]) -> bool:
            while len(contents) < len(files):
                contents.append(files[len(contents)].path.read_bytes())
            return bool(files)

        collect(inbox, read_what_is_handed_out, seen=got)
    finally:
        writer.join(timeout=10)
    assert finished.is_set()
    assert contents == [complete]
    # More passes, until a later file shows up: the slow one is not handed out twice.
    (tmp_path / "inbox" / "after.csv").write_bytes(corpus.GOOD_CSV)
    collect(inbox, named("after.csv"), seen=got)
    assert names(got) == ["after.csv", "slow.csv"]


def test_polling_waits_the_quiet_period_after_the_last_change(tmp_path, inboxes):
    inbox = inboxes(quiet=0.6, polling=True)
    path = tmp_path / "inbox" / "share.csv"
    path.write_bytes(corpus.GOOD_CSV)
    written = time.time()
    got = collect(inbox, named("share.csv"))
    assert time.time() - written >= 0.6
    assert got[0].path == path


def test_close_after_write_makes_a_file_ready_before_the_quiet_period(tmp_path, inboxes):
    inbox = inboxes(quiet=3600)
    inbox.ready(time.time())
    (tmp_path / "inbox" / "copied.csv").write_bytes(corpus.GOOD_CSV)  # open, write, close
    got = collect(inbox, named("copied.csv"), timeout=10)
    assert got[0].priority is None


def test_a_file_renamed_into_the_inbox_is_ready_before_the_quiet_period(tmp_path, inboxes):
    inbox = inboxes(quiet=3600)
    inbox.ready(time.time())
    hidden = tmp_path / "inbox" / ".submitted.csv.1a2b.tmp"  # what `coupactl submit` writes
    hidden.write_bytes(corpus.GOOD_CSV)
    os.replace(hidden, tmp_path / "inbox" / "submitted.csv")
    got = collect(inbox, named("submitted.csv"), timeout=10)
    assert sha256(got[0].path) == hashlib.sha256(corpus.GOOD_CSV).hexdigest()


def test_temporary_lock_hidden_linked_and_nested_files_are_ignored(tmp_path, inboxes):
    root = tmp_path / "inbox"
    inbox = inboxes()
    for case in corpus.CASES:
        if case.ignored:
            corpus.write(case, root)
    (root / "folder.csv").mkdir()
    (root / "nested").mkdir()
    (root / "nested" / "deep.csv").write_bytes(corpus.GOOD_CSV)
    outside = tmp_path / "outside.csv"
    outside.write_bytes(corpus.GOOD_CSV)
    (root / "link.csv").symlink_to(outside)
    (root / "accepted" / "old.b1.csv").write_bytes(corpus.GOOD_CSV)
    (root / "rejected" / "bad.csv").write_bytes(b"")
    (root / "good.csv").write_bytes(corpus.GOOD_CSV)
    got = collect(inbox, named("good.csv"))
    (root / "later.csv").write_bytes(corpus.GOOD_CSV)
    collect(inbox, named("later.csv"), seen=got)
    assert names(got) == ["good.csv", "later.csv"]
    assert all((root / c.name).exists() for c in corpus.CASES if c.ignored)
    assert outside.read_bytes() == corpus.GOOD_CSV and (root / "link.csv").is_symlink()


def test_accept_moves_with_the_batch_id_and_never_overwrites(tmp_path, inboxes):
    root = tmp_path / "inbox"
    inbox = inboxes()
    (root / "accepted" / "orders.b7.csv").write_bytes(b"an earlier batch")
    (root / "high").joinpath("orders.csv").write_bytes(corpus.GOOD_CSV)
    [f] = collect(inbox, lambda got: got)
    target = inbox.accept(f, "b7")
    assert target == root / "accepted" / "orders.b7 (2).csv"
    assert target.read_bytes() == corpus.GOOD_CSV
    assert (root / "accepted" / "orders.b7.csv").read_bytes() == b"an earlier batch"
    assert not f.path.exists()


def test_reject_moves_beside_a_reason_and_never_overwrites(tmp_path, inboxes):
    root = tmp_path / "inbox"
    inbox = inboxes()
    (root / "rejected" / "orders.reason.txt").write_text("an older reason")
    (root / "orders.csv").write_bytes(b"first")
    [first] = collect(inbox, lambda got: got)
    assert inbox.reject(first, "the file is empty") == root / "rejected" / "orders (2).csv"
    (root / "orders.csv").write_bytes(b"second")
    [second] = collect(inbox, lambda got: got)
    assert inbox.reject(second, "no PO number column") == root / "rejected" / "orders (3).csv"
    assert (root / "rejected" / "orders.reason.txt").read_text() == "an older reason"
    reason = (root / "rejected" / "orders (2).reason.txt").read_text()
    assert reason.startswith("orders.csv was not read: the file is empty.\n")
    assert "no PO number column" in (root / "rejected" / "orders (3).reason.txt").read_text()
    assert (root / "rejected" / "orders (3).csv").read_bytes() == b"second"
    assert not any(p.name.endswith(".tmp") for p in (root / "rejected").iterdir())


def test_a_very_long_name_still_fits_when_moved(tmp_path, inboxes):
    root = tmp_path / "inbox"
    inbox = inboxes()
    name = "ä" * 125 + ".csv"  # 254 bytes
    (root / name).write_bytes(corpus.GOOD_CSV)
    [f] = collect(inbox, lambda got: got)
    target = inbox.accept(f, "batch-0123456789")
    assert target.parent == root / "accepted" and target.name.endswith("ä.batch-0123456789.csv")
    assert len(os.fsencode(target.name)) <= 255 and target.read_bytes() == corpus.GOOD_CSV


def test_a_file_removed_while_waiting_or_before_the_move_is_no_error(tmp_path, inboxes):
    root = tmp_path / "inbox"
    inbox = inboxes(quiet=1.0)
    # Held open, so no close-after-write can mark it complete before the quiet time.
    with open(root / "gone.csv", "wb") as writing:
        writing.write(corpus.GOOD_CSV)
        writing.flush()
        assert inbox.ready(time.time()) == []
        (root / "gone.csv").unlink()
    (root / "taken.csv").write_bytes(corpus.GOOD_CSV)
    got = collect(inbox, named("taken.csv"))
    (root / "taken.csv").unlink()
    assert inbox.reject(got[0], "whatever") == got[0].path
    assert list((root / "rejected").iterdir()) == []
    (root / "later.csv").write_bytes(corpus.GOOD_CSV)
    collect(inbox, named("later.csv"), seen=got)
    assert names(got) == ["later.csv", "taken.csv"]


def test_a_handed_out_file_comes_back_only_when_it_changes(tmp_path, inboxes):
    root = tmp_path / "inbox"
    inbox = inboxes()
    (root / "kept.csv").write_bytes(corpus.GOOD_CSV)
    got = collect(inbox, named("kept.csv"))
    (root / "marker.csv").write_bytes(corpus.GOOD_CSV)
    collect(inbox, named("marker.csv"), seen=got)
    assert names(got) == ["kept.csv", "marker.csv"]
    (root / "kept.csv").write_bytes(corpus.GOOD_CSV + b"15262985,Beta\r\n")
    collect(inbox, lambda got: names(got).count("kept.csv") == 2, seen=got)


def test_a_file_that_cannot_be_moved_stays_and_is_not_handed_out_again(tmp_path, inboxes):
    root = tmp_path / "inbox"
    inbox = inboxes()
    (root / "rejected").rmdir()
    (root / "rejected").write_text("a file where the folder should be")
    (root / "stuck.csv").write_bytes(b"")
    [f] = collect(inbox, named("stuck.csv"))
    assert inbox.reject(f, "the file is empty") == f.path
    assert f.path.exists()
    got = [f]
    (root / "marker.csv").write_bytes(corpus.GOOD_CSV)
    collect(inbox, named("marker.csv"), seen=got)
    assert names(got) == ["marker.csv", "stuck.csv"]


def test_stop_then_start_again_finds_what_was_left(tmp_path, inboxes):
    first = inboxes()
    (tmp_path / "inbox" / "left.csv").write_bytes(corpus.GOOD_CSV)
    collect(first, named("left.csv"))
    first.stop()
    second = inboxes()
    assert names(collect(second, named("left.csv"))) == ["left.csv"]


@pytest.mark.timeout(120)
def test_hostile_corpus_gets_clear_outcomes_and_good_files_after_it_still_work(
    tmp_path, inboxes
):
    root = tmp_path / "inbox"
    inbox = inboxes(quiet=0.2)
    digests = {case.name: sha256(corpus.write(case, root)) for case in corpus.CASES}
    outcomes: dict[str, str] = {}
    expected = [c.name for c in corpus.CASES if not c.ignored]

    def handled(*names: str) -> bool:
        daemon_pass(inbox, outcomes)
        return all(name in outcomes for name in names)

    wait_until(lambda: handled(*expected), timeout=60, what="every corpus file handled")
    (root / "high" / "after-the-storm.csv").write_bytes(corpus.GOOD_CSV)
    wait_until(lambda: handled("after-the-storm.csv"), timeout=20,
               what="the good file after the corpus")
    assert outcomes["after-the-storm.csv"].startswith("accepted as after-the-storm.b")
    for case in corpus.CASES:
        if case.ignored:
            assert case.name not in outcomes and (root / case.name).exists()
        elif case.rejected:
            assert case.rejected in outcomes[case.name]
            moved = Path(outcomes[case.name].removeprefix("rejected as ").partition(": ")[0])
            assert sha256(root / "rejected" / moved) == digests[case.name]
            reason = (root / "rejected" / f"{moved.stem}.reason.txt").read_text(encoding="utf-8")
            assert case.rejected in reason
        else:
            assert outcomes[case.name].startswith("accepted as ")
            moved = root / "accepted" / outcomes[case.name].removeprefix("accepted as ")
            assert sha256(moved) == digests[case.name]
    leftovers = {p.name for p in root.iterdir() if p.is_file()}
    assert leftovers == {c.name for c in corpus.CASES if c.ignored}


NOBODY = 65534
UNREADABLE_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from coupad.errors import InputError
from coupad.inbox import Inbox
from coupad.intake import parse_file
inbox = Inbox(Path(sys.argv[1]), quiet_seconds=0.1)
inbox.start()
try:
    deadline = time.monotonic() + 20
    files = []
    while not files and time.monotonic() < deadline:
        files = inbox.ready(time.time())
        time.sleep(0.02)
    [f] = files
    try:
        parse_file(f.path, max_rows=10)
        print(json.dumps({"parsed": True}))
    except InputError as exc:
        print(json.dumps({"reason": str(exc), "moved": str(inbox.reject(f, str(exc)))}))
finally:
    inbox.stop()
"""


def test_a_file_the_service_user_cannot_read_is_rejected_with_the_reason():
    # The inbox runs as an unprivileged user, as under systemd: root would read any file.
    as_user = (["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
               if os.geteuid() == 0 else [])
    root = Path(tempfile.mkdtemp(prefix="coupad-inbox-"))
    try:
        root.chmod(0o777)
        secret = root / "private.csv"
        secret.write_bytes(corpus.GOOD_CSV)
        secret.chmod(0o600 if as_user else 0o000)
        result = subprocess.run(
            [*as_user, sys.executable, "-c", UNREADABLE_SCRIPT, str(root), str(REPO)],
            capture_output=True, text=True, timeout=40, cwd="/",
        )
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout)
        assert outcome == {"reason": "the file cannot be read: permission denied",
                           "moved": str(root / "rejected" / "private.csv")}
        reason = (root / "rejected" / "private.reason.txt").read_text()
        assert "permission denied" in reason
    finally:
        shutil.rmtree(root)
