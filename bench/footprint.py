"""Memory: PSS of one browser and of each extra tab, and the 2,000-PO soak with recycling.

Memory is proportional set size (PSS), summed over processes: summed RSS would count the
pages Chromium's processes share once per process and overstate a browser about six times.

- Tabs: one browser (chromedriver and Chromium, one process group), signed in, measured with
  its first tab on a PO page, then with 1, 2, 4 and 8 more tabs each holding a PO page.
- Soak: the default pool (2 × 3) works through 2,000 LIGHT POs at zero latency with
  ``pool.recycle_after_pos = 200``; every few seconds the PSS of the daemon's whole tree
  (daemon, workers, chromedrivers, browsers) and of each browser is sampled. Flat means the
  median of each fifth of the run stays within 10 % of the lowest fifth's median. Restarts
  are read from the journal's ``worker_exit`` events: expected ones are recycles.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import scenarios
from kit import Context, csv_of, daemon, load_average, log, open_page, signed_in_engine

from coupad.browser import Browser
from coupad.processes import group_pss_mb

SOAK_POS = 2000
SAMPLE_SECONDS = 2.0
TAB_STEPS = (1, 2, 4, 8)


def run(ctx: Context) -> dict[str, Any]:
    return {"tabs": tabs(ctx), "soak": soak(ctx)}


def tabs(ctx: Context) -> dict[str, Any]:
    """PSS of one signed-in browser, then with more tabs open on PO pages."""
    log("footprint: one browser, then more tabs")
    with signed_in_engine(ctx.folder("footprint-tabs"), ctx.instant.base_url) as engine:
        assert isinstance(engine.browser, Browser) and engine.browser.pgid is not None
        driver, pgid = engine.browser.driver, engine.browser.pgid
        pages = iter(scenarios.numbers(scenarios.MIX, 20))

        def url() -> str:
            return f"{ctx.instant.base_url}/order_headers/{next(pages)[2:]}"

        open_page(driver, url(), new_tab=False)
        points = [{"extra_tabs": 0, "pss_mb": _settled_pss(pgid)}]
        opened = 0
        for step in TAB_STEPS:
            while opened < step:
                open_page(driver, url(), new_tab=True)
                opened += 1
            points.append({"extra_tabs": step, "pss_mb": _settled_pss(pgid)})
    first, last = points[0], points[-1]
    per_tab = (last["pss_mb"] - first["pss_mb"]) / last["extra_tabs"]
    log(f"footprint: browser {first['pss_mb']:.0f} MB, {per_tab:.1f} MB per extra tab")
    return {"points": points, "browser_pss_mb": first["pss_mb"],
            "per_extra_tab_mb": round(per_tab, 1), "load_average": load_average()}


def _settled_pss(pgid: int) -> float:
    """The median of three samples a moment apart (Chromium frees and allocates in bursts)."""
    samples = []
    for _ in range(3):
        time.sleep(0.5)
        samples.append(group_pss_mb(pgid))
    return round(statistics.median(samples), 1)


def soak(ctx: Context) -> dict[str, Any]:
    count = ctx.size(SOAK_POS, 120)
    recycle = ctx.size(200, 30)
    log(f"footprint: soak of {count} POs, recycling every {recycle} POs per browser")
    root = ctx.folder("footprint-soak")
    samples: list[dict[str, Any]] = []
    with daemon(root, ctx.instant.base_url,
                pool={"workers": 2, "tabs_per_worker": 3, "recycle_after_pos": recycle}) as d:
        d.wait_warm()
        started = d.drop_timed("soak.csv", csv_of(scenarios.numbers(scenarios.LIGHT, count)))
        summary: list[Path] = []
        next_sample = started
        while not summary:
            d.check_alive()
            now = time.monotonic()
            if now >= next_sample:
                samples.append(_sample(d, now - started))
                next_sample = now + SAMPLE_SECONDS
            if now - started > 60 + 2 * count:
                raise TimeoutError(f"the soak did not end in {now - started:.0f} s")
            summary = sorted(d.outbox.glob("soak.*.summary.json"))
            time.sleep(0.1)
        wall = time.monotonic() - started
        samples.append(_sample(d, wall))
    exits = _worker_exits(d.journal)
    outcomes = json.loads(summary[0].read_text(encoding="utf-8"))["counts"]
    result = {
        "pos": count,
        "recycle_after_pos": recycle,
        "wall_s": round(wall, 1),
        "pos_per_minute": round(count / wall * 60, 1),
        "outcomes": outcomes,
        "ok": outcomes == {"COMPLETED": count},
        "recycles": sum(1 for e in exits if e["expected"]),
        "unexpected_restarts": sum(1 for e in exits if not e["expected"]),
        "samples": samples,
        "leftovers": d.usage[-1].get("leftovers", []),
        "load_average": load_average(),
    }
    result.update(flatness(samples))
    log(f"footprint: soak {result['pos_per_minute']} POs/min, {result['recycles']} recycles, "
        f"{result['unexpected_restarts']} unexpected restarts, memory by fifths "
        f"{result['fifth_medians_mb']} MB (spread {result['spread']:.1%})")
    return result


def _sample(d: Any, seconds: float) -> dict[str, Any]:
    status = d.status()
    done = sum(b["done"] for b in status["batches"])
    return {
        "t": round(seconds, 1),
        "done": done,
        "tree_pss_mb": round(d.pss_mb(), 1),
        "browsers_mb": [w["memory_mb"] for w in status["workers"]],
        "generations": [w["name"] for w in status["workers"]],
    }


def flatness(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Median tree PSS of each fifth of the run, and their spread over the lowest."""
    values = [s["tree_pss_mb"] for s in samples]
    fifths = [values[len(values) * k // 5: len(values) * (k + 1) // 5] for k in range(5)]
    medians = [round(statistics.median(f), 1) for f in fifths if f]
    spread = (max(medians) - min(medians)) / min(medians) if medians else 0.0
    return {
        "fifth_medians_mb": medians,
        "spread": round(spread, 3),
        "peak_mb": round(max(values), 1) if values else None,
        "flat": spread <= 0.10,
    }


def _worker_exits(journal: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT detail FROM events WHERE kind = 'worker_exit'").fetchall()
    return [json.loads(r[0]) for r in rows]
