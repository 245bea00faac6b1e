import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from coupad.folders import (
    MANIFEST,
    WORK_SUFFIX,
    FolderError,
    PoFolder,
    file_sha256,
    find_any,
    find_final,
    group_folder_name,
)
from coupad.ponumber import PoNumber
from coupad.states import TaskState

PO = PoNumber("15262984")


def staged(folder: PoFolder, data: bytes, label: str = "t") -> Path:
    path = folder.staging_dir(label) / "download.part"
    path.write_bytes(data)
    return path


def add(folder: PoFolder, name: str, data: bytes, key: str | None = None):
    return folder.add_file(
        staged(folder, data), name, f"http://coupa.test/attachments/{key or name}", "po", key or name
    )


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def read_manifest(folder_path: Path) -> dict:
    return json.loads((folder_path / MANIFEST).read_text(encoding="utf-8"))


def test_open_creates_the_work_folder(tmp_path):
    folder = PoFolder.open(tmp_path / "downloads", PO)
    assert folder.path == tmp_path / "downloads" / "PO15262984__WORK"
    assert folder.path.is_dir()
    assert folder.po == PO
    assert folder.entries == []
    assert list(folder.path.iterdir()) == []


def test_open_with_a_group_creates_it_under_the_safe_group_name(tmp_path):
    folder = PoFolder.open(tmp_path, PO, group="ACME / Müller: GmbH")
    assert folder.path == tmp_path / "ACME _ Müller_ GmbH" / "PO15262984__WORK"
    assert group_folder_name("..") == "attachment"
    assert group_folder_name("PO123456__WORK") != "PO123456__WORK"


def test_add_file_places_the_file_and_records_it(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    data = os.urandom(100_000)
    entry = add(folder, "Quote Müller.pdf", data, key="po:1")
    assert entry.name == "Quote Müller.pdf"
    assert entry.size == len(data)
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert (folder.path / entry.name).read_bytes() == data
    manifest = read_manifest(folder.path)
    assert manifest["po"] == "PO15262984"
    assert manifest["status"] is None
    assert manifest["files"] == [
        {
            "name": "Quote Müller.pdf",
            "original_name": "Quote Müller.pdf",
            "source_url": "http://coupa.test/attachments/po:1",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "source": "po",
            "key": "po:1",
        }
    ]
    assert folder.entry_for("po:1") == entry
    assert folder.entry_for("po:2") is None


def test_add_file_is_idempotent_by_key(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    first = add(folder, "a.pdf", b"one", key="k")
    again = staged(folder, b"two")
    second = folder.add_file(again, "a.pdf", "http://x/a", "po", "k")
    assert second == first
    assert not again.exists(), "the second download is discarded"
    assert (folder.path / "a.pdf").read_bytes() == b"one"
    assert len(read_manifest(folder.path)["files"]) == 1


def test_a_given_sha256_is_recorded(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    entry = folder.add_file(staged(folder, b"x"), "x.bin", "u", "po", "k", sha256="ab" * 32)
    assert entry.sha256 == "ab" * 32


def test_duplicate_names_become_numbered_ignoring_case(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    names = [
        add(folder, name, name.encode(), key=f"k{i}").name
        for i, name in enumerate(["quote.pdf", "Quote.PDF", "quote.pdf", "manifest.json"])
    ]
    assert names == ["quote.pdf", "Quote (2).PDF", "quote (3).pdf", "manifest (2).json"]
    manifest = read_manifest(folder.path)
    assert [f["name"] for f in manifest["files"]] == names
    assert (folder.path / "Quote (2).PDF").read_bytes() == b"Quote.PDF"


@pytest.mark.parametrize(
    "hostile",
    ["../../outside.txt", "/etc/passwd", "..", "x\x00y", "a" * 300 + ".pdf", "CON.txt", ".incoming"],
)
def test_hostile_names_stay_inside_the_folder(tmp_path, hostile):
    root = tmp_path / "downloads"
    folder = PoFolder.open(root, PO)
    entry = add(folder, hostile, b"data", key="k")
    assert (folder.path / entry.name).parent == folder.path
    assert (folder.path / entry.name).read_bytes() == b"data"
    assert entry.original_name == hostile
    assert all_files(tmp_path) == sorted(
        [f"downloads/PO15262984__WORK/{entry.name}", f"downloads/PO15262984__WORK/{MANIFEST}"]
    )


def test_file_from_another_disk_or_folder_is_moved_in(tmp_path):
    folder = PoFolder.open(tmp_path / "root", PO)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"payload")
    entry = folder.add_file(outside, "e.bin", "u", "po", "k")
    assert not outside.exists()
    assert (folder.path / entry.name).read_bytes() == b"payload"


def test_add_file_refuses_a_missing_file(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    with pytest.raises(FolderError):
        folder.add_file(tmp_path / "nope", "a.pdf", "u", "po", "k")


def test_reopen_reuses_the_work_folder_and_its_entries(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    entry = add(folder, "a.pdf", b"aaa", key="k1")
    reopened = PoFolder.open(tmp_path, PO)
    assert reopened.path == folder.path
    assert reopened.entries == [entry]
    assert reopened.entry_for("k1") == entry
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PO15262984__WORK"]


def test_reopen_drops_entries_whose_file_is_missing_or_truncated(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    add(folder, "keep.pdf", b"k" * 10, key="keep")
    add(folder, "gone.pdf", b"g" * 10, key="gone")
    add(folder, "short.pdf", b"s" * 10, key="short")
    (folder.path / "gone.pdf").unlink()
    (folder.path / "short.pdf").write_bytes(b"s" * 5)
    reopened = PoFolder.open(tmp_path, PO)
    assert [e.key for e in reopened.entries] == ["keep"]
    assert reopened.entry_for("short") is None
    assert [f["key"] for f in read_manifest(reopened.path)["files"]] == ["keep"]
    assert not (reopened.path / "short.pdf").exists(), "an unrecorded file is not left behind"
    # Downloading them again takes their names back (no "(2)").
    assert add(reopened, "short.pdf", b"s" * 10, key="short").name == "short.pdf"
    assert add(reopened, "gone.pdf", b"g" * 10, key="gone").name == "gone.pdf"


def test_entry_for_checks_the_disk_now(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    add(folder, "a.pdf", b"aaa", key="k")
    (folder.path / "a.pdf").write_bytes(b"a")
    assert folder.entry_for("k") is None
    entry = add(folder, "a.pdf", b"aaa", key="k")
    assert entry.name == "a.pdf" and entry.size == 3


def test_reopen_removes_staging_temp_and_unrecorded_files(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    add(folder, "a.pdf", b"aaa", key="k")
    staging = folder.staging_dir("browser")
    (staging / "quote.pdf.crdownload").write_bytes(b"partial")
    (folder.path / ".manifest.json.0123.tmp").write_text("{")
    (folder.path / "placed-but-not-recorded.pdf").write_bytes(b"crash between rename and manifest")
    reopened = PoFolder.open(tmp_path, PO)
    assert sorted(p.name for p in reopened.path.iterdir()) == ["a.pdf", MANIFEST]
    assert reopened.entry_for("k") is not None


def test_staging_dirs_are_unique_empty_and_inside(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    first = folder.staging_dir("../../x")
    second = folder.staging_dir("../../x")
    assert first != second
    for path in (first, second):
        assert path.is_dir() and list(path.iterdir()) == []
        assert folder.path in path.parents
        assert path.stat().st_dev == folder.path.stat().st_dev


def test_finalize_renames_once(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    work = folder.path
    add(folder, "a.pdf", b"aaa", key="k")
    folder.staging_dir("left over")
    final = folder.finalize("COMPLETED")
    assert final == tmp_path / "PO15262984_COMPLETED"
    assert not work.exists()
    assert folder.path == final
    assert sorted(p.name for p in final.iterdir()) == ["a.pdf", MANIFEST]
    manifest = read_manifest(final)
    assert manifest["status"] == "COMPLETED"
    assert manifest["finished_at"]
    assert [f["name"] for f in manifest["files"]] == ["a.pdf"]
    with pytest.raises(FolderError):
        folder.finalize("COMPLETED")
    with pytest.raises(FolderError):
        add(folder, "b.pdf", b"b", key="k2")
    assert find_final(tmp_path, PO) == final
    assert find_any(tmp_path, PO) == final


def test_finalize_without_files_leaves_an_empty_folder(tmp_path):
    folder = PoFolder.open(tmp_path, PO, group="Acme")
    final = folder.finalize(TaskState.NO_ATTACHMENTS)
    assert final == tmp_path / "Acme" / "PO15262984_NO_ATTACHMENTS"
    assert list(final.iterdir()) == []


@pytest.mark.parametrize("status", ["QUEUED", "LEASED", "RETRY_WAIT", "AUTH_WAIT", "bogus", "completed"])
def test_finalize_refuses_a_status_that_is_not_final(tmp_path, status):
    folder = PoFolder.open(tmp_path, PO)
    with pytest.raises(ValueError):
        folder.finalize(status)
    assert folder.path.name == "PO15262984" + WORK_SUFFIX


def test_a_final_folder_is_reopened_as_the_work_folder(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    entry = add(folder, "a.pdf", b"aaa", key="k")
    folder.finalize("PARTIAL")
    # The journal lost the outcome: the PO runs again and must reuse that folder.
    again = PoFolder.open(tmp_path, PO)
    assert again.path == tmp_path / "PO15262984__WORK"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PO15262984__WORK"]
    assert again.entry_for("k") == entry
    assert read_manifest(again.path)["status"] is None
    add(again, "b.pdf", b"bbb", key="k2")
    final = again.finalize("COMPLETED")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PO15262984_COMPLETED"]
    assert [f["name"] for f in read_manifest(final)["files"]] == ["a.pdf", "b.pdf"]


def test_never_two_folders_when_one_exists_in_another_group(tmp_path):
    first = PoFolder.open(tmp_path, PO, group="Acme")
    add(first, "a.pdf", b"aaa", key="k")
    first.finalize("FAILED")
    # Without a group the folder stays where it is.
    stay = PoFolder.open(tmp_path, PO)
    assert stay.path == tmp_path / "Acme" / "PO15262984__WORK"
    # With another group it moves there, files and all.
    moved = PoFolder.open(tmp_path, PO, group="Globex")
    assert moved.path == tmp_path / "Globex" / "PO15262984__WORK"
    assert moved.entry_for("k") is not None
    assert all_files(tmp_path) == ["Globex/PO15262984__WORK/a.pdf", f"Globex/PO15262984__WORK/{MANIFEST}"]
    assert find_any(tmp_path, PO) == moved.path
    assert find_final(tmp_path, PO) is None


def test_work_folder_is_preferred_when_several_exist(tmp_path):
    (tmp_path / "PO15262984_FAILED").mkdir()
    (tmp_path / "Acme" / "PO15262984__WORK").mkdir(parents=True)
    folder = PoFolder.open(tmp_path, PO)
    assert folder.path == tmp_path / "Acme" / "PO15262984__WORK"
    assert (tmp_path / "PO15262984_FAILED").is_dir(), "the other folder is left untouched"


def test_other_pos_are_not_confused(tmp_path):
    PoFolder.open(tmp_path, PoNumber("152629840")).finalize("COMPLETED")
    PoFolder.open(tmp_path, PoNumber("1526298"), group="x").finalize("COMPLETED")
    folder = PoFolder.open(tmp_path, PO)
    assert folder.path == tmp_path / "PO15262984__WORK"
    assert find_final(tmp_path, PO) is None


@pytest.mark.parametrize(
    "document",
    [
        "not json at all {",
        "[]",
        '{"files": "nope"}',
        '{"files": [{"name": "../outside.pdf", "original_name": "x", "source_url": "u",'
        ' "size": 3, "sha256": "' + "0" * 64 + '", "source": "po", "key": "k"}]}',
        '{"files": [{"name": "manifest.json", "original_name": "x", "source_url": "u",'
        ' "size": 3, "sha256": "' + "0" * 64 + '", "source": "po", "key": "k"}]}',
        '{"files": [{"name": "a.pdf", "original_name": "x", "source_url": "u",'
        ' "size": "3", "sha256": "' + "0" * 64 + '", "source": "po", "key": "k"}]}',
        '{"files": [{"name": "a.pdf", "original_name": "x", "source_url": "u",'
        ' "size": 3, "sha256": "nothex", "source": "po", "key": "k"}]}',
        '{"files": [42, null]}',
    ],
)
def test_a_tampered_manifest_is_not_trusted(tmp_path, document):
    work = tmp_path / "PO15262984__WORK"
    work.mkdir()
    (work / "a.pdf").write_bytes(b"aaa")
    (tmp_path / "outside.pdf").write_bytes(b"aaa")
    (work / MANIFEST).write_text(document)
    folder = PoFolder.open(tmp_path, PO)
    assert folder.entries == []
    assert sorted(p.name for p in folder.path.iterdir()) == []
    assert (tmp_path / "outside.pdf").read_bytes() == b"aaa", "nothing outside is touched"


def test_duplicate_entries_in_a_manifest_keep_the_first(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    add(folder, "a.pdf", b"aaa", key="k")
    manifest = read_manifest(folder.path)
    manifest["files"].append(dict(manifest["files"][0]))
    manifest["files"].append(dict(manifest["files"][0], key="other", name="A.PDF"))
    (folder.path / MANIFEST).write_text(json.dumps(manifest))
    reopened = PoFolder.open(tmp_path, PO)
    assert [e.key for e in reopened.entries] == ["k"]


def test_concurrent_add_file_from_threads(tmp_path):
    folder = PoFolder.open(tmp_path, PO)
    payloads = [os.urandom(50_000) for _ in range(16)]
    tmps = [staged(folder, data, label=str(i)) for i, data in enumerate(payloads)]
    barrier = threading.Barrier(len(tmps))

    def worker(i: int) -> None:
        barrier.wait()
        folder.add_file(tmps[i], "same name.pdf", f"u{i}", "po", f"k{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(tmps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    entries = PoFolder.open(tmp_path, PO).entries
    assert len(entries) == 16
    assert len({e.name for e in entries}) == 16
    for entry in entries:
        i = int(entry.key[1:])
        assert file_sha256(folder.path / entry.name) == hashlib.sha256(payloads[i]).hexdigest()


CRASHER = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path
    from coupad import folders
    from coupad.folders import PoFolder
    from coupad.ponumber import PoNumber

    def crash_on(owner, name, nth):
        # Die like kill -9 (no clean-up) on the nth call of owner.name.
        original = getattr(owner, name)
        calls = [0]
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] == nth:
                os._exit(9)
            return original(*args, **kwargs)
        setattr(owner, name, wrapper)

    if len(sys.argv) > 2:
        owners = {"PoFolder": PoFolder, "os": os, "folders": folders}
        crash_on(owners[sys.argv[2]], sys.argv[3], int(sys.argv[4]))
    root = Path(sys.argv[1])
    folder = PoFolder.open(root, PoNumber("15262984"))
    for i in range(10_000):
        key = f"k{i % 40}"
        if folder.entry_for(key):
            continue
        tmp = folder.staging_dir(key) / "part"
        tmp.write_bytes((key * 5000).encode())
        folder.add_file(tmp, f"file {i % 40}.bin", "u", "po", key)
        print(i, flush=True)
    folder.finalize("COMPLETED")
    print("done", flush=True)
    """
)


@pytest.mark.timeout(60)
def test_kill_9_at_any_moment_never_loses_a_listed_file_nor_duplicates(tmp_path):
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    root = tmp_path / "downloads"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    finished = False
    for round_ in range(12):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(root)], stdout=subprocess.PIPE, env=env, text=True
        )
        try:
            assert proc.stdout is not None
            # Let it place a few files, then kill it wherever it happens to be.
            for _ in range(1 + round_ % 3):
                line = proc.stdout.readline()
                if line.strip() == "done" or not line:
                    break
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        folders = list(root.iterdir())
        assert len(folders) == 1, f"exactly one folder for the PO, got {folders}"
        if folders[0].name == "PO15262984_COMPLETED":
            finished = True
            break
        folder = PoFolder.open(root, PO)
        names = {e.name for e in folder.entries}
        assert len(names) == len(folder.entries)
        for entry in folder.entries:
            data = (folder.path / entry.name).read_bytes()
            assert data == (entry.key * 5000).encode()
            assert hashlib.sha256(data).hexdigest() == entry.sha256
        on_disk = {p.name for p in folder.path.iterdir()} - {MANIFEST}
        assert on_disk == names, "no partial or unrecorded file survives a reopen"
        assert all("(2)" not in name for name in names), "no file was downloaded twice"
    if not finished:
        subprocess.run(
            [sys.executable, str(script), str(root)], capture_output=True, env=env, text=True,
            timeout=60, check=True,
        )
    final = root / "PO15262984_COMPLETED"
    assert [p.name for p in root.iterdir()] == [final.name]
    entries = read_manifest(final)["files"]
    assert sorted(e["key"] for e in entries) == sorted(f"k{i}" for i in range(40))
    assert all("(2)" not in e["name"] for e in entries)
    assert sorted(p.name for p in final.iterdir()) == sorted([MANIFEST] + [e["name"] for e in entries])


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "owner, function, nth, what",
    [
        ("PoFolder", "_write_manifest", 3, "file renamed into place, manifest not yet written"),
        ("os", "replace", 4, "second file placed, its manifest temp file not yet renamed"),
        ("os", "replace", 5, "third file still in staging, not yet moved into place"),
        ("folders", "_rename", 1, "final manifest written, folder not yet renamed"),
    ],
)
def test_crash_at_a_precise_moment_then_restart(tmp_path, owner, function, nth, what):
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    root = tmp_path / "downloads"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    crashed = subprocess.run(
        [sys.executable, str(script), str(root), owner, function, str(nth)],
        capture_output=True, env=env, text=True, timeout=60,
    )
    assert crashed.returncode == 9, crashed.stderr
    assert [p.name for p in root.iterdir()] == ["PO15262984__WORK"]
    before = PoFolder.open(root, PO)
    for entry in before.entries:
        assert (before.path / entry.name).read_bytes() == (entry.key * 5000).encode()
    assert {p.name for p in before.path.iterdir()} - {MANIFEST} == {e.name for e in before.entries}
    placed = {e.key: (before.path / e.name).stat().st_ino for e in before.entries}
    subprocess.run(
        [sys.executable, str(script), str(root)], capture_output=True, env=env, text=True,
        timeout=60, check=True,
    )
    final = root / "PO15262984_COMPLETED"
    assert [p.name for p in root.iterdir()] == [final.name], what
    entries = read_manifest(final)["files"]
    assert sorted(e["key"] for e in entries) == sorted(f"k{i}" for i in range(40))
    assert sorted(e["name"] for e in entries) == sorted(f"file {i}.bin" for i in range(40))
    for entry in entries:
        path = final / entry["name"]
        assert file_sha256(path) == entry["sha256"]
        if entry["key"] in placed:
            assert path.stat().st_ino == placed[entry["key"]], "a listed file is not fetched again"
