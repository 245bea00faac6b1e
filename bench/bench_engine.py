"""Engine benchmark: POs per minute and CPU seconds per PO, warm tabs versus one-shot browsers.

Runs the simulator (``coupad sim --preset realistic``: ~0.7 s server time per page, the
attachment list rendered 0.4 s later, downloads at 4 MB/s) as a separate process with a fixed
scenario of N POs, then processes those POs in four modes, each in a child process of its own:

- ``one-shot``: a new browser for every PO (start, form sign-in, the PO, quit) — the same
  engine code with one tab, the way earlier tools worked;
- ``k1``, ``k2``, ``k4``: one warm browser, signed in once, with 1, 2 or 4 tabs in flight.

CPU time is that of the child process and every process it started (chromedriver, Chromium
and its helpers, the download threads), measured with getrusage after the child has reaped
all of them: the child is a "child subreaper", so Chromium processes orphaned when
chromedriver exits are reaped by it rather than by init. The simulator's CPU is not counted.
Results go to ``bench/results/engine.json`` and ``bench/results/engine.md``.

Usage: ``python bench/bench_engine.py [--pos N] [--modes one-shot,k1,k2,k4]``
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import scenarios

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODES = {"one-shot": 1, "k1": 1, "k2": 2, "k4": 4}
PR_SET_CHILD_SUBREAPER = 36
FIRST_PO = scenarios.MIX


def scenario(count: int) -> dict[str, Any]:
    """The MIX POs of bench/scenarios.py: most with 1-3 attachments of both shapes, some
    empty or missing."""
    pos, requisitions = scenarios.mix(count)
    return {"po": pos, "requisition": requisitions}


# ---- the parent: simulator, one child per mode, the report ----------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pos", type=int, default=24, help="POs per mode (default 24)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes to run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown modes: {', '.join(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="coupad-bench-"))
    try:
        results = run_modes(work, modes, args.pos)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_reports(results, args.pos)
    return 0 if all(r["ok"] for r in results) else 1


def run_modes(work: Path, modes: list[str], count: int) -> list[dict[str, Any]]:
    scenario_file = work / "scenario.json"
    scenario_file.write_text(json.dumps(scenario(count)))
    sim = subprocess.Popen(
        [sys.executable, "-m", "coupad", "sim", "--port", "0", "--idp-port", "0",
         "--preset", "realistic", "--scenario", str(scenario_file)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert sim.stdout is not None
        first = sim.stdout.readline().strip()
        if "listening on " not in first:
            raise SystemExit(f"the simulator did not start: {first!r}")
        base = first.split("listening on ", 1)[1]
        results = []
        for mode in modes:
            print(f"bench: {mode} with {count} POs ...", file=sys.stderr, flush=True)
            spec = {"mode": mode, "base": base, "count": count, "root": str(work / mode)}
            out = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                capture_output=True, text=True, timeout=1800,
            )
            if out.returncode != 0:
                raise SystemExit(f"bench mode {mode} failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"bench: {mode}: {result['pos_per_minute']:.1f} POs/min, "
                  f"{result['cpu_s_per_po']:.2f} CPU s/PO", file=sys.stderr, flush=True)
            results.append(result)
        return results
    finally:
        sim.terminate()
        sim.wait(15)


def write_reports(results: list[dict[str, Any]], count: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    baseline = next((r for r in results if r["mode"] == "one-shot"), None)
    for r in results:
        r["speedup_vs_one_shot"] = (
            round(r["pos_per_minute"] / baseline["pos_per_minute"], 2) if baseline else None
        )
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "chromium": _version(["/usr/bin/chromium", "--version"]),
        "preset": "realistic (page 0.7 s, render 0.4 s, 4 MB/s)",
        "pos_per_mode": count,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (RESULTS / "engine.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    lines = [
        "# Engine benchmark",
        "",
        f"{count} POs per mode on the simulator's realistic preset; {machine['cpus']} CPUs; "
        f"load average at the end {machine['load_average_at_end']}; {machine['when']}.",
        "",
        "| mode | tabs | wall s | POs/min | CPU s/PO | × one-shot | outcomes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))
        speed = f"{r['speedup_vs_one_shot']:.1f}" if r["speedup_vs_one_shot"] else "-"
        lines.append(
            f"| {r['mode']} | {r['tabs']} | {r['wall_s']:.1f} | {r['pos_per_minute']:.1f} | "
            f"{r['cpu_s_per_po']:.2f} | {speed} | {outcomes} |"
        )
    (RESULTS / "engine.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip()
    except OSError:
        return "unknown"


# ---- a child: one mode, measured ---------------------------------------------------------

def child(spec: dict[str, Any]) -> int:
    """Run one mode and print its measurements as one JSON line."""
    # Orphans (Chromium processes whose chromedriver exited) come to us, so their CPU counts.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    sys.path.insert(0, str(HERE.parent))
    from coupad.browser import Browser, BrowserSpec
    from coupad.config import load
    from coupad.engine import Engine, PoJob
    from coupad.ponumber import PoNumber

    root = Path(spec["root"])
    root.mkdir(parents=True)
    secret = root / "password"
    secret.write_text("coupa-sim\n")
    config_file = root / "coupad.toml"
    config_file.write_text(
        f'[coupa]\nbase_url = "{spec["base"]}"\nsign_in = "form"\n'
        f'username = "buyer@example.com"\npassword_file = "{secret}"\n'
        f'[paths]\ndownloads = "{root / "downloads"}"\nstate = "{root / "state"}"\n'
    )
    config = load(config_file, env={})
    tabs = MODES[spec["mode"]]
    jobs = [PoJob(po=PoNumber(str(FIRST_PO + n)), key=str(n)) for n in range(spec["count"])]

    def engine(label: str) -> Engine:
        profile = root / "state" / "profiles" / label
        browser_spec = BrowserSpec(profile_dir=profile, download_dir=profile / "downloads")
        return Engine(config, browser_factory=lambda: Browser.start(browser_spec), tabs=tabs)

    cpu_before = _cpu()
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    per_po: list[float] = []
    if spec["mode"] == "one-shot":
        for n, job in enumerate(jobs):
            eng = engine(f"one-shot-{n}")
            try:
                eng.start()
                for result in eng.run([job]):
                    outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
                    per_po.append(result.timings.get("total", 0.0))
            finally:
                eng.close()
    else:
        eng = engine("warm")
        try:
            eng.start()
            for result in eng.run(jobs):
                outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
                per_po.append(result.timings.get("total", 0.0))
        finally:
            eng.close()
    wall = time.monotonic() - started
    _reap_all()
    cpu = _cpu() - cpu_before
    count = len(jobs)
    expected = {"COMPLETED", "NO_ATTACHMENTS", "NOT_FOUND"}
    measured = {
        "mode": spec["mode"],
        "tabs": tabs,
        "pos": count,
        "wall_s": round(wall, 2),
        "pos_per_minute": round(count / wall * 60, 2),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_po": round(cpu / count, 3),
        "mean_po_latency_s": round(sum(per_po) / len(per_po), 2) if per_po else None,
        "outcomes": outcomes,
        "ok": sum(outcomes.values()) == count and set(outcomes) <= expected,
    }
    print(json.dumps(measured))
    return 0


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _reap_all(timeout: float = 15.0) -> None:
    """Wait for every process we started (or inherited as subreaper) to exit and be reaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
