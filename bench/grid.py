"""Browsers on Selenium Grid against browsers here: pool 2×3, realistic preset, the MIX POs.

The same daemon and the same POs twice: once with local browsers, once with ``browser.grid_url``
pointing at a hub with two nodes on this machine (tests/gridkit.py starts them from etc/grid's
samples). Both run on the same 2 cores, so the figure is the *overhead* of remote browsers —
WebDriver and DevTools through the hub, click-only files brought back from the node — as a
ratio of wall seconds and CPU seconds per PO, not a speed-up: on a real deployment the nodes'
CPU is elsewhere. CPU on the Grid side is the hub's and nodes' whole process trees (JVMs,
chromedriver, Chromium).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psutil

import scenarios
from kit import Context, log, measure_batch, tree_cpu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import gridkit  # noqa: E402  (the tests' launcher, see the module docstring)

POOL = {"workers": 2, "tabs_per_worker": 3}


def run(ctx: Context) -> dict[str, Any]:
    count = ctx.size(90, 12)
    numbers = scenarios.numbers(scenarios.MIX, count)
    timeout = 120 + 3 * count
    log(f"grid: pool 2x3 with local browsers, {count} POs")
    local = measure_batch(ctx.folder("grid-local"), ctx.realistic, "local", numbers,
                          pool=POOL, timeout=timeout)
    log(f"grid: local: {local['pos_per_minute']} POs/min, {local['cpu_s_per_po']} CPU s/PO")
    with gridkit.grid(ctx.folder("grid-servers"), nodes=2, max_sessions=2) as g:
        servers = [p for p in (g.hub, *g.nodes) if p is not None]
        before = sum(_cpu(p.pid) for p in servers)
        log(f"grid: pool 2x3 on two Grid nodes, {count} POs")
        remote = measure_batch(ctx.folder("grid-remote"), ctx.realistic, "grid", numbers,
                               pool=POOL, timeout=timeout, browser={"grid_url": g.url})
        grid_cpu = sum(_cpu(p.pid) for p in servers) - before
    remote["grid_cpu_s_per_po"] = round(grid_cpu / count, 3)
    remote["total_cpu_s_per_po"] = round(remote["cpu_s_per_po"] + grid_cpu / count, 3)
    expected = scenarios.expected_mix(count)
    for m in (local, remote):
        m["expected"] = expected
        m["ok"] = m["outcomes"] == expected
    result = {
        "pos": count,
        "local": local,
        "grid": remote,
        "wall_ratio": round(remote["wall_s_per_po"] / local["wall_s_per_po"], 2),
        "cpu_ratio": round(remote["total_cpu_s_per_po"] / local["cpu_s_per_po"], 2),
    }
    log(f"grid: on the Grid {remote['pos_per_minute']} POs/min, {remote['total_cpu_s_per_po']} "
        f"CPU s/PO in all; wall x{result['wall_ratio']}, CPU x{result['cpu_ratio']}")
    return result


def _cpu(pid: int) -> float:
    try:
        return tree_cpu(pid)
    except psutil.Error:
        return 0.0
