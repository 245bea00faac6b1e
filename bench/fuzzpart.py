"""Fresh-seeded POs from everything coupa-domain.md allows, through the real engine, checked
against the simulator's truth (coupad/fuzzcheck.py, as `make fuzz` runs it).

The seed is new for every run and recorded, so a mismatch can be replayed with
``make fuzz SEED=<seed>`` (the report prints the command for each PO that differed).
"""

from __future__ import annotations

import secrets
from typing import Any

from kit import Context, log

from coupad import fuzzcheck
from coupad.sim import fuzz

TABS = 3


def run(ctx: Context) -> dict[str, Any]:
    seed = secrets.randbelow(2**31)
    count = ctx.size(60, 12)
    log(f"fuzz: {count} POs, seed {seed}, {TABS} tabs")
    outcome = fuzzcheck.run(fuzz.generate(seed, count), ctx.folder("fuzz"), tabs=TABS)
    wrong = sorted({m.index for m in outcome.mismatches if m.index is not None})
    stray = [p for m in outcome.mismatches if m.index is None for p in m.problems]
    if wrong:
        log(fuzzcheck.report(outcome))
    result = {
        "seed": seed,
        "pos": count,
        "tabs": TABS,
        "clean": count - len(wrong),
        "mismatched_indexes": wrong,
        "unaccounted": stray,  # files or folders no PO accounts for
        "mismatches": len(outcome.mismatches),
        "replay": [fuzzcheck.replay_command(seed, i) for i in wrong],
        "seconds": round(outcome.seconds, 1),
    }
    log(f"fuzz: {result['clean']} of {count} clean in {result['seconds']} s")
    return result
