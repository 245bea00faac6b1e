"""Throughput of the whole daemon (CSV dropped → report written), and efficiency against the limit.

Throughput, on the realistic preset with the MIX POs, in four daemon modes set only by config:

- ``one-shot``: 1 worker × 1 tab, ``pool.recycle_after_pos = 1``, ``pool.watching_tabs = 0`` —
  a fresh worker, browser and sign-in for every PO, one PO at a time, through the real daemon
  (how earlier tools worked);
- ``warm 1×1``: one warm browser with one tab;
- ``pool 2×3``: the default pool; ``pool 2×4``: one tab more per browser.

The slow baselines run fewer POs (their per-PO figures are what is compared). Each mode is a
daemon of its own, warmed up before the CSV is dropped: the wall time runs from the moment the
CSV is closed in the inbox to the moment the summary (written after the report) appears.

Efficiency: the FIXED POs cost only server latency (1 s per page, nothing to download), so the
best possible time for N of them with the pool's C tabs is N × 1 s / C; efficiency is that
bound divided by the measured wall time.
"""

from __future__ import annotations

from typing import Any

import scenarios
from kit import Context, log, measure_batch

MODES: list[tuple[str, int, int, int, int, int]] = [
    # name, workers, tabs, recycle_after_pos, POs (full run), POs (quick run)
    ("one-shot", 1, 1, 1, 12, 4),
    ("warm 1x1", 1, 1, 250, 30, 8),
    ("pool 2x3", 2, 3, 250, 200, 24),
    ("pool 2x4", 2, 4, 250, 200, 24),
]


def run(ctx: Context) -> dict[str, Any]:
    modes = []
    for name, workers, tabs, recycle, full, quick in MODES:
        count = ctx.size(full, quick)
        log(f"throughput: {name} with {count} POs")
        numbers = scenarios.numbers(scenarios.MIX, count)
        measured = measure_batch(
            ctx.folder(f"throughput-{name.replace(' ', '-')}"), ctx.realistic,
            name.replace(" ", "-"), numbers,
            pool={"workers": workers, "tabs_per_worker": tabs, "recycle_after_pos": recycle,
                  # one-shot: one PO per browser, none started beside one that only watches
                  **({"watching_tabs": 0} if recycle == 1 else {})},
            timeout=60 + 15 * count,
        )
        measured.update(mode=name, workers=workers, tabs=tabs, recycle_after_pos=recycle,
                        expected=scenarios.expected_mix(count))
        measured["ok"] = measured["outcomes"] == measured["expected"]
        log(f"throughput: {name}: {measured['pos_per_minute']} POs/min, "
            f"{measured['cpu_s_per_po']} CPU s/PO, outcomes {measured['outcomes']}")
        modes.append(measured)
    baseline = modes[0]["pos_per_minute"]
    for m in modes:
        m["speedup_vs_one_shot"] = round(m["pos_per_minute"] / baseline, 2)
    return {"modes": modes, "efficiency": efficiency(ctx)}


def efficiency(ctx: Context) -> dict[str, Any]:
    """Achieved / best possible time for POs that cost only server latency."""
    workers, tabs = 2, 3
    count = ctx.size(120, 24)
    log(f"efficiency: {count} POs of {scenarios.FIXED_PAGE_DELAY:.0f} s server time, "
        f"pool {workers}x{tabs}")
    measured = measure_batch(
        ctx.folder("efficiency"), ctx.realistic, "fixed",
        scenarios.numbers(scenarios.FIXED, count),
        pool={"workers": workers, "tabs_per_worker": tabs}, timeout=60 + 5 * count,
    )
    concurrency = workers * tabs
    best = count * scenarios.FIXED_PAGE_DELAY / concurrency
    measured.update(
        concurrency=concurrency,
        server_s_per_po=scenarios.FIXED_PAGE_DELAY,
        best_possible_s=round(best, 2),
        efficiency=round(best / measured["wall_s"], 3),
        ok=measured["outcomes"] == {"NO_ATTACHMENTS": count},
    )
    log(f"efficiency: {measured['efficiency']} (best {best:.1f} s, "
        f"measured {measured['wall_s']} s)")
    return measured
