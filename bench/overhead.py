"""Cost per PO at zero latency: what coupad itself adds, in CPU and wall seconds, per stage.

With the simulator answering at once (preset "none"), every second a PO takes is coupad's
(plus the simulator's own CPU, measured apart: it runs as a process of its own). Two daemon
modes on the MIX POs:

- ``warm 1x1``: one tab, so a PO's wall time is its whole client-side latency, stage by stage;
- ``pool 2x3``: the default pool, so wall time per PO is what a batch costs per PO, and CPU
  per PO is the whole tree's (daemon, workers, chromedrivers, browsers) divided by the POs.

Stage times are the engine's, as the journal keeps them (the summary's mean per stage):
``page`` (navigation to committed page), ``settle`` (until the attachment list is stable),
``discovery``, ``downloads``, ``finalize`` (the folder's rename), ``total``.
"""

from __future__ import annotations

from typing import Any

import scenarios
from kit import Context, log, measure_batch

MODES: list[tuple[str, int, int, int, int]] = [
    # name, workers, tabs, POs (full run), POs (quick run)
    ("warm 1x1", 1, 1, 60, 8),
    ("pool 2x3", 2, 3, 200, 24),
]


def run(ctx: Context) -> dict[str, Any]:
    modes = []
    for name, workers, tabs, full, quick in MODES:
        count = ctx.size(full, quick)
        log(f"overhead: zero latency, {name}, {count} POs")
        measured = measure_batch(
            ctx.folder(f"overhead-{name.replace(' ', '-')}"), ctx.instant, name.replace(" ", "-"),
            scenarios.numbers(scenarios.MIX, count),
            pool={"workers": workers, "tabs_per_worker": tabs}, timeout=60 + 10 * count,
        )
        measured.update(mode=name, workers=workers, tabs=tabs,
                        expected=scenarios.expected_mix(count))
        measured["ok"] = measured["outcomes"] == measured["expected"]
        log(f"overhead: {name}: {measured['wall_s_per_po']} wall s/PO, "
            f"{measured['cpu_s_per_po']} CPU s/PO, stages {measured['stages_s']}")
        modes.append(measured)
    return {"modes": modes}
