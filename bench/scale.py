"""Scale of the data path: a 100,000-row CSV, a journal of 1,000,000 tasks, journal costs per task.

- Ingest: a running daemon (one worker, paused with ``coupactl pause`` right after start, so
  no PO starts) gets a 100,000-row CSV written into its inbox; the time runs from the file's
  close to its move into ``inbox/accepted/``, which the daemon does once the batch and its
  tasks are committed to the journal. The same file is also parsed (coupad.intake) and
  journaled (Journal.create_batch) in this process, to split the time between the two.
- Status: the journal is filled to 1,000,000 tasks (batches of 100,000, the daemon paused), the daemon
  started on it, and the real ``coupactl status --json`` timed end to end, process start
  included (median of several); the control-socket round trip alone is timed too. The
  package's bytecode is compiled first, as an installed package has it (pip compiles at
  install; without it, and with PYTHONDONTWRITEBYTECODE set, every run compiles coupad's
  modules again).
- Report: the end of a 100,000-row batch as the daemon's loop does it — rows read from the
  journal, the CSV report written, and the XLSX report an XLSX input also gets.
- Journal: ``claim`` + ``record`` per task, and ``heartbeat``, on the 1,000,000-task journal.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

from kit import BIN, Context, Daemon, bench_env, load_average, log, wait_for, write_config

from coupad.control import ControlClient
from coupad.daemon import _report_line  # the daemon's own row → report line, to time its path
from coupad.intake import parse_file
from coupad.journal import FileRecord, Journal, RowIn, TaskOutcome
from coupad.report import BatchReport, write_reports

INGEST_ROWS = 100_000
TOTAL_TASKS = 1_000_000
STATUS_RUNS = 15


def run(ctx: Context) -> dict[str, Any]:
    root = ctx.folder("scale")
    rows = ctx.size(INGEST_ROWS, 5_000)
    total = ctx.size(TOTAL_TASKS, 50_000)
    d = Daemon(root, write_config(root, ctx.instant.base_url, pool={"workers": 1,
                                                                     "tabs_per_worker": 1}))
    try:
        ingest = _ingest(d, rows)
        split = _split(root, rows)
        filled = _fill(d.journal, total, rows)
        status = _status(d)
        report = _report(d.journal, root / "report-outbox")
        journal = _journal_costs(d.journal)
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
    return {"ingest": {**ingest, **split}, "fill": filled, "status": status,
            "report": report, "journal": journal, "load_average": load_average()}


def _csv(path: Path, rows: int, first: int) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("PO Number,Supplier,Cost Center,Note\n")
        for n in range(rows):
            handle.write(f"PO{first + n},Supplier {n % 97},CC-{n % 13:03d},line {n}\n")
    return path


def _ingest(d: Daemon, rows: int) -> dict[str, Any]:
    """Drop two different CSVs into a paused daemon; time from close to accepted."""
    source = [_csv(d.root / f"big{k}.csv", rows, 80_000_000 + k * rows) for k in range(2)]
    d.start()
    d.call("pause")
    d.wait_warm()
    times = []
    for path in source:
        log(f"scale: ingesting {rows:,} rows ({path.stat().st_size / 1e6:.1f} MB)")
        target = d.inbox / path.name
        temporary = d.root / f".{path.name}.copy"
        shutil.copyfile(path, temporary)
        # Written in place and closed, as a copy onto a share would be; the inbox reads a
        # closed file at once (a rename would wait inbox.quiet_seconds).
        with open(temporary, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        closed = time.monotonic()
        wait_for(partial(_accepted, d.inbox, path.stem), 120, f"{path.name} to be accepted",
                 interval=0.01)
        times.append(time.monotonic() - closed)
        temporary.unlink()
    d.stop()
    log(f"scale: ingest {[round(t, 2) for t in times]} s")
    return {"rows": rows, "drop_to_accepted_s": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3)}


def _accepted(inbox: Path, stem: str) -> bool:
    return any(inbox.glob(f"accepted/{stem}.*"))


def _split(root: Path, rows: int) -> dict[str, Any]:
    """Parse and journal the same file in this process, to see where the time goes."""
    path = root / "big0.csv"
    started = time.perf_counter()
    parsed = parse_file(path, max_rows=rows + 10)
    parse_s = time.perf_counter() - started
    with Journal.open(root / "split.sqlite") as journal:
        started = time.perf_counter()
        journal.create_batch(
            name="split", source=path.name, content_sha256=parsed.content_sha256,
            priority="normal", fmt=parsed.fmt, columns=list(parsed.columns),
            po_column=parsed.po_column, now=time.time(), max_attempts=5,
            rows=[RowIn(row_no=r.row_no, values=r.values, po_digits=r.po_digits, error=r.error)
                  for r in parsed.rows],
        )
        journal_s = time.perf_counter() - started
    (root / "split.sqlite").unlink()
    return {"parse_s": round(parse_s, 3), "create_batch_s": round(journal_s, 3)}


def _fill(journal_path: Path, total: int, per_batch: int) -> dict[str, Any]:
    """Add batches of ``per_batch`` tasks until the journal holds ``total`` tasks (the daemon
    is paused: nothing of them runs, the figures are about size)."""
    times = []
    with Journal.open(journal_path) as journal:
        have = sum(journal.totals().values())
        log(f"scale: filling the journal from {have:,} to {total:,} tasks")
        k = 0
        while have < total:
            n = min(per_batch, total - have)
            first = 90_000_000 + k * per_batch
            rows = [RowIn(row_no=i + 2, values=(f"PO{first + i}", f"Supplier {i % 97}"),
                          po_digits=str(first + i)) for i in range(n)]
            started = time.perf_counter()
            journal.create_batch(
                name=f"fill{k}", source=f"fill{k}.csv",
                content_sha256=hashlib.sha256(f"fill{k}".encode()).hexdigest(),
                priority=("high", "normal", "low")[k % 3], fmt="csv",
                columns=["PO Number", "Supplier"], po_column="PO Number", rows=rows,
                now=time.time(), max_attempts=5,
            )
            times.append(time.perf_counter() - started)
            have += n
            k += 1
        tasks = sum(journal.totals().values())
    size_mb = journal_path.stat().st_size / 1e6
    return {"tasks": tasks, "journal_mb": round(size_mb), "batches_added": len(times),
            "rows_per_batch": per_batch,
            "create_batch_median_s": round(statistics.median(times), 3) if times else None}


def _status(d: Daemon) -> dict[str, Any]:
    """`coupactl status --json` end to end, and the socket round trip alone."""
    d.start()
    d.wait_warm()
    import coupad

    subprocess.run([str(BIN / "python"), "-m", "compileall", "-q",
                    str(Path(coupad.__file__).parent)], timeout=120, check=True,
                   stdout=subprocess.DEVNULL)
    command = [str(BIN / "coupactl"), "-c", str(d.config), "status", "--json"]
    env = bench_env(d.root)
    wall = []
    size = 0
    for _ in range(STATUS_RUNS):
        started = time.perf_counter()
        out = subprocess.run(command, capture_output=True, timeout=30, env=env, check=True)
        wall.append(time.perf_counter() - started)
        size = len(out.stdout)
    socket_only = []
    for _ in range(STATUS_RUNS):
        started = time.perf_counter()
        with ControlClient(d.socket, timeout=10) as client:
            client.call("status")
        socket_only.append(time.perf_counter() - started)
    python = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([str(BIN / "python"), "-c", "pass"], timeout=30, check=True)
        python.append(time.perf_counter() - started)
    tasks = sum(d.status()["totals"].values())
    d.stop()
    result = {
        "tasks": tasks,
        "coupactl_status_json_ms": {"median": _ms(statistics.median(wall)),
                                    "min": _ms(min(wall)), "max": _ms(max(wall))},
        "socket_round_trip_ms": {"median": _ms(statistics.median(socket_only))},
        "bare_python_start_ms": {"median": _ms(statistics.median(python))},
        "answer_bytes": size,
        "runs": STATUS_RUNS,
    }
    log(f"scale: coupactl status --json with {tasks:,} tasks: "
        f"{result['coupactl_status_json_ms']['median']} ms median "
        f"(bare python {result['bare_python_start_ms']['median']} ms)")
    return result


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _report(journal_path: Path, outbox: Path) -> dict[str, Any]:
    """The end of a 100,000-row batch as the daemon's loop does it: read the rows from the
    journal, then write the CSV report, and the XLSX one that an XLSX input also gets."""
    with Journal.open(journal_path) as journal:
        batch = max(journal.batches(), key=lambda b: b.row_count)
        started = time.perf_counter()
        rows = journal.report_rows(batch.id)
        read_s = time.perf_counter() - started
    lines = tuple(_report_line(r) for r in rows)
    result: dict[str, Any] = {"rows": len(rows), "report_rows_s": round(read_s, 2)}
    for fmt in ("csv", "xlsx"):
        report = BatchReport(name=f"{batch.name}-{fmt}", batch_id=batch.id, fmt=fmt,
                             columns=batch.columns, lines=lines, started_at=batch.created_at,
                             finished_at=time.time())
        started = time.perf_counter()
        write_reports(outbox, report)
        result[f"write_{fmt}_s"] = round(time.perf_counter() - started, 2)
    shutil.rmtree(outbox, ignore_errors=True)
    log(f"scale: report of {len(rows):,} rows: {result}")
    return result


def _journal_costs(journal_path: Path, tasks: int = 2000) -> dict[str, Any]:
    """claim + record per task and heartbeat cost, on the big journal, as the daemon calls them."""
    with Journal.open(journal_path) as journal:
        now = time.time()
        files = (FileRecord(name="a.pdf", original_name="a.pdf", size=1000, sha256="0" * 64,
                            source_url="http://sim/a"),)
        done = 0
        beat = []
        started = time.perf_counter()
        while done < tasks:
            claimed = journal.claim("bench", 6, now, 60.0)
            t = time.perf_counter()
            journal.heartbeat("bench", [c.id for c in claimed], now, 60.0)
            beat.append(time.perf_counter() - t)
            for task in claimed:
                journal.record(task.id, "bench", TaskOutcome(
                    "COMPLETED", supplier="S", found=1, downloaded=1, names=("a.pdf",),
                    folder="/tmp/x", url="http://sim/po", files=files,
                    timings={"page": 0.1, "total": 0.2}), now)
                done += 1
        elapsed = time.perf_counter() - started - sum(beat)
    result = {"tasks": done, "claim_record_ms_per_task": round(elapsed / done * 1000, 3),
              "heartbeat_ms": round(statistics.median(beat) * 1000, 3)}
    log(f"scale: journal claim+record {result['claim_record_ms_per_task']} ms per task")
    return result
