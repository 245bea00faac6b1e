"""`coupad demo`: the whole pipeline on a fresh machine, against the embedded simulator.

Starts the Coupa simulator, writes a config for it in a temporary folder, starts a real
daemon (`coupad run`) as a subprocess, drops a sample CSV with a mix of outcomes into the
inbox, shows live progress over the control socket until the batch's report appears, prints
the summary and where the files are — one Outlook mail with the PDF the daemon made beside
it among them — then stops the daemon with SIGTERM.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from coupad.ctl import bar, submit_files
from coupad.errors import CoupadError
from coupad.running import DaemonExited, DaemonRun

# Which simulator cases the sample CSV draws on, and how many POs of each.
SAMPLE_CASES = {
    "link_only": 2, "button_only": 2, "both_shapes": 2, "no_attachments": 1,
    "requisition_only": 1, "with_requisition": 1, "not_found": 1, "access_denied_variant": 1,
    "awkward_names": 1, "rfc5987_names": 1, "inline_pdf": 1, "banner": 1, "mixed": 3,
    "throttled": 1,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="work folder (default: a new temporary folder)")
    parser.add_argument("--preset", choices=("none", "realistic"), default="none",
                        help="simulator latency: none (fast) or realistic (pages ~1 s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tabs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="give up after this many seconds")


def sample_rows(examples: dict[str, list[str]]) -> list[dict[str, str]]:
    """The demo's input: a spread of outcomes, one duplicate spelling and one invalid row."""
    rows = []
    for case, count in SAMPLE_CASES.items():
        for digits in examples.get(case, [])[:count]:
            rows.append({"PO Number": f"PO{digits}", "Case": case})
    if rows:
        first = rows[0]["PO Number"][2:]
        rows.append({"PO Number": f"po {first}", "Case": "duplicate spelling"})
    rows.append({"PO Number": "not-a-po", "Case": "invalid row"})
    return rows


def write_config(work: Path, base_url: str, username: str, password: str,
                 workers: int, tabs: int) -> Path:
    secret = work / "coupa-password"
    secret.write_text(password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    config = work / "coupad.toml"
    config.write_text(
        f"""# Written by `coupad demo` for the embedded simulator.
[coupa]
base_url = "{base_url}"
sign_in = "form"
username = "{username}"
password_file = "coupa-password"
[paths]
inbox = "inbox"
outbox = "outbox"
downloads = "downloads"
state = "state"
[pool]
workers = {workers}
tabs_per_worker = {tabs}
[inbox]
quiet_seconds = 0.5
[tasks]
retry_base_seconds = 1.0
""",
        encoding="utf-8",
    )
    return config


def main(args: argparse.Namespace) -> int:
    from coupad.sim.catalogue import examples
    from coupad.sim.testing import sim_server

    work = args.dir or Path(tempfile.mkdtemp(prefix="coupad-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"coupad demo in {work}")
    with sim_server(sign_in="form", preset=args.preset) as sim:
        print(f"simulated Coupa tenant at {sim.base_url} (sign-in by form)")
        config = write_config(work, sim.base_url, sim.username, sim.password,
                              args.workers, args.tabs)
        daemon = DaemonRun(work, config)
        try:
            daemon.start(timeout=args.timeout, running=False)
            return _drive(work, daemon, examples(), args.timeout)
        except DaemonExited:
            print(f"\nthe daemon stopped; see {daemon.log_path}")
            return 1
        finally:
            _stop(daemon)


def _drive(work: Path, daemon: DaemonRun, cases: dict[str, list[str]], timeout: float) -> int:
    log_path = daemon.log_path
    deadline = time.monotonic() + timeout
    sample = work / "sample-pos.csv"
    rows = sample_rows(cases)
    with open(sample, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["PO Number", "Case"])
        writer.writeheader()
        writer.writerows(rows)
    submit_files(work / "inbox", [sample], "normal")
    print(f"dropped {sample.name} ({len(rows)} rows) into {work / 'inbox'}")
    outbox = work / "outbox"
    summary_path: Path | None = None
    shown = ""
    while summary_path is None:
        if time.monotonic() > deadline:
            print(f"\ngave up after {timeout:.0f} s; the daemon log is {log_path}")
            return 1
        daemon.check_alive()
        try:
            shown = _show_progress(daemon, shown)
        except CoupadError:
            pass  # a busy or restarting socket: the next look shows progress
        found = sorted(outbox.glob("sample-pos.*.summary.json"))
        summary_path = found[0] if found else None
        time.sleep(0.5)
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    print("\nbatch done:")
    for status, count in sorted(summary.get("counts", {}).items()):
        print(f"  {status:<16} {count}")
    duration = summary.get("duration_seconds")
    if duration is not None:
        print(f"  in {duration:.1f} s")
    pdfs = summary.get("pdfs", {})
    print(f"  PDFs of Outlook mails: {pdfs.get('made', 0)} made, {pdfs.get('failed', 0)} failed")
    print(f"report:    {summary_path.with_name(summary_path.name.replace('.summary.json', '.report.csv'))}")
    print(f"summary:   {summary_path}")
    print(f"downloads: {work / 'downloads'}")
    for folder in sorted((work / "downloads").iterdir())[:12]:
        files = [p.name for p in folder.iterdir() if p.name != "manifest.json"] if folder.is_dir() else []
        print(f"  {folder.name}/  {len(files)} file(s)")
    _show_a_mail(work / "downloads")
    print(f"daemon log: {log_path}")
    return 0


def _show_a_mail(downloads: Path) -> None:
    """Print one Outlook mail of the batch and the PDF beside it (or why it has none)."""
    for manifest in sorted(downloads.glob("*/manifest.json")):
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
        for entry in files:
            if entry.get("derived_from"):
                pdf = manifest.parent / entry["name"]
                print(f"an Outlook mail and its PDF, in {manifest.parent}:")
                print(f"  {entry['derived_from']}")
                print(f"  {pdf.name}  ({entry['size']} bytes, derived_from in manifest.json)")
                return
        for entry in files:
            if entry.get("pdf_error"):
                print(f"an Outlook mail without a PDF, in {manifest.parent}:")
                print(f"  {entry['name']}: {entry['pdf_error']}")
                return


def _show_progress(daemon: DaemonRun, shown: str) -> str:
    """Print the progress line when it changed: in place on a terminal, else one per line."""
    snap: dict[str, Any] = daemon.status()
    workers = snap["workers"]
    up = sum(1 for w in workers if w["state"] in ("READY", "BUSY"))
    busy = sum(w["busy"] for w in workers)
    line = f"workers {up}/{len(workers)} up, {busy} in flight"
    for batch in snap["batches"]:
        line = (f"{batch['name']} {bar(batch['done'], batch['total'])} "
                f"{batch['done']}/{batch['total']}  {line}")
    if snap["sign_in"]["needed"]:
        line += "  (signing in again)"
    if line != shown:
        if sys.stdout.isatty():
            print("\r" + line.ljust(100), end="", flush=True)
        else:
            print(line, flush=True)
    return line


def _stop(daemon: DaemonRun) -> None:
    if daemon.proc is not None:
        try:
            daemon.terminate(timeout=90)
        except subprocess.TimeoutExpired:
            daemon.kill9()
    os.sync()
