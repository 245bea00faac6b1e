"""PDFs of Outlook mails: seconds per mail with a warm renderer, the renderer's memory, and
what converting costs a daemon's batch.

- ``converter``: one :class:`coupad.msg.Converter` — the daemon's, in the same code — warmed
  by a first mail (the reader child and the renderer start then: ``cold_s``), then mails of
  the simulator's kind (a one-page HTML mail with a table, an inline image and an attached
  file, as ``coupad.sim.mails.attachment_mail`` makes them) and long ones (an HTML body of
  about 20 KB, several A4 pages). Per mail: wall seconds (median, p90) and CPU seconds of
  everything that works on it — this process (parsing the reader's answer, sanitising,
  building the document), the reader child and the renderer's whole process tree. Memory:
  PSS of the renderer's process tree (its browser, zygote, renderer, GPU and utility
  processes) after the short mails and after the long ones, and of the reader child.
- ``daemon``: the same POs (each with one mail and one 20 KB PDF) through a warm daemon,
  pool 2×3, zero latency, once with ``downloads.msg_to_pdf = false`` and once with it on:
  wall from the drop to the report and CPU of the whole tree for each; the difference per
  mail is what the daemon pays for the PDFs (the report waits for the last one), and the
  renderer's PSS is sampled while it works.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import psutil

from coupad.msg import Converter
from coupad.sim.mails import Mail, attachment_mail, to_bytes
from kit import Context, csv_of, daemon, load_average, log, simulator, tree_cpu, tree_pss_mb

SHORT_MAILS = (40, 6)  # full run, quick run
LONG_MAILS = (10, 3)
DAEMON_POS = (40, 8)
FIRST_PO = 96_000_001
PARAGRAPH = ("The delivery schedule below replaces the one agreed in March. Quantities, "
             "prices and the delivery address are unchanged; the dates of the second and "
             "third shipments move by two weeks because of the supplier's plant shutdown. ")


def run(ctx: Context) -> dict[str, Any]:
    return {"converter": converter(ctx), "daemon": in_the_daemon(ctx)}


# ---- the converter alone ---------------------------------------------------------------------


def long_mail(n: int) -> bytes:
    """A mail whose HTML body is about 20 KB: several A4 pages."""
    body = "".join(f"<h2>Shipment {k}</h2><p>{PARAGRAPH * 2}</p>" for k in range(1, 30))
    return to_bytes(Mail(subject=f"Revised delivery schedule {n}", html=f"<html><body>{body}"
                                                                        "</body></html>"))


def converter(ctx: Context) -> dict[str, Any]:
    folder = ctx.folder("mails-converter")
    short = [_write(folder / f"Approval {i}.msg", attachment_mail(f"bench-{i}", f"Approval {i}"))
             for i in range(ctx.size(*SHORT_MAILS) + 1)]
    long = [_write(folder / f"Schedule {i}.msg", long_mail(i)) for i in range(ctx.size(*LONG_MAILS))]
    log(f"mails: converter, {len(short) - 1} short and {len(long)} long mails, warm renderer")
    with Converter() as conv:
        started = time.monotonic()
        first = conv.convert(short[0], short[0].with_suffix(".msg.pdf"))
        cold_s = time.monotonic() - started
        if not first.ok:
            raise RuntimeError(f"the first mail gave no PDF: {first.reason}")
        short_runs = [_convert(conv, path) for path in short[1:]]
        after_short = _memory(conv)
        long_runs = [_convert(conv, path) for path in long]
        after_long = _memory(conv)
    result = {
        "cold_s": round(cold_s, 3),
        "short": _summary(short_runs),
        "long": _summary(long_runs),
        "renderer_pss_mb_after_short": after_short["renderer"],
        "renderer_pss_mb_after_long": after_long["renderer"],
        "reader_pss_mb": after_long["reader"],
        "load_average": load_average(),
    }
    log(f"mails: warm, {result['short']['wall_s_median']} s per short mail (p90 "
        f"{result['short']['wall_s_p90']}), {result['long']['wall_s_median']} s per long one; "
        f"renderer {after_short['renderer']} MB PSS, {after_long['renderer']} MB after long mails")
    return result


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _convert(conv: Converter, path: Path) -> dict[str, Any]:
    pids = _converter_pids(conv)
    cpu_before = time.process_time() + sum(tree_cpu(pid) for pid in pids)
    started = time.monotonic()
    result = conv.convert(path, path.with_suffix(".msg.pdf"))
    wall = time.monotonic() - started
    cpu = time.process_time() + sum(tree_cpu(pid) for pid in _converter_pids(conv)) - cpu_before
    if not result.ok:
        raise RuntimeError(f"{path.name} gave no PDF: {result.reason}")
    return {"wall_s": wall, "cpu_s": cpu, "pdf_bytes": result.size}


def _converter_pids(conv: Converter) -> list[int]:
    child = getattr(conv.reader, "_child", None)
    return [pid for pid in (conv.renderer.pid, child.pid if child else None) if pid]


def _memory(conv: Converter) -> dict[str, float]:
    time.sleep(0.5)  # Chromium frees a closed tab's memory a moment later
    child = getattr(conv.reader, "_child", None)
    return {
        "renderer": round(tree_pss_mb(conv.renderer.pid), 1) if conv.renderer.pid else 0.0,
        "reader": round(tree_pss_mb(child.pid), 1) if child else 0.0,
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = sorted(r["wall_s"] for r in runs)
    return {
        "mails": len(runs),
        "wall_s_median": round(statistics.median(walls), 3),
        "wall_s_p90": round(walls[min(len(walls) - 1, int(len(walls) * 0.9))], 3),
        "cpu_s_per_mail": round(sum(r["cpu_s"] for r in runs) / len(runs), 3),
        "pdf_kb_median": round(statistics.median(r["pdf_bytes"] for r in runs) / 1024, 1),
    }


# ---- in the daemon ---------------------------------------------------------------------------


def in_the_daemon(ctx: Context) -> dict[str, Any]:
    count = ctx.size(*DAEMON_POS)
    numbers = [str(FIRST_PO + i) for i in range(count)]
    work = ctx.folder("mails-daemon")
    scenario = work / "scenario.json"
    scenario.write_text(json.dumps({"po": {n: {"supplier": "Mail Corp", "attachments": [
        {"name": f"approval {n}.msg", "mail": True},
        {"name": f"quote {n}.pdf", "size": 20_000, "shape": "button"},
    ]} for n in numbers}}), encoding="utf-8")
    runs = {}
    with simulator(work, "none", scenario) as sim:
        for label, on in (("without", False), ("with", True)):
            log(f"mails: daemon pool 2x3, {count} POs with a mail each, msg_to_pdf = {on}")
            runs[label] = _batch(work / label, sim.base_url, numbers, on)
    without, with_pdfs = runs["without"], runs["with"]
    result = {
        "pos": count,
        "without": without,
        "with": with_pdfs,
        "extra_wall_s_per_mail": round((with_pdfs["wall_s"] - without["wall_s"]) / count, 3),
        "extra_cpu_s_per_mail": round((with_pdfs["cpu_s"] - without["cpu_s"]) / count, 3),
        "load_average": load_average(),
    }
    log(f"mails: in the daemon, {result['extra_wall_s_per_mail']} wall s and "
        f"{result['extra_cpu_s_per_mail']} CPU s more per mail; renderer peak "
        f"{with_pdfs['renderer_peak_pss_mb']} MB PSS")
    return result


def _batch(root: Path, base_url: str, numbers: list[str], on: bool) -> dict[str, Any]:
    with daemon(root, base_url, pool={"workers": 2, "tabs_per_worker": 3},
                downloads={"msg_to_pdf": on}) as d:
        d.wait_warm()
        cpu_before = d.cpu()
        dropped = d.drop_timed("mails.csv", csv_of(numbers))
        peak = 0.0
        found: list[Path] = []
        while not found:
            d.check_alive()
            if time.monotonic() - dropped > 60 + 5 * len(numbers):
                raise TimeoutError("the batch with mails did not end")
            renderer = _renderer(d.pid)
            if renderer is not None:
                peak = max(peak, tree_pss_mb(renderer))
            found = sorted(d.outbox.glob("mails.*.summary.json"))
            time.sleep(0.2)
        wall = time.monotonic() - dropped
        cpu = d.cpu() - cpu_before
    summary = json.loads(found[0].read_text(encoding="utf-8"))
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "outcomes": summary["counts"],
        "pdfs": summary["pdfs"],
        "renderer_peak_pss_mb": round(peak, 1),
    }


def _renderer(daemon_pid: int) -> int | None:
    """The daemon's PDF renderer: the one browser of its tree driven over a DevTools pipe
    (the workers' browsers are driven by chromedriver)."""
    try:
        for proc in psutil.Process(daemon_pid).children(recursive=True):
            cmdline = proc.cmdline()
            if "--remote-debugging-pipe" in cmdline and not any(
                    a.startswith("--type=") for a in cmdline):
                return proc.pid
    except psutil.Error:
        return None
    return None
