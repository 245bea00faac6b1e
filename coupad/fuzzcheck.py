"""`python -m coupad.fuzzcheck`: generated POs through the real engine, checked from outside.

A dev tool beside :mod:`coupad.demo`. It draws POs from a seed (:mod:`coupad.sim.fuzz`),
serves them from an in-process simulator, and runs them through the real engine with real
Chromium and the retry loop of `coupad fetch` (:class:`coupad.fetch.FetchLoop`). Then it judges
only what a user would see: the downloads folder must hold exactly one final folder
``PO<digits>_<STATUS>`` per PO, with the status the simulator's truth expects, the expected
files (as a multiset of size and sha256; requisition files when the config fetches them)
and nothing else — but a PDF the manifest lists as derived from one of the expected Outlook
mails (the daemon's ``downloads.msg_to_pdf``) — and a manifest.json that lists each file
with its sha256. Every mismatch
is printed with the seed, index, PO number, what differed and the command that replays just
that PO. Exit status 0 when everything matched, 1 otherwise.

Example::

    python -m coupad.fuzzcheck --seed 1234 --count 200 --tabs 3
    python -m coupad.fuzzcheck --seed 1234 --only 17 --keep /tmp/fuzz-17
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from coupad import logs
from coupad.browser import Browser, BrowserSpec
from coupad.config import Config, load, write_toml
from coupad.engine import Engine
from coupad.fetch import FetchLoop
from coupad.ponumber import PoNumber
from coupad.sim import fuzz
from coupad.sim.testing import SimHandle, sim_server

MANIFEST = "manifest.json"
_FOLDER = re.compile(r"^PO(\d+)(?:(__WORK)|_([A-Z_]+))$")


@dataclass(frozen=True)
class ExpectedFile:
    """One file a PO's folder must hold."""

    name: str
    size: int
    sha256: str
    source: str  # "po" | "requisition"


@dataclass(frozen=True)
class Expected:
    """What a correct client leaves on disk for one PO, from the simulator's truth."""

    index: int
    digits: str
    status: str
    files: tuple[ExpectedFile, ...]

    @classmethod
    def from_truth(cls, index: int, truth: dict[str, Any]) -> Expected:
        files = tuple(
            ExpectedFile(f["name"], int(f["size"]), str(f["sha256"]), str(f["source"]))
            for f in truth["expected_files"]
        )
        return cls(index, str(truth["digits"]), str(truth["expected_status"]), files)


@dataclass
class Mismatch:
    """Everything that differed for one PO (index None: something no PO accounts for)."""

    index: int | None
    digits: str | None
    problems: list[str] = field(default_factory=list)


def check(downloads: Path, expected: Sequence[Expected]) -> list[Mismatch]:
    """Compare the downloads folder with what each PO should have left there."""
    folders: dict[str, list[Path]] = {}
    stray = Mismatch(None, None)
    for child in sorted(downloads.iterdir()) if downloads.is_dir() else []:
        match = _FOLDER.match(child.name)
        if match and child.is_dir() and not child.is_symlink():
            folders.setdefault(match.group(1), []).append(child)
        else:
            stray.problems.append(f"unexpected {'folder' if child.is_dir() else 'file'} "
                                  f"{child.name!r} in the downloads folder")
    mismatches = []
    known = set()
    for want in expected:
        known.add(want.digits)
        problems = _check_po(want, folders.get(want.digits, []))
        if problems:
            mismatches.append(Mismatch(want.index, want.digits, problems))
    for digits in sorted(set(folders) - known):
        names = ", ".join(p.name for p in folders[digits])
        stray.problems.append(f"folder(s) of a PO that was not asked for: {names}")
    if stray.problems:
        mismatches.append(stray)
    return mismatches


def _check_po(want: Expected, found: list[Path]) -> list[str]:
    if not found:
        return [f"no folder PO{want.digits}_{want.status} (no folder of this PO at all)"]
    if len(found) > 1:
        return [f"{len(found)} folders instead of one: {', '.join(p.name for p in found)}"]
    folder = found[0]
    match = _FOLDER.match(folder.name)
    assert match is not None
    problems = []
    if match.group(2):
        problems.append(f"left unfinished as {folder.name}; expected PO{want.digits}_{want.status}")
    elif match.group(3) != want.status:
        problems.append(f"status {match.group(3)}, expected {want.status}")
    on_disk: dict[str, tuple[int, str]] = {}
    for child in sorted(folder.iterdir()):
        if child.name == MANIFEST:
            continue
        if not child.is_file() or child.is_symlink():
            problems.append(f"unexpected {'folder' if child.is_dir() else 'entry'} {child.name!r}")
            continue
        on_disk[child.name] = (child.stat().st_size, _sha256(child))
    derived = _pdfs_of_mails(folder / MANIFEST, want.files, on_disk)
    problems += _compare_files(want.files,
                               {n: v for n, v in on_disk.items() if n not in derived})
    problems += _check_manifest(folder / MANIFEST, on_disk)
    return problems


def _pdfs_of_mails(path: Path, expected: Sequence[ExpectedFile],
                   on_disk: dict[str, tuple[int, str]]) -> set[str]:
    """Files the manifest lists as derived from a file on disk that is an expected Outlook
    mail: PDFs coupad made beside them, allowed besides the expected files (nothing else is;
    whether the manifest tells their size and sha256 right is checked with every file)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    mails = {(f.size, f.sha256) for f in expected if f.name.lower().endswith(".msg")}
    allowed = set()
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        name, source = entry.get("name"), entry.get("derived_from")
        if isinstance(name, str) and isinstance(source, str) and name in on_disk \
                and on_disk.get(source) in mails:
            allowed.add(name)
    return allowed


def _compare_files(expected: Sequence[ExpectedFile], on_disk: dict[str, tuple[int, str]]) -> list[str]:
    """The files as a multiset of (size, sha256): what is missing and what is extra."""
    wanted = Counter((f.size, f.sha256) for f in expected)
    have = Counter(on_disk.values())
    problems = []
    missing = wanted - have
    for f in expected:
        if missing[(f.size, f.sha256)] > 0:
            missing[(f.size, f.sha256)] -= 1
            problems.append(f"missing {f.source} file {f.name!r} ({f.size} bytes, "
                            f"sha256 {f.sha256[:12]}…)")
    extra = have - wanted
    for name, key in on_disk.items():
        if extra[key] > 0:
            extra[key] -= 1
            known = [f for f in expected if f.sha256 == key[1]]
            what = "a second copy of an expected file" if known else "not an expected file"
            problems.append(f"extra file {name!r} ({key[0]} bytes, sha256 {key[1][:12]}…): {what}")
    return problems


def _check_manifest(path: Path, on_disk: dict[str, tuple[int, str]]) -> list[str]:
    if not path.exists():
        return ["files on disk but no manifest.json"] if on_disk else []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        entries = document["files"]
        listed = [(str(e["name"]), int(e["size"]), str(e["sha256"])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"manifest.json is unreadable: {exc}"]
    problems = []
    names = Counter(name for name, _, _ in listed)
    for name, size, sha in listed:
        if name not in on_disk:
            problems.append(f"manifest.json lists {name!r}, which is not in the folder")
        elif on_disk[name] != (size, sha):
            problems.append(f"manifest.json says {name!r} is {size} bytes, sha256 {sha[:12]}…; "
                            f"on disk {on_disk[name][0]} bytes, sha256 {on_disk[name][1][:12]}…")
    for name in on_disk:
        if names[name] == 0:
            problems.append(f"{name!r} is not listed in manifest.json")
    problems += [f"manifest.json lists {name!r} {n} times" for name, n in names.items() if n > 1]
    return problems


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---- running ------------------------------------------------------------------------------


@dataclass
class FuzzRun:
    """One fuzz run: what was expected, what differed, how long it took."""

    generated: fuzz.Generated
    expected: list[Expected]
    mismatches: list[Mismatch]
    seconds: float
    fetch_output: str


class _Lines(io.StringIO):
    """Keeps the fetch loop's lines, and echoes them as they come when asked to."""

    def __init__(self, echo: TextIO | None) -> None:
        super().__init__()
        self.echo = echo

    def write(self, text: str) -> int:
        if self.echo is not None:
            self.echo.write(text)
            self.echo.flush()
        return super().write(text)


def run(
    generated: fuzz.Generated, work: Path, tabs: int = 3, echo: TextIO | None = None
) -> FuzzRun:
    """Serve the generated POs, run them through the engine under ``work``, check the result;
    the fetch loop's line per PO goes to ``echo`` too, as it is printed."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "scenario.json").write_text(
        json.dumps(generated.scenario, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    started = time.monotonic()
    output = _Lines(echo)
    with sim_server(catalogue=generated.catalogue()) as sim:
        config = _config(work, sim, tabs)
        numbers = [PoNumber(po.digits) for po in generated.pos]
        with _engine(config, work, tabs) as engine, contextlib.redirect_stdout(output):
            FetchLoop(config, engine, numbers).run()
        mode = config.coupa.requisition_attachments
        expected = [
            Expected.from_truth(index, sim.truth(po.digits, requisition_attachments=mode))
            for index, po in zip(generated.indexes, generated.pos, strict=True)
        ]
    (work / "fetch.log").write_text(output.getvalue(), encoding="utf-8")
    mismatches = check(config.paths.downloads, expected)
    return FuzzRun(generated, expected, mismatches, time.monotonic() - started, output.getvalue())


def _config(work: Path, sim: SimHandle, tabs: int) -> Config:
    secret = work / "password"
    secret.write_text(sim.password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    path = write_toml(work / "coupad.toml", {
        "coupa": {
            "base_url": sim.base_url,
            "sign_in": "form",
            "username": sim.username,
            "password_file": str(secret),
            "page_timeout": 30.0,
            "download_timeout": 60.0,
        },
        "paths": {"downloads": str(work / "downloads"), "state": str(work / "state")},
        "pool": {"tabs_per_worker": tabs},
        # Throttled and failed POs come back quickly; the waits still grow and honour
        # Retry-After up to retry_max_seconds.
        "tasks": {"retry_base_seconds": 0.2, "retry_max_seconds": 1.5, "po_timeout": 120.0},
    })
    return load(path, env={})


@contextlib.contextmanager
def _engine(config: Config, work: Path, tabs: int) -> Iterator[Engine]:
    profile = work / "profile"
    shutil.rmtree(profile, ignore_errors=True)
    spec = BrowserSpec.of(config, profile, work / "browser-downloads")
    engine = Engine(config, browser_factory=lambda: Browser.start(spec), tabs=tabs)
    try:
        engine.start()
        yield engine
    finally:
        engine.close()


# ---- reporting ----------------------------------------------------------------------------


def replay_command(seed: int, index: int) -> str:
    return f"python -m coupad.fuzzcheck --seed {seed} --only {index}"


def report(outcome: FuzzRun) -> str:
    """Every mismatch with its replay command, the features that failed, the summary line."""
    generated = outcome.generated
    lines = []
    for mismatch in outcome.mismatches:
        if mismatch.digits is None:
            lines.append(f"MISMATCH seed {generated.seed}, not tied to one PO:")
        else:
            assert mismatch.index is not None
            shown = ", ".join(sorted(generated.features(mismatch.digits))) or "-"
            lines.append(f"MISMATCH seed {generated.seed} index {mismatch.index} "
                         f"PO{mismatch.digits} ({shown}):")
        lines.extend(f"  - {problem}" for problem in mismatch.problems)
        if mismatch.index is not None:
            lines.append(f"  replay: {replay_command(generated.seed, mismatch.index)}")
    failed = [m.digits for m in outcome.mismatches if m.digits is not None]
    if failed:
        every = fuzz.feature_counts(generated)
        bad = fuzz.feature_counts(generated, failed)
        rates = sorted(((bad[f] / every[f], f) for f in fuzz.FEATURES if bad[f]), reverse=True)
        lines.append("features of mismatched POs (mismatched/with feature): " + ", ".join(
            f"{name} {bad[name]}/{every[name]}" for _, name in rates
        ))
    lines.append(f"fuzz: {len(generated.pos)} POs, seed {generated.seed}, "
                 f"{len(outcome.mismatches)} mismatches ({outcome.seconds:.1f} s)")
    return "\n".join(lines)


def _index(text: str) -> int:
    value = int(text) if text.isascii() and text.isdigit() else -1
    if not 0 <= value <= fuzz.MAX_INDEX:
        raise argparse.ArgumentTypeError(f"{text!r} is not an index (0-{fuzz.MAX_INDEX})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m coupad.fuzzcheck",
        description="Run seeded, generated POs through the real engine and check the "
                    "downloads folder against the simulator's truth.",
        epilog="example: python -m coupad.fuzzcheck --seed 1234 --count 200 --tabs 3",
    )
    parser.add_argument("--seed", type=int, required=True, help="what the POs are drawn from")
    parser.add_argument("--count", type=int, default=200, help="POs 0..COUNT-1 (default 200)")
    parser.add_argument("--tabs", type=int, default=3, help="POs in flight at once (default 3)")
    parser.add_argument("--only", type=_index, action="append", metavar="INDEX",
                        help="just this PO of the seed (repeatable); --count is then ignored")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it: downloads, scenario.json, fetch.log")
    parser.add_argument("--verbose", action="store_true", help="log the engine's steps")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.tabs < 1 or not 0 <= args.count <= fuzz.MAX_INDEX + 1:
        print("fuzzcheck: --tabs must be at least 1 and --count 0 to "
              f"{fuzz.MAX_INDEX + 1}", file=sys.stderr)
        return 2
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        # Folders of an earlier run would be reopened by the engine and judged again.
        print(f"fuzzcheck: --keep {args.keep} is not empty; give a new folder", file=sys.stderr)
        return 2
    logs.setup("info" if args.verbose else "warning")
    if args.only:
        generated = fuzz.generate_only(args.seed, args.only)
    else:
        generated = fuzz.generate(args.seed, args.count)
    print(f"fuzz: seed {args.seed}, {len(generated.pos)} POs, {args.tabs} tabs", flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="coupad-fuzz-"))
    try:
        outcome = run(generated, work, args.tabs, echo=sys.stdout)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(report(outcome), flush=True)
    if args.keep is not None:
        print(f"kept in {work} (scenario.json replays in `coupad sim --scenario`)")
    return 1 if outcome.mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
