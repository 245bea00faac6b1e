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

The unit costs that explain them are measured too, in a warm browser: one WebDriver round
trip (a script run in the current tab), a switch between tabs, opening and closing a tab —
the engine drives all of a browser's tabs from one thread, one WebDriver command at a time —
and the Chromium CPU and wall time of one PO page loaded in a new tab (opened, loaded,
closed) against the same page loaded in a reused tab (what the engine does since it keeps
its tabs: this comparison is the measurement that decided it).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import scenarios
from kit import (Context, log, measure_batch, open_page, signed_in_engine, tree_cpu,
                 wait_for)

from coupad.browser import Browser

ROUND_TRIPS = 40
PAGES = 20

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
    return {"modes": modes, **browser_units(ctx)}


def browser_units(ctx: Context) -> dict[str, Any]:
    """Median milliseconds of the WebDriver commands the engine issues for every PO, and what
    a PO page costs Chromium in a new tab (opened, loaded, closed) or in a reused tab."""
    log("overhead: WebDriver round trips and page costs in a warm browser")
    base = ctx.instant.base_url
    pages = iter(scenarios.numbers(scenarios.MIX, 100))

    def url() -> str:
        return f"{base}/order_headers/{next(pages)[2:]}"

    timed: dict[str, list[float]] = {"script": [], "switch_tab": [], "new_tab": [],
                                     "close_tab": [], "navigate": []}
    page_cost: dict[str, dict[str, float]] = {}
    with signed_in_engine(ctx.folder("overhead-webdriver"), base) as engine:
        assert isinstance(engine.browser, Browser) and engine.browser.pgid is not None
        driver, pgid = engine.browser.driver, engine.browser.pgid
        open_page(driver, url(), new_tab=False)
        home = driver.current_window_handle
        for _ in range(ROUND_TRIPS):
            timed["script"].append(_timed(driver.execute_script, "return document.readyState"))
        open_page(driver, url(), new_tab=True)
        other = driver.current_window_handle
        for _ in range(ROUND_TRIPS // 2):
            timed["switch_tab"].append(_timed(driver.switch_to.window, home))
            timed["switch_tab"].append(_timed(driver.switch_to.window, other))
        for _ in range(ROUND_TRIPS // 5):
            timed["new_tab"].append(_timed(driver.switch_to.new_window, "tab"))
            timed["navigate"].append(_timed(driver.get, url()))
            wait_for(lambda: driver.execute_script("return document.readyState") == "complete",
                     30, "a page")
            timed["close_tab"].append(_timed(driver.close))
            driver.switch_to.window(home)
        for how in ("new_tab", "reused_tab"):
            cpu, started = tree_cpu(pgid), time.perf_counter()
            for _ in range(PAGES):
                open_page(driver, url(), new_tab=how == "new_tab")
                if how == "new_tab":
                    driver.close()
                    driver.switch_to.window(home)
            page_cost[how] = {"wall_s": round((time.perf_counter() - started) / PAGES, 3),
                              "chromium_cpu_s": round((tree_cpu(pgid) - cpu) / PAGES, 3)}
    result = {name: round(statistics.median(values) * 1000, 1) for name, values in timed.items()}
    log(f"overhead: WebDriver medians (ms) {result}; a PO page {page_cost}")
    return {"webdriver_ms": result, "page_cost": page_cost}


def _timed(call: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started
