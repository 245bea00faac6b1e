"""The latency-bound preset: coupad against its limit, against one-shot, and against a plain
Playwright script (bench/competitor.py) on the same tenant, POs and concurrency.

The preset: every page costs 0.8 s of server time and its attachment list arrives 0.4 s after
the page has loaded (files at 4 MB/s, as the realistic preset). The POs are the LATENCY range
of scenarios.py (1-3 attachments of 1-100 KB, every third one click-only, one PO in ten with
none). A simulator of its own serves them with that preset (the scenario's ``[latency]``
table); the bench's zero-latency simulator serves the very same POs with no latency at all.

Measured, each through the real daemon as throughput.py does (``kit.measure_batch``: a warm
daemon, a CSV dropped, wall and CPU of the whole process tree until the report is written):

- ``one-shot`` (1×1, ``pool.recycle_after_pos = 1`` and ``pool.watching_tabs = 0``: a fresh
  worker, browser and sign-in per PO, one PO at a time) and ``pool 2x3`` on the
  latency-bound preset; the pool's efficiency against its limit — the best possible time
  is POs × (0.8 + 0.4) s / 6 tabs, since no client can avoid a page's server and render
  time — and its speed-up over one-shot;
- the competitor with the same concurrency (6 pages) on the same simulator and POs, under
  bench/reaper.py like a daemon so that its CPU counts the same way (the script, Playwright's
  node driver, Chromium; children included). It signs in and opens its pages, says ready; its
  wall and CPU run from the go to its result, as coupad's run from the drop to the report
  (its whole run, start-up and sign-in included, is recorded too);
- ``pool 2x3`` and the competitor again at zero latency.

coupad's pool and the competitor each run the POs ``ROUNDS`` times, in the order coupad,
script, script, coupad; each side's figures are its rounds added up (``rounds`` keeps each
round's). Single runs of the same code differ in CPU per PO as the machine drifts; the
mirrored order lays that drift on both sides alike.

Every PO's folder, coupad's and the script's, is checked against the simulator's truth
(``GET /_sim/truth/<digits>``: the expected files by sha256); coupad's folder name must also
carry the expected status.
"""

from __future__ import annotations

import hashlib
import json
import select
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

import scenarios
from coupad.config import CoupaConfig
from kit import (HERE, PYTHON, Context, Sim, bench_env, load_average, log, measure_batch,
                 simulator, tree_cpu)

CONCURRENCY = (2, 3)  # coupad's pool: workers × tabs; the competitor opens as many pages
ROUNDS = 2  # coupad and the competitor, each this many times, in the order A B B A
ONE_SHOT_POS = (8, 3)  # full run, quick run
LATENCY_POS = (60, 18)
ZERO_POS = (120, 18)
ZERO_POS_IN_SCENARIO = max(ZERO_POS)  # what bench.py loads into the zero-latency simulator
USERNAME = "buyer@example.com"
PASSWORD = "coupa-sim"
# One PO per browser: no second PO may start in a tab beside one that only watches.
ONE_SHOT_POOL = {"workers": 1, "tabs_per_worker": 1, "recycle_after_pos": 1, "watching_tabs": 0}
BEST_S_PER_PAGE = scenarios.LATENCY_PAGE_DELAY + scenarios.LATENCY_RENDER_DELAY


def run(ctx: Context) -> dict[str, Any]:
    work = ctx.folder("latency")
    count = ctx.size(*LATENCY_POS)
    one_shot_count = ctx.size(*ONE_SHOT_POS)
    zero_count = ctx.size(*ZERO_POS)
    workers, tabs = CONCURRENCY
    concurrency = workers * tabs
    scenario_file = work / "latency-scenario.json"
    scenario_file.write_text(json.dumps(scenarios.latency_scenario(count)), encoding="utf-8")
    numbers = scenarios.numbers(scenarios.LATENCY, count)
    result: dict[str, Any] = {
        "preset": {"page_delay_s": scenarios.LATENCY_PAGE_DELAY,
                   "render_delay_s": scenarios.LATENCY_RENDER_DELAY,
                   "bandwidth_bytes_per_s": scenarios.LATENCY_BANDWIDTH},
        "concurrency": concurrency,
        # The daemons run with coupad's defaults: the evidence rule is in force.
        "evidence_rule": {"late_list_window_s": CoupaConfig().late_list_window,
                          "settle_timeout_s": CoupaConfig().settle_timeout},
    }
    with simulator(work, "realistic", scenario_file) as slow:
        log(f"latency: one-shot with {one_shot_count} POs")
        one_shot = _coupad(ctx.folder("latency-one-shot"), slow, "one-shot",
                           "coupad one-shot (1×1, a new browser per PO)", numbers[:one_shot_count],
                           ONE_SHOT_POOL)
        pool, script = _side_by_side(ctx, "latency", slow, numbers, (workers, tabs))
    best = pool["pos"] * BEST_S_PER_PAGE / concurrency  # every round's POs
    pool.update(best_possible_s=round(best, 2), efficiency=round(best / pool["wall_s"], 3),
                speedup_vs_one_shot=round(pool["pos_per_minute"] / one_shot["pos_per_minute"], 2))
    if "error" not in script:
        script.update(best_possible_s=round(best, 2),
                      efficiency=round(best / script["wall_s"], 3))
    log(f"latency: efficiency {pool['efficiency']} (best {best:.1f} s, measured "
        f"{pool['wall_s']} s), {pool['speedup_vs_one_shot']}× one-shot; script efficiency "
        f"{script.get('efficiency')}")

    zero_numbers = scenarios.numbers(scenarios.LATENCY, zero_count)
    zero_pool, zero_script = _side_by_side(ctx, "latency-zero", ctx.instant, zero_numbers,
                                           (workers, tabs))
    result.update(
        one_shot=one_shot, pool=pool, competitor=script,
        zero={"pool": zero_pool, "competitor": zero_script},
        versus={"latency": _versus(pool, script), "zero": _versus(zero_pool, zero_script)},
    )
    return result


def _side_by_side(ctx: Context, name: str, sim: Sim, numbers: list[str],
                  pool: tuple[int, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """coupad's pool and the competitor on the same POs, ROUNDS times in the order A B B A
    (coupad, script, script, coupad), each side's rounds added up: a machine that drifts
    faster or slower during the part weighs on both sides alike."""
    workers, tabs = pool
    coupad_runs: list[dict[str, Any]] = []
    script_runs: list[dict[str, Any]] = []
    for n in range(ROUNDS):
        for side in (("coupad", "script") if n % 2 == 0 else ("script", "coupad")):
            log(f"{name}: round {n + 1} of {ROUNDS}, {side}, {len(numbers)} POs")
            if side == "coupad":
                coupad_runs.append(_coupad(
                    ctx.folder(f"{name}-pool-{n + 1}"), sim, f"pool-2x3-{n + 1}",
                    "coupad pool 2×3", numbers, {"workers": workers, "tabs_per_worker": tabs}))
            else:
                script_runs.append(_guarded(competitor, ctx.folder(f"{name}-competitor-{n + 1}"),
                                            sim, numbers, workers * tabs))
    failed = [r for r in script_runs if "error" in r]
    return _rounds(coupad_runs), (failed[0] if failed else _rounds(script_runs))


_ADDED = ("pos", "wall_s", "cpu_s", "right", "worker_restarts", "error_count")


def _rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one side as one measurement: counts, wall and CPU added up and the
    per-PO figures taken from the sums; per-PO breakdowns (by stage, by process, by outcome)
    averaged, since every round runs the same POs; each round's own figures under ``rounds``."""
    first = runs[0]
    out = dict(first)
    for key in _ADDED:
        if key in first:
            out[key] = round(sum(r[key] for r in runs), 2)
    pos, wall, cpu = out["pos"], out["wall_s"], out["cpu_s"]
    out.update(pos_per_minute=round(pos / wall * 60, 1), wall_s_per_po=round(wall / pos, 3),
               cpu_s_per_po=round(cpu / pos, 3))
    for key in ("sim_cpu_s_per_po", "s_per_po_in_page", "cpu_s_per_po_by_process", "stages_s",
                "seconds_by_outcome"):
        if key in first:
            out[key] = _mean([r.get(key) for r in runs])
    for key in ("outcomes", "expected"):
        if isinstance(first.get(key), dict):
            total: dict[str, int] = {}
            for r in runs:
                for state, n in r[key].items():
                    total[state] = total.get(state, 0) + n
            out[key] = total
    if "ok" in first:
        out["ok"] = all(r["ok"] for r in runs)
    for key in ("wrong", "leftovers"):
        if key in first:
            out[key] = [x for r in runs for x in r[key]][:10]
    if "errors" in first:
        out["errors"] = dict(list({k: v for r in runs for k, v in r["errors"].items()}.items())[:10])
    out["load_average"] = runs[-1].get("load_average")
    out["rounds"] = [{k: r.get(k) for k in ("pos", "wall_s", "pos_per_minute", "cpu_s_per_po",
                                            "right")} for r in runs]
    return out


def _mean(values: list[Any]) -> Any:
    """The mean of numbers, or of dicts of them key by key (a ``pos`` key is added up)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, dict) for v in present):
        keys = {k for v in present for k in v}
        return {k: (sum(v.get(k, 0) for v in present) if k == "pos"
                    else _mean([v.get(k) for v in present])) for k in sorted(keys)}
    if all(isinstance(v, int | float) for v in present):
        return round(sum(present) / len(present), 3)
    return present[0]


def _guarded(measure: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """The competitor's figures, or its error: a broken script must not lose coupad's."""
    try:
        return measure(*args)
    except Exception as exc:
        log(f"latency: the competitor failed: {exc!r}")
        return {"error": str(exc)}


def _coupad(root: Path, sim: Sim, name: str, mode: str, numbers: list[str],
            pool: dict[str, Any]) -> dict[str, Any]:
    recycle = pool.get("recycle_after_pos")
    measured = measure_batch(root, sim, name, numbers, pool=pool,
                             timeout=60 + (15 if recycle == 1 else 5) * len(numbers))
    expected = scenarios.expected_latency_bound(len(numbers))  # the first N
    right, wrong = _check(sim, numbers, lambda po: _coupad_folder(root / "downloads", po))
    measured.update(mode=mode, workers=pool["workers"], tabs=pool["tabs_per_worker"],
                    recycle_after_pos=recycle or 250, expected=expected,
                    ok=measured["outcomes"] == expected, right=right, wrong=wrong[:10])
    log(f"latency: {mode}: {measured['pos_per_minute']} POs/min, {measured['wall_s_per_po']} "
        f"wall s/PO, {measured['cpu_s_per_po']} CPU s/PO, {right}/{len(numbers)} right, "
        f"outcomes {measured['outcomes']}")
    return measured


def _coupad_folder(downloads: Path, po: str) -> tuple[Path | None, str | None]:
    """coupad's final folder of a PO and the status its name carries."""
    found = [p for p in downloads.glob(f"{po}_*") if p.is_dir()]
    if len(found) != 1:
        return None, None
    return found[0], found[0].name[len(po) + 1:]


# ---- the competitor -------------------------------------------------------------------------


def competitor(root: Path, sim: Sim, numbers: list[str], concurrency: int) -> dict[str, Any]:
    """Run bench/competitor.py under bench/reaper.py; wall and CPU from go to its result."""
    secret = root / "coupa-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    secret.chmod(0o600)
    out = root / "out"
    reaped = root / "reaper.json"
    timeout = 60 + 5 * len(numbers)
    started = time.monotonic()
    with open(root / "competitor.log", "ab") as log_file:
        proc = subprocess.Popen(
            [PYTHON, str(HERE / "reaper.py"), str(reaped), "--",
             PYTHON, str(HERE / "competitor.py"), sim.base_url, *numbers,
             "--username", USERNAME, "--password-file", str(secret), "--out", str(out),
             "--concurrency", str(concurrency), "--handshake"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, text=True,
            cwd=root, env=bench_env(root),
        )
    assert proc.stdin is not None
    try:
        _expect(proc, "ready", 90, root)
        ready_s = time.monotonic() - started
        cpu_before, sim_before, kinds_before = tree_cpu(proc.pid), sim.cpu(), _kinds(proc.pid)
        go = time.monotonic()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        own = json.loads(_expect(proc, "{", timeout, root))
        wall = time.monotonic() - go
        cpu = tree_cpu(proc.pid) - cpu_before
        kinds = _kinds(proc.pid)
        sim_cpu = sim.cpu() - sim_before
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    total_s = time.monotonic() - started
    usage = json.loads(reaped.read_text(encoding="utf-8")) if reaped.exists() else {}
    right, wrong = _check(sim, numbers, lambda po: (out / po, None))
    errors = own.get("errors", {})
    right -= sum(1 for po in errors if po not in wrong)  # an error is never right
    count = len(numbers)
    measured = {
        "mode": f"Playwright script, {concurrency} pages",
        "pos": count,
        "start_up_s": round(ready_s, 2),
        "wall_s": round(wall, 2),
        "pos_per_minute": round(count / wall * 60, 1),
        "wall_s_per_po": round(wall / count, 3),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_po": round(cpu / count, 3),
        "sim_cpu_s_per_po": round(sim_cpu / count, 3),
        "s_per_po_in_page": own.get("s_per_po_in_page"),  # as coupad's seconds_by_outcome
        "cpu_s_per_po_by_process": {
            kind: round((kinds[kind] - kinds_before.get(kind, 0.0)) / count, 3)
            for kind in sorted(kinds)
        },
        # The whole run as a user would start it: launch, sign-in, the POs, close.
        "whole_run": {
            "wall_s": round(total_s, 2),
            "pos_per_minute": round(count / total_s * 60, 1),
            "cpu_s_per_po": (round(usage["cpu_s"] / count, 3)
                             if usage.get("cpu_s") is not None else None),
        },
        "errors": dict(list(errors.items())[:10]),
        "error_count": len(errors),
        "right": right,
        "wrong": wrong[:10],
        "returncode": usage.get("returncode"),
        "leftovers": usage.get("leftovers", []),
        "load_average": load_average(),
    }
    log(f"latency: script: {measured['pos_per_minute']} POs/min, {measured['wall_s_per_po']} "
        f"wall s/PO, {measured['cpu_s_per_po']} CPU s/PO, {right}/{count} right, "
        f"{len(errors)} errors; start-up {ready_s:.1f} s")
    return measured


def _expect(proc: subprocess.Popen[str], start: str, timeout: float, root: Path) -> str:
    """The competitor's next stdout line, which must start with ``start``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith(start):
        tail = (root / "competitor.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"the competitor said {line!r} instead of {start}...; its log "
                           f"ends:\n{tail}")
    return line


def _kinds(pid: int) -> dict[str, float]:
    """CPU seconds of the competitor's tree by kind: the script, Playwright's node driver,
    Chromium (all its processes)."""
    found: dict[str, float] = {}
    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return found
    for proc in procs:
        try:
            t = proc.cpu_times()
            program = Path((proc.cmdline() or ["?"])[0]).name
        except psutil.Error:
            continue
        kind = ("chromium" if "chrom" in program else "node driver" if "node" in program
                else "script" if "python" in program else "other")
        found[kind] = found.get(kind, 0.0) + t.user + t.system + t.children_user + t.children_system
    return found


# ---- checks against the simulator's truth ------------------------------------------------------


def _check(sim: Sim, numbers: list[str],
           folder_of: Callable[[str], tuple[Path | None, str | None]]) -> tuple[int, list[str]]:
    """How many POs' folders hold exactly the files the truth expects (by sha256) — and,
    when the folder's name says a status, the expected status; the wrong ones."""
    right, wrong = 0, []
    for po in numbers:
        with urllib.request.urlopen(f"{sim.base_url}/_sim/truth/{po[2:]}", timeout=30) as answer:
            truth = json.load(answer)
        want = sorted(f["sha256"] for f in truth["expected_files"])
        folder, status = folder_of(po)
        got = sorted(
            hashlib.sha256(f.read_bytes()).hexdigest()
            for f in (folder.iterdir() if folder is not None and folder.is_dir() else ())
            if f.is_file() and f.name != "manifest.json"
        )
        if got == want and (status is None or status == truth["expected_status"]):
            right += 1
        else:
            wrong.append(po)
    return right, wrong


def _versus(coupad: dict[str, Any], script: dict[str, Any]) -> dict[str, Any]:
    if "error" in script:
        return {"error": "the competitor failed: " + script["error"][:300]}
    return {
        "coupad_pos_per_minute": coupad["pos_per_minute"],
        "script_pos_per_minute": script["pos_per_minute"],
        "throughput_ratio": round(coupad["pos_per_minute"] / script["pos_per_minute"], 2),
        "coupad_cpu_s_per_po": coupad["cpu_s_per_po"],
        "script_cpu_s_per_po": script["cpu_s_per_po"],
        "cpu_ratio": round(coupad["cpu_s_per_po"] / script["cpu_s_per_po"], 2),
        "coupad_right": coupad["right"],
        "script_right": script["right"],
        "pos": coupad["pos"],
    }
