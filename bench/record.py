"""The performance record: bench.json (every figure), bench.md (the tables) and memory.svg."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = ("page", "settle", "discovery", "requisition", "downloads", "finalize", "total")


def write(folder: Path, machine: dict[str, Any], figures: dict[str, Any]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    checked = targets(figures)
    data = {"machine": machine, "targets": checked, "figures": figures}
    paths = [folder / "bench.json", folder / "bench.md"]
    paths[0].write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    soak = figures.get("footprint", {}).get("soak", {})
    if soak.get("samples"):
        paths.append(folder / "memory.svg")
        title = (f"PSS (MB) during the soak of {soak['pos']} POs, recycling every "
                 f"{soak['recycle_after_pos']}: whole tree (thick), each browser (thin)")
        paths[-1].write_text(memory_svg(soak["samples"], title), encoding="utf-8")
    paths[1].write_text(markdown(machine, checked, figures), encoding="utf-8")
    return paths


# ---- the README --------------------------------------------------------------------------

START = "<!-- bench:start (written by make bench; edit bench/record.py instead) -->"
END = "<!-- bench:end -->"


def update_readme(readme: Path, machine: dict[str, Any], figures: dict[str, Any]) -> bool:
    """Replace the text between the README's bench markers with this run's tables."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    block = "\n".join([START, *readme_block(machine, targets(figures), figures), END])
    readme.write_text(head + block + tail, encoding="utf-8")
    return True


def targets_table(checked: list[dict[str, Any]]) -> list[str]:
    """The targets as a Markdown table: what, limit, measured, met."""
    out = ["| target | limit | measured | met |", "|---|---|---|---|"]
    for t in checked:
        measured = "not run" if t["measured"] is None else f"{t['measured']}{t['unit']}"
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        out.append(f"| {t['what']} | {t['target']} | {measured} | {met} |")
    return out


def readme_block(machine: dict[str, Any], checked: list[dict[str, Any]],
                 figures: dict[str, Any]) -> list[str]:
    """The targets and the headline figures, for the README's Performance section."""
    out = [
        f"Latest run: {machine['when']}, {machine['cpus']} CPUs, load average "
        f"{machine['load_average_at_start']} at the start and "
        f"{machine.get('load_average_at_end')} at the end, "
        f"{machine.get('total_seconds', 0) / 60:.1f} min in all. Full record: "
        "[bench/results/bench.md](bench/results/bench.md) "
        "([JSON](bench/results/bench.json)).",
        "",
    ]
    out += targets_table(checked)
    modes = figures.get("throughput", {}).get("modes", [])
    if modes:
        out += ["", "| daemon mode (realistic preset) | POs | POs/min | × one-shot | "
                "CPU s/PO |", "|---|---|---|---|---|"]
        out += [f"| {m['mode']} | {m['pos']} | {m['pos_per_minute']} | "
                f"{m['speedup_vs_one_shot']} | {m['cpu_s_per_po']} |" for m in modes]
    out += _latency_readme(figures.get("latency", {}))
    out += _grid_readme(figures.get("grid", {}))
    lines = []
    oh = figures.get("overhead", {})
    pool = _mode(oh, "pool 2x3")
    if pool:
        lines.append(f"zero latency, pool 2×3: {pool['wall_s_per_po']} wall s and "
                     f"{pool['cpu_s_per_po']} CPU s per PO")
    cost = oh.get("page_cost")
    if cost:
        lines.append(f"a PO page costs Chromium {cost['new_tab']['chromium_cpu_s']} CPU s in "
                     f"a new tab, {cost['reused_tab']['chromium_cpu_s']} in a reused one")
    tabs = _get(figures, "footprint", "tabs") or {}
    if tabs:
        lines.append(f"one browser {tabs['browser_pss_mb']} MB PSS, "
                     f"{tabs['per_extra_tab_mb']} MB per extra tab")
    soak = _get(figures, "footprint", "soak") or {}
    if soak:
        lines.append(f"soak of {soak['pos']} POs: {soak['recycles']} recycles, "
                     f"{soak['unexpected_restarts']} unexpected restarts, memory "
                     f"{soak['fifth_medians_mb']} MB by fifths (peak {soak['peak_mb']} MB)")
    kill = _get(figures, "recovery", "kill9") or {}
    if kill:
        lines.append(f"kill -9 and restart: first PO running again after "
                     f"{kill['restart_to_first_po_s']} s")
    conv = _get(figures, "mails", "converter") or {}
    if conv:
        lines.append(f"an Outlook mail to PDF with a warm renderer: {conv['short']['wall_s_median']} s "
                     f"(p90 {conv['short']['wall_s_p90']}, {conv['short']['cpu_s_per_mail']} CPU s), "
                     f"a long one {conv['long']['wall_s_median']} s; the renderer "
                     f"{conv['renderer_pss_mb_after_short']} MB PSS")
    in_daemon = _get(figures, "mails", "daemon") or {}
    if in_daemon:
        lines.append(f"the PDFs cost a daemon's batch {in_daemon['extra_wall_s_per_mail']} wall s "
                     f"and {in_daemon['extra_cpu_s_per_mail']} CPU s per mail")
    report = _get(figures, "scale", "report") or {}
    if report:
        lines.append(f"end of a {report['rows']:,}-row batch: CSV report "
                     f"{report['write_csv_s']} s, XLSX report {report['write_xlsx_s']} s")
    if lines:
        out += ["", "Also measured: " + "; ".join(lines) + "."]
    return out


# ---- targets ---------------------------------------------------------------------------------


def _get(data: dict[str, Any], *keys: str | int) -> Any:
    value: Any = data
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _mode(part: dict[str, Any], name: str) -> dict[str, Any]:
    return next((m for m in part.get("modes", []) if m["mode"] == name), {})


def targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue, its measured value and whether it is met (None: not run)."""
    tp = figures.get("throughput", {})
    oh = figures.get("overhead", {})
    soak = _get(figures, "footprint", "soak") or {}
    scale = figures.get("scale", {})
    rec = figures.get("recovery", {})
    lat = figures.get("latency", {})
    fz = figures.get("fuzz", {})
    rows: list[tuple[str, str, Any, Callable[[Any], bool], str]] = [
        (f"Fuzz: fresh-seeded POs (seed {fz.get('seed')}) whose status and files differ from "
         f"the simulator's truth, of {fz.get('pos')}", "0",
         fz.get("mismatches"), lambda v: v == 0, ""),
        ("Throughput, pool 2×3 vs one-shot (realistic preset)", "≥ 5×",
         _mode(tp, "pool 2x3").get("speedup_vs_one_shot"), lambda v: v >= 5, "×"),
        ("Throughput, pool 2×4 vs one-shot (realistic preset)", "≥ 5×",
         _mode(tp, "pool 2x4").get("speedup_vs_one_shot"), lambda v: v >= 5, "×"),
        ("Efficiency: best possible / achieved time, 1 s pages, pool 2×3", "≥ 0.8",
         _get(tp, "efficiency", "efficiency"), lambda v: v >= 0.8, ""),
        ("Client-side overhead per PO at zero latency (pool 2×3 wall / POs)", "≤ 150 ms",
         _ms(_mode(oh, "pool 2x3").get("wall_s_per_po")), lambda v: v <= 150, " ms"),
        ("Soak memory flat: spread of the fifths' medians", "≤ 10 %",
         _pct(soak.get("spread")), lambda v: v <= 10, " %"),
        ("Soak: unexpected worker restarts", "0",
         soak.get("unexpected_restarts"), lambda v: v == 0, ""),
        ("Ingest a 100,000-row CSV (drop → accepted and journaled)", "≤ 5 s",
         _get(scale, "ingest", "median_s"), lambda v: v <= 5, " s"),
        ("`coupactl status --json` with 1,000,000 tasks (end to end, median)", "≤ 100 ms",
         _get(scale, "status", "coupactl_status_json_ms", "median"), lambda v: v <= 100, " ms"),
        ("Drop → first PO running, warm pool (median)", "≤ 1 s",
         _get(rec, "drop", "median_s"), lambda v: v <= 1, " s"),
        ("Latency-bound preset (0.8 s pages, list 0.4 s later, ⅓ click-only): efficiency of "
         "pool 2×3, best possible / achieved", "≥ 0.8",
         _get(lat, "pool", "efficiency"), lambda v: v >= 0.8, ""),
        ("Latency-bound preset: pool 2×3 vs one-shot", "≥ 12×",
         _get(lat, "pool", "speedup_vs_one_shot"), lambda v: v >= 12, "×"),
        ("Latency-bound preset: coupad's POs/min ÷ the Playwright script's (6 in flight)",
         "≥ 1", _get(lat, "versus", "latency", "throughput_ratio"), lambda v: v >= 1, "×"),
        ("Latency-bound preset: coupad's CPU s/PO ÷ the Playwright script's", "≤ 1",
         _get(lat, "versus", "latency", "cpu_ratio"), lambda v: v <= 1, "×"),
        ("Zero latency: coupad's POs/min ÷ the Playwright script's (6 in flight)", "≥ 1",
         _get(lat, "versus", "zero", "throughput_ratio"), lambda v: v >= 1, "×"),
        ("Zero latency: coupad's CPU s/PO ÷ the Playwright script's", "≤ 1",
         _get(lat, "versus", "zero", "cpu_ratio"), lambda v: v <= 1, "×"),
        ("Latency part: coupad POs whose folder differs from the simulator's truth", "0",
         _coupad_wrong(lat), lambda v: v == 0, ""),
    ]
    result = []
    for what, target, value, check, unit in rows:
        result.append({"what": what, "target": target, "measured": value, "unit": unit,
                       "met": None if value is None else bool(check(value))})
    return result


def _coupad_wrong(lat: dict[str, Any]) -> int | None:
    runs = [lat.get("one_shot"), lat.get("pool"), _get(lat, "zero", "pool")]
    if not all(isinstance(r, dict) and "right" in r for r in runs):
        return None
    return sum(r["pos"] - r["right"] for r in runs)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else round(fraction * 100, 1)


# ---- Markdown --------------------------------------------------------------------------------


def markdown(machine: dict[str, Any], checked: list[dict[str, Any]],
             figures: dict[str, Any]) -> str:
    out = [
        "# coupad performance record (`make bench`)",
        "",
        f"{machine['when']}; {machine['cpus']} CPUs; {machine['chromium']}; Python "
        f"{machine['python']}. Load average at start {machine['load_average_at_start']}, at end "
        f"{machine.get('load_average_at_end')}; the whole run took "
        f"{machine.get('total_seconds', 0) / 60:.1f} min."
        + (" **Quick run (small sizes): not a record.**" if machine.get("quick") else ""),
        "",
        "## Targets",
        "",
    ]
    out += targets_table(checked)
    if machine.get("failures"):
        out += ["", "Parts that failed: " + "; ".join(machine["failures"])]
    if machine.get("leftovers"):
        out += ["", f"Leftover processes killed at the end: {len(machine['leftovers'])}"]
    for name, render in (("throughput", _throughput), ("overhead", _overhead),
                         ("footprint", _footprint), ("scale", _scale), ("recovery", _recovery),
                         ("latency", _latency), ("grid", _grid), ("mails", _mails)):
        part = figures.get(name)
        if part is None:
            continue
        if "error" in part:
            out += ["", f"## {name}", "", f"Failed: {part['error']}"]
            continue
        out += ["", *render(part),
                f"_(part took {part.get('part_seconds')} s; load average after "
                f"{part.get('load_average_after')})_"]
    return "\n".join(out) + "\n"


def _grid(part: dict[str, Any]) -> list[str]:
    local, remote = part["local"], part["grid"]
    return [
        "## Browsers on Selenium Grid (realistic preset, pool 2×3)",
        "",
        "The same daemon and POs with local browsers and with `browser.grid_url` at a hub with two "
        "nodes on this machine (same 2 cores: an overhead, not a speed-up). Grid CPU: hub and "
        "nodes' whole trees (JVMs, chromedriver, Chromium).",
        "",
        "| browsers | POs | POs/min | wall s/PO | CPU s/PO (coordinator) | CPU s/PO (Grid) | "
        "outcomes as expected |",
        "|---|---|---|---|---|---|---|",
        f"| local | {local['pos']} | {local['pos_per_minute']} | {local['wall_s_per_po']} | "
        f"{local['cpu_s_per_po']} | - | {'yes' if local.get('ok') else 'no'} |",
        f"| Grid, 2 nodes | {remote['pos']} | {remote['pos_per_minute']} | "
        f"{remote['wall_s_per_po']} | {remote['cpu_s_per_po']} | {remote['grid_cpu_s_per_po']} | "
        f"{'yes' if remote.get('ok') else 'no'} |",
        "",
        f"Remote browsers: wall per PO × {part['wall_ratio']}, CPU per PO (both sides) × "
        f"{part['cpu_ratio']}.",
        "",
    ]


def _grid_readme(part: dict[str, Any]) -> list[str]:
    if not part or "error" in part:
        return []
    return ["", f"Browsers on Selenium Grid (two nodes on the same machine, realistic preset, "
            f"pool 2×3): wall per PO × {part['wall_ratio']} and CPU per PO × "
            f"{part['cpu_ratio']} of local browsers."]


def _outcomes(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _throughput(part: dict[str, Any]) -> list[str]:
    out = [
        "## Throughput (realistic preset: page 0.7 s, render 0.4 s, 4 MB/s)",
        "",
        "CSV dropped → report written, through the real daemon. MIX POs: 1–3 attachments of "
        "100 KB–1.5 MB in both shapes, some on the requisition only, some empty or not found.",
        "",
        "| mode | POs | wall s | POs/min | × one-shot | wall s/PO | CPU s/PO | sim CPU s/PO | "
        "mean PO latency s | outcomes as expected |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in part["modes"]:
        out.append(
            f"| {m['mode']} | {m['pos']} | {m['wall_s']} | {m['pos_per_minute']} | "
            f"{m['speedup_vs_one_shot']} | {m['wall_s_per_po']} | {m['cpu_s_per_po']} | "
            f"{m['sim_cpu_s_per_po']} | {m['stages_s'].get('total', '-')} | "
            f"{'yes' if m['ok'] else 'no: ' + _outcomes(m['outcomes'])} |"
        )
    e = part["efficiency"]
    out += [
        "",
        f"Efficiency: {e['pos']} POs that cost only {e['server_s_per_po']} s of server time "
        f"each, {e['concurrency']} tabs: best possible {e['best_possible_s']} s, measured "
        f"{e['wall_s']} s → **{e['efficiency']}**. Mean PO latency in a tab "
        f"{e['stages_s'].get('total', '-')} s (page {e['stages_s'].get('page', '-')} s, settle "
        f"{e['stages_s'].get('settle', '-')} s).",
        "",
    ]
    return out


def _stage_row(label: str, stages: dict[str, float]) -> str:
    return f"| {label} | " + " | ".join(str(stages.get(s, "-")) for s in STAGES) + " |"


def _overhead(part: dict[str, Any]) -> list[str]:
    out = [
        "## Cost per PO at zero latency (preset none)",
        "",
        "| mode | POs | wall s/PO | CPU s/PO (daemon + workers + browsers) | "
        "sim CPU s/PO | POs/min |",
        "|---|---|---|---|---|---|",
    ]
    for m in part["modes"]:
        out.append(f"| {m['mode']} | {m['pos']} | {m['wall_s_per_po']} | {m['cpu_s_per_po']} | "
                   f"{m['sim_cpu_s_per_po']} | {m['pos_per_minute']} |")
    out += ["", "Mean seconds per stage of one PO in a tab (engine timings from the journal):",
            "", "| mode | " + " | ".join(STAGES) + " |", "|---" * (len(STAGES) + 1) + "|"]
    for m in part["modes"]:
        out.append(_stage_row(f"{m['mode']} (zero latency)", m["stages_s"]))
    out += ["", "CPU seconds per PO by process (pool 2×3, zero latency): " + ", ".join(
        f"{kind} {v}" for kind, v in
        (_mode(part, "pool 2x3").get("cpu_s_per_po_by_process") or {}).items()) + "."]
    wd = part.get("webdriver_ms")
    if wd:
        out += ["", f"WebDriver unit costs in a warm browser (median ms): run a script "
                f"{wd['script']}, switch tabs {wd['switch_tab']}, open a tab {wd['new_tab']}, "
                f"start a navigation {wd['navigate']}, close a tab {wd['close_tab']}. The "
                "engine sends a browser's WebDriver commands one at a time from one thread "
                "and reads pages over each tab's DevTools socket instead."]
    cost = part.get("page_cost")
    if cost:
        new, reused = cost["new_tab"], cost["reused_tab"]
        out += ["", f"A PO page in a new tab (open, load, close): {new['chromium_cpu_s']} "
                f"Chromium CPU s and {new['wall_s']} s; the same page loaded in a reused tab "
                f"(what the engine does): {reused['chromium_cpu_s']} CPU s and "
                f"{reused['wall_s']} s."]
    out.append("")
    return out


def _footprint(part: dict[str, Any]) -> list[str]:
    tabs, soak = part["tabs"], part["soak"]
    points = ", ".join(f"{p['extra_tabs']}: {p['pss_mb']} MB" for p in tabs["points"])
    return [
        "## Memory (PSS)",
        "",
        f"One signed-in browser (chromedriver + Chromium) with one PO page: "
        f"**{tabs['browser_pss_mb']} MB**; each extra tab on a PO page: "
        f"**{tabs['per_extra_tab_mb']} MB** (extra tabs → group PSS: {points}).",
        "",
        f"Soak: {soak['pos']} POs at zero latency, pool 2×3, recycling every "
        f"{soak['recycle_after_pos']} POs per browser: {soak['wall_s']} s "
        f"({soak['pos_per_minute']} POs/min), outcomes {_outcomes(soak['outcomes'])}; "
        f"{soak['recycles']} recycles, {soak['unexpected_restarts']} unexpected restarts. "
        f"PSS of the whole tree (daemon, workers, browsers), median of each fifth of the run: "
        f"{soak['fifth_medians_mb']} MB, spread {soak['spread'] * 100:.1f} %, peak "
        f"{soak['peak_mb']} MB.",
        "",
        "![memory over the soak](memory.svg)",
        "",
    ]


def _scale(part: dict[str, Any]) -> list[str]:
    ingest, status, journal, fill = part["ingest"], part["status"], part["journal"], part["fill"]
    cs = status["coupactl_status_json_ms"]
    return [
        "## Scale of the data path",
        "",
        f"- Ingest of a {ingest['rows']:,}-row CSV into a running, paused daemon (close → "
        f"accepted, batch and tasks committed): {ingest['drop_to_accepted_s']} s, median "
        f"**{ingest['median_s']} s**. Of that, parsing (coupad.intake) {ingest['parse_s']} s and "
        f"the journal's create_batch {ingest['create_batch_s']} s, measured apart.",
        f"- `coupactl status --json` with {status['tasks']:,} tasks in the journal "
        f"({fill['journal_mb']} MB): median **{cs['median']} ms** (min {cs['min']}, max "
        f"{cs['max']}) over {status['runs']} runs, process start included; the socket round "
        f"trip alone {status['socket_round_trip_ms']['median']} ms; a bare `python -c pass` "
        f"{status['bare_python_start_ms']['median']} ms.",
        f"- Journal with {status['tasks']:,} tasks: claim + record "
        f"**{journal['claim_record_ms_per_task']} ms per task**, heartbeat of a claim "
        f"{journal['heartbeat_ms']} ms; create_batch of {fill['rows_per_batch']:,} rows "
        f"{fill['create_batch_median_s']} s (median while filling).",
        *([f"- End of a {part['report']['rows']:,}-row batch, in the daemon's loop: rows read "
           f"from the journal {part['report']['report_rows_s']} s, CSV report "
           f"{part['report']['write_csv_s']} s, XLSX report (for XLSX input) "
           f"{part['report']['write_xlsx_s']} s."] if "report" in part else []),
        "",
    ]


def _recovery(part: dict[str, Any]) -> list[str]:
    drop, kill = part["drop"], part["kill9"]
    return [
        "## Reaction and recovery (realistic preset, pool 2×3)",
        "",
        f"- Drop → first PO page requested, warm idle pool: {drop['drop_to_first_po_s']} s, "
        f"median **{drop['median_s']} s**. Through `coupactl submit` (hidden name, then "
        f"rename): {drop['submit_to_first_po_s']} s, because a renamed-in file is read after "
        f"`inbox.quiet_seconds` ({drop['inbox_quiet_seconds']} s).",
        f"- kill -9 of the daemon with a {kill['pos']}-PO batch running: workers and browsers "
        f"gone {kill['old_tree_gone_s']} s later; restart → control socket "
        f"{kill['restart_to_socket_s']} s; restart → first PO running again "
        f"**{kill['restart_to_first_po_s']} s**; the batch then ended "
        f"{_outcomes(kill['outcomes'])} ({'as expected' if kill['ok'] else 'NOT as expected'}).",
        "",
    ]


def _mails(part: dict[str, Any]) -> list[str]:
    conv, run = part["converter"], part["daemon"]
    short, long = conv["short"], conv["long"]
    without, with_pdfs = run["without"], run["with"]
    return [
        "## PDFs of Outlook mails",
        "",
        "One converter, as the daemon owns it: a reader child and a locked-down Chromium, warm "
        f"after a first mail ({conv['cold_s']} s with both starting). CPU: this process, the "
        "reader and the renderer's whole tree.",
        "",
        "| mails | count | wall s median | wall s p90 | CPU s per mail | PDF KB |",
        "|---|---|---|---|---|---|",
        f"| simulator's kind (one page, a table, an inline image) | {short['mails']} | "
        f"{short['wall_s_median']} | {short['wall_s_p90']} | {short['cpu_s_per_mail']} | "
        f"{short['pdf_kb_median']} |",
        f"| long (20 KB of HTML, several pages) | {long['mails']} | {long['wall_s_median']} | "
        f"{long['wall_s_p90']} | {long['cpu_s_per_mail']} | {long['pdf_kb_median']} |",
        "",
        f"Renderer PSS (its whole tree): {conv['renderer_pss_mb_after_short']} MB after the "
        f"short mails, {conv['renderer_pss_mb_after_long']} MB after the long ones; the reader "
        f"child {conv['reader_pss_mb']} MB.",
        "",
        f"In the daemon (pool 2×3, zero latency, {run['pos']} POs with one mail each): "
        f"{without['wall_s']} s and {without['cpu_s']} CPU s from drop to report without PDFs, "
        f"{with_pdfs['wall_s']} s and {with_pdfs['cpu_s']} CPU s with them "
        f"({with_pdfs['pdfs']['made']} made, {with_pdfs['pdfs']['failed']} failed): "
        f"{run['extra_wall_s_per_mail']} wall s and {run['extra_cpu_s_per_mail']} CPU s per "
        f"mail; the renderer's PSS peaked at {with_pdfs['renderer_peak_pss_mb']} MB.",
        "",
    ]


# ---- the latency-bound preset and the competitor --------------------------------------------


def keep_before(folder: Path, figures: dict[str, Any]) -> None:
    """Put the previous record's latency figures (``folder``'s bench.json, a full run) into
    this run's, as ``latency.before``, so that the tables show the figures before and after;
    a previous record without them passes its own ``before`` on."""
    latency = figures.get("latency")
    if not isinstance(latency, dict) or "error" in latency:
        return
    try:
        previous = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if previous.get("machine", {}).get("quick"):
        return
    old = previous.get("figures", {}).get("latency")
    if not isinstance(old, dict) or "error" in old:
        return
    if "pool" in old:
        latency["before"] = {"when": previous["machine"].get("when"), "rows": _latency_rows(old)}
    elif "before" in old:
        latency["before"] = old["before"]


def _latency_rows(lat: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run of the latency part, for the tables (and kept as ``before``)."""
    runs = [("latency-bound", lat.get("one_shot")), ("latency-bound", lat.get("pool")),
            ("latency-bound", lat.get("competitor")), ("zero", _get(lat, "zero", "pool")),
            ("zero", _get(lat, "zero", "competitor"))]
    rows = []
    for preset, m in runs:
        if not isinstance(m, dict):
            continue
        if "error" in m:
            rows.append({"preset": preset, "mode": "Playwright script", "error": m["error"]})
            continue
        rows.append({
            "preset": preset, "mode": m["mode"], "pos": m["pos"],
            "pos_per_minute": m["pos_per_minute"], "wall_s_per_po": m["wall_s_per_po"],
            "cpu_s_per_po": m["cpu_s_per_po"], "efficiency": m.get("efficiency"),
            "speedup_vs_one_shot": m.get("speedup_vs_one_shot"), "right": m["right"],
        })
    return rows


def _latency_table(rows: list[dict[str, Any]], label: str = "") -> list[str]:
    out = []
    for r in rows:
        if "error" in r:
            out.append(f"| {label}{r['preset']} | {r['mode']} | failed: {r['error'][:80]} "
                       "| | | | | | |")
            continue
        eff = "-" if r.get("efficiency") is None else r["efficiency"]
        speed = "-" if r.get("speedup_vs_one_shot") is None else r["speedup_vs_one_shot"]
        out.append(f"| {label}{r['preset']} | {r['mode']} | {r['pos']} | {r['pos_per_minute']} "
                   f"| {r['wall_s_per_po']} | {r['cpu_s_per_po']} | {eff} | {speed} | "
                   f"{r['right']}/{r['pos']} |")
    return out


_LATENCY_HEAD = [
    "| preset | run | POs | POs/min | wall s/PO | CPU s/PO | efficiency | × one-shot | "
    "files right |",
    "|---|---|---|---|---|---|---|---|---|",
]


def _latency_readme(lat: dict[str, Any]) -> list[str]:
    if not lat or "error" in lat or "pool" not in lat:
        return []
    out = ["", "Latency-bound preset (0.8 s of server time per page, the attachment list 0.4 s "
           "later, a third of the files click-only) and zero latency: coupad's pool 2×3 "
           "against one-shot and against a plain Playwright script with 6 pages "
           "([bench/competitor.py](bench/competitor.py)), on the same POs:", "",
           *_LATENCY_HEAD, *_latency_table(_latency_rows(lat))]
    before = lat.get("before")
    if before:
        out += _latency_table(before["rows"], f"before ({before['when']}): ")
    return out


def _latency(part: dict[str, Any]) -> list[str]:
    preset = part["preset"]
    out = [
        "## Latency-bound preset, and a plain Playwright script side by side",
        "",
        f"Pages cost {preset['page_delay_s']} s of server time, their attachment list arrives "
        f"{preset['render_delay_s']} s after load, files at "
        f"{preset['bandwidth_bytes_per_s'] / 1e6:g} MB/s; POs with 1–3 files of 1–100 KB, a "
        "third of the files click-only, one PO in ten without files. The same POs are run at "
        f"zero latency. coupad: the real daemon with its defaults (the evidence rule in force: "
        f"late_list_window {_get(part, 'evidence_rule', 'late_list_window_s')} s), CSV dropped "
        f"→ report; {part['concurrency']} in flight (pool 2×3). The script (bench/competitor.py): Playwright for Python, "
        "Debian's Chromium, one signed-in context, as many pages, links fetched with the "
        "context's cookies, clicks under expect_download; measured from its go (signed in, "
        "pages open) to its result, under the same reaper, so its CPU is its whole tree's "
        "(script, node driver, Chromium). Efficiency: POs × "
        f"{preset['page_delay_s'] + preset['render_delay_s']:g} s / {part['concurrency']} "
        "divided by the wall time. Files right: the PO's folder holds exactly the files the "
        "simulator's truth lists (sha256), and for coupad the expected status. coupad's pool "
        "and the script each ran the POs "
        f"{len(_get(part, 'pool', 'rounds') or [None])} time(s), in the order coupad, script, "
        "script, coupad; each side's rounds are added up (POs counts every round's).",
        "",
        *_LATENCY_HEAD,
        *_latency_table(_latency_rows(part)),
    ]
    before = part.get("before")
    if before:
        out += _latency_table(before["rows"], f"before ({before['when']}): ")
    for preset_name, key in (("latency-bound", "latency"), ("zero latency", "zero")):
        v = part.get("versus", {}).get(key, {})
        if "error" in v:
            out += ["", f"{preset_name}: no comparison — {v['error']}"]
        elif v:
            out += ["", f"{preset_name}: coupad {v['coupad_pos_per_minute']} POs/min and "
                    f"{v['coupad_cpu_s_per_po']} CPU s/PO, the script "
                    f"{v['script_pos_per_minute']} POs/min and {v['script_cpu_s_per_po']} "
                    f"CPU s/PO: throughput × {v['throughput_ratio']}, CPU × {v['cpu_ratio']}."]
    for name, m in (("pool 2×3, latency-bound", part.get("pool")),
                    ("pool 2×3, zero latency", _get(part, "zero", "pool"))):
        if isinstance(m, dict) and m.get("seconds_by_outcome"):
            out += ["", f"coupad {name}: seconds per PO in a tab by outcome (of which waiting "
                    "for the page's evidence): " + "; ".join(
                        f"{state} {o['pos']} POs {o['s_per_po']} s ({o['settle_s_per_po']} s)"
                        for state, o in m["seconds_by_outcome"].items())
                    + "; CPU s/PO by process: " + ", ".join(
                        f"{k} {v}" for k, v in (m.get("cpu_s_per_po_by_process") or {}).items())
                    + "."]
    for name, m in (("latency-bound", part.get("competitor")),
                    ("zero latency", _get(part, "zero", "competitor"))):
        if isinstance(m, dict) and "error" not in m:
            whole = m["whole_run"]
            out += ["", f"The script, {name}: {m.get('s_per_po_in_page')} s per PO in a page; "
                    f"start-up and sign-in {m['start_up_s']} s; its "
                    f"whole run (launch to exit) {whole['wall_s']} s, {whole['pos_per_minute']} "
                    f"POs/min, {whole['cpu_s_per_po']} CPU s/PO; CPU s/PO by process: "
                    + ", ".join(f"{k} {v}" for k, v in m["cpu_s_per_po_by_process"].items())
                    + f"; {m['error_count']} POs failed."]
    out.append("")
    return out


# ---- the plot --------------------------------------------------------------------------------


def memory_svg(samples: list[dict[str, Any]], title: str, width: int = 720,
               height: int = 300) -> str:
    """Tree PSS and each browser's PSS over the soak, as a plain SVG line chart."""
    left, right, top, bottom = 60, 20, 20, 40
    t_max = max(s["t"] for s in samples) or 1.0
    y_max = max(s["tree_pss_mb"] for s in samples) * 1.1 or 1.0

    def x(t: float) -> float:
        return left + (width - left - right) * t / t_max

    def y(mb: float) -> float:
        return height - bottom - (height - top - bottom) * mb / y_max

    def line(points: list[tuple[float, float]], colour: str, stroke: float) -> str:
        text = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        return (f'<polyline fill="none" stroke="{colour}" stroke-width="{stroke}" '
                f'points="{text}"/>')

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for k in range(5):
        mb = y_max * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(mb):.1f}" '
                     f'y2="{y(mb):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y(mb) + 4:.1f}" text-anchor="end">'
                     f'{mb:.0f}</text>')
    for k in range(5):
        t = t_max * k / 4
        parts.append(f'<text x="{x(t):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                     f'{t:.0f} s</text>')
    parts.append(line([(s["t"], s["tree_pss_mb"]) for s in samples], "#1f5fa8", 2))
    browsers = max(len(s["browsers_mb"]) for s in samples)
    for b in range(browsers):
        points = [(s["t"], s["browsers_mb"][b]) for s in samples if len(s["browsers_mb"]) > b]
        parts.append(line(points, ["#d2691e", "#2e8b57", "#8b008b", "#b22222"][b % 4], 1))
    parts += [
        f'<text x="{left}" y="14">{title}</text>',
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
