"""Where one browser's time goes: WebDriver commands per PO by kind, and the Python hot spots.

Runs coupad's engine (no daemon) with K tabs over N POs of one range of bench/scenarios.py,
against a `coupad sim` process, with every WebDriver command counted and timed and the driving
thread under cProfile. The engine drives all tabs of a browser from this one thread, so the
command table shows what bounds a browser when the CPU does not.

Usage: ``python bench/profile_engine.py [--preset realistic] [--pos fixed|mix|light] [-n 60]
[--tabs 3] [--top 25]``
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import scenarios
from kit import signed_in_engine, simulator

from coupad.engine import PoJob
from coupad.ponumber import PoNumber

RANGES = {"mix": scenarios.MIX, "fixed": scenarios.FIXED, "light": scenarios.LIGHT}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("none", "realistic"), default="realistic")
    parser.add_argument("--pos", choices=sorted(RANGES), default="fixed")
    parser.add_argument("-n", type=int, default=60, help="POs (default 60)")
    parser.add_argument("--tabs", type=int, default=3)
    parser.add_argument("--top", type=int, default=25, help="functions to show (0: none)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coupad-profile-"))
    scenario_file = work / "scenario.json"
    scenario_file.write_text(json.dumps(scenarios.scenario(args.n, args.n, args.n)))
    counts: Counter[str] = Counter()
    seconds: dict[str, float] = {}
    profile = cProfile.Profile()
    with simulator(work, args.preset, scenario_file) as sim:
        (work / "engine").mkdir()
        with signed_in_engine(work / "engine", sim.base_url, args.tabs) as engine:
            assert engine.browser is not None
            driver = engine.browser.driver
            execute = driver.execute

            def counted(command: str, params: Any = None) -> Any:
                started = time.perf_counter()
                try:
                    return execute(command, params)
                finally:
                    counts[command] += 1
                    seconds[command] = (seconds.get(command, 0.0)
                                        + time.perf_counter() - started)

            driver.execute = counted
            jobs = [PoJob(po=PoNumber(str(RANGES[args.pos] + n)), key=str(n))
                    for n in range(args.n)]
            started = time.perf_counter()
            profile.enable()
            results = list(engine.run(jobs))
            profile.disable()
            wall = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    n = len(results)
    print(f"{n} POs ({args.pos}, preset {args.preset}) with {args.tabs} tabs in {wall:.1f} s: "
          f"{wall / n:.3f} s per PO")
    stages: dict[str, float] = {}
    for result in results:
        for stage, value in result.timings.items():
            stages[stage] = stages.get(stage, 0.0) + value
    print("mean stage seconds: " + ", ".join(f"{k} {v / n:.3f}" for k, v in stages.items()))
    total = sum(seconds.values())
    print(f"WebDriver: {sum(counts.values()) / n:.1f} commands and {total / n * 1000:.0f} ms "
          f"per PO ({total / wall:.0%} of the driving thread's time)")
    print(f"{'command':<28} {'per PO':>7} {'ms each':>8} {'ms per PO':>10}")
    for command, count in counts.most_common():
        print(f"{command:<28} {count / n:>7.1f} {seconds[command] / count * 1000:>8.1f} "
              f"{seconds[command] / n * 1000:>10.1f}")
    if args.top:
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
