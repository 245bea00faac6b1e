"""`make bench`: every performance figure of coupad in one run, written side by side.

Starts two simulators as processes of their own (so their CPU is not counted as coupad's):
one with the realistic latency preset, one with none, both loaded with the scenario of
bench/scenarios.py. Then runs each part in turn, each against real daemons (`coupad run`
under bench/reaper.py), real Chromium and real `coupactl`:

    throughput  whole-daemon POs/min: one-shot, one warm tab, the pool; efficiency vs the limit
    overhead    CPU and wall seconds per PO and per stage at zero latency
    footprint   PSS per browser and per tab; the 2,000-PO soak with recycling
    scale       100,000-row ingest, `coupactl status --json` with 1,000,000 tasks, journal costs
    recovery    kill -9 + restart to the first PO running again; drop to first PO running
    latency     the latency-bound preset (0.8 s pages, lists 0.4 s later, a third click-only):
                pool 2x3 against its limit and one-shot; a plain Playwright script
                (bench/competitor.py) against coupad there and at zero latency
    mails       PDFs of Outlook mails: seconds per mail with a warm renderer, its PSS, and
                what the PDFs cost a daemon's batch

Writes bench/results/bench.json, bench/results/bench.md and bench/results/memory.svg.
Usage: ``python bench/bench.py [--quick] [--parts throughput,overhead,...]``
(``--quick``: small sizes, to check that everything works; its results go to a scratch
folder unless ``--results`` says otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import footprint
import fuzzpart
import grid
import latency
import mails
import overhead
import record
import recovery
import scale
import scenarios
import throughput
from kit import Context, load_average, log, marked, simulator

HERE = Path(__file__).resolve().parent
PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "throughput": throughput.run,
    "overhead": overhead.run,
    "footprint": footprint.run,
    "scale": scale.run,
    "recovery": recovery.run,
    "latency": latency.run,
    "grid": grid.run,
    "fuzz": fuzzpart.run,
    "mails": mails.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run")
    parser.add_argument("--results", type=Path, help="where to write (default bench/results; "
                        "with --quick a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)} (known: {', '.join(PARTS)})")
    results_dir = args.results or (Path(tempfile.mkdtemp(prefix="coupad-bench-results-"))
                                   if args.quick else HERE / "results")
    work = Path(tempfile.mkdtemp(prefix="coupad-bench-"))
    started = time.monotonic()
    machine = _machine(args.quick)
    log(f"work folder {work}; load average {machine['load_average_at_start']}")
    figures: dict[str, Any] = {}
    failures: list[str] = []
    try:
        scenario_file = work / "scenario.json"
        scenario_file.write_text(json.dumps(scenarios.scenario(
            mix_count=200, fixed_count=120, light_count=footprint.SOAK_POS,
            latency_count=latency.ZERO_POS_IN_SCENARIO)), encoding="utf-8")
        with simulator(work, "realistic", scenario_file) as realistic, \
                simulator(work, "none", scenario_file) as instant:
            ctx = Context(work=work, quick=args.quick, realistic=realistic, instant=instant)
            for part in parts:
                part_started = time.monotonic()
                try:
                    figures[part] = PARTS[part](ctx)
                except Exception as exc:  # one broken part must not lose the others' figures
                    log(f"{part} failed: {exc!r}")
                    failures.append(f"{part}: {exc}")
                    figures[part] = {"error": str(exc)}
                figures[part]["part_seconds"] = round(time.monotonic() - part_started, 1)
                figures[part]["load_average_after"] = load_average()
    finally:
        leftovers = _leftovers(work)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    machine.update(load_average_at_end=load_average(),
                   total_seconds=round(time.monotonic() - started, 1), leftovers=leftovers,
                   failures=failures)
    record.keep_before(results_dir, figures)
    written = record.write(results_dir, machine, figures)
    if results_dir.resolve() == (HERE / "results").resolve() and not args.quick:
        if record.update_readme(HERE.parent / "README.md", machine, figures):
            written.append(HERE.parent / "README.md")
    log(f"done in {machine['total_seconds']:.0f} s; wrote {', '.join(str(p) for p in written)}")
    return 1 if failures or leftovers else 0


def _machine(quick: bool) -> dict[str, Any]:
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": quick,
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "chromium": _version(["/usr/bin/chromium", "--version"]),
        "kernel": platform.release(),
        "load_average_at_start": load_average(),
    }


def _version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _leftovers(work: Path) -> list[str]:
    """Processes the benchmark started that are still alive: named, then killed."""
    found = []
    for proc in marked(work):
        try:
            found.append(f"{proc.pid} {' '.join(proc.cmdline())[:160]}")
            proc.kill()
        except Exception:
            continue
    if found:
        log(f"killed {len(found)} leftover process(es): {found}")
    return found


if __name__ == "__main__":
    sys.exit(main())
