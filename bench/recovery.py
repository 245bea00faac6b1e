"""Recovery and reaction: drop to first PO running with a warm pool; kill -9 + restart to the
first PO running again.

"Running" is seen from outside: the moment the simulator is asked for a PO page (its request
counters, polled every few milliseconds). The pool is the default 2 × 3 on the realistic
preset.

- Drop: with the pool warm and idle, a small CSV is written into the inbox (closed, so the
  inbox reads it at once); three rounds, each with POs not seen before. One more round hands
  the file over as `coupactl submit` does (written under a hidden name, then renamed), which
  the inbox reads only after ``inbox.quiet_seconds`` without change.
- kill -9: a 60-PO batch runs; after 10 POs the daemon gets SIGKILL. Its workers notice and
  kill their browsers; once the whole old tree is gone (how long that takes is reported too)
  the daemon is started again, as a supervisor would. Measured: restart to control socket,
  restart to first PO page. The batch must then end with every PO in its expected state.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import scenarios
from kit import Context, Sim, csv_of, daemon, load_average, log, wait_for

from coupad.config import InboxConfig
from coupad.ctl import submit_files

DROP_ROUNDS = 3
ROUND_POS = 6


def run(ctx: Context) -> dict[str, Any]:
    return {"drop": drop(ctx), "kill9": kill9(ctx)}


def _first_page_after(sim: Sim, baseline: int, since: float, timeout: float = 60) -> float:
    wait_for(lambda: sim.po_pages() > baseline, timeout, "the first PO page", interval=0.005)
    return time.monotonic() - since


def drop(ctx: Context) -> dict[str, Any]:
    sim = ctx.realistic
    root = ctx.folder("recovery-drop")
    times = []
    with daemon(root, sim.base_url, pool={"workers": 2, "tabs_per_worker": 3}) as d:
        d.wait_warm()
        for k in range(DROP_ROUNDS + 1):
            numbers = scenarios.numbers(scenarios.MIX + 100 + k * ROUND_POS, ROUND_POS)
            name = f"round{k}"
            baseline = sim.po_pages()
            if k < DROP_ROUNDS:
                dropped = d.drop_timed(f"{name}.csv", csv_of(numbers))
                times.append(_first_page_after(sim, baseline, dropped))
            else:
                source = root / f"{name}.csv"
                source.write_text(csv_of(numbers), encoding="utf-8")
                submit_files(d.inbox, [source], "normal")
                submitted = _first_page_after(sim, baseline, time.monotonic())
            d.wait_summary(name, 120)
    result = {
        "drop_to_first_po_s": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        "submit_to_first_po_s": round(submitted, 3),
        "inbox_quiet_seconds": InboxConfig().quiet_seconds,
        "load_average": load_average(),
    }
    log(f"recovery: drop to first PO {result['drop_to_first_po_s']} s; "
        f"via coupactl submit {result['submit_to_first_po_s']} s")
    return result


def kill9(ctx: Context) -> dict[str, Any]:
    sim = ctx.realistic
    root = ctx.folder("recovery-kill9")
    count = ctx.size(60, 18)
    numbers = scenarios.numbers(scenarios.MIX, count)
    with daemon(root, sim.base_url, pool={"workers": 2, "tabs_per_worker": 3}) as d:
        d.wait_warm()
        d.drop_timed("killed.csv", csv_of(numbers))

        def some_done() -> bool:
            batches = d.status()["batches"]
            return bool(batches) and batches[0]["done"] >= count // 6

        wait_for(some_done, 120, "the first POs to finish", interval=0.05)
        killed = d.kill9()
        gone = d.wait_reaped(60)
        gone_s = time.monotonic() - killed
        log(f"recovery: kill -9; old daemon, workers and browsers gone after {gone_s:.2f} s")
        baseline = sim.po_pages()
        restarted = time.monotonic()
        d.start()
        socket_s = time.monotonic() - restarted
        first_s = _first_page_after(sim, baseline, restarted)
        summary = d.wait_summary("killed", 60 + 10 * count)
    outcomes = summary.get("counts", {})
    result = {
        "pos": count,
        "old_tree_gone_s": round(gone_s, 2),
        "old_tree_leftovers": gone.get("leftovers", []),
        "restart_to_socket_s": round(socket_s, 2),
        "restart_to_first_po_s": round(first_s, 2),
        "outcomes": outcomes,
        "ok": outcomes == scenarios.expected_mix(count),
        "load_average": load_average(),
    }
    log(f"recovery: restart to first PO running {result['restart_to_first_po_s']} s; "
        f"outcomes {outcomes}")
    return result

