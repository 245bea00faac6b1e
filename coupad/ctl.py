"""`coupactl`: a thin command line over coupad.control.ControlClient.

Every command takes ``--json`` for scripts. ``coupactl status`` exits 0 when the daemon runs
and 3 when it does not (LSB); other commands exit 3 too when no daemon answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from coupad import config as configuration
from coupad.control import ControlClient
from coupad.errors import ConfigError, CoupadError, DaemonNotRunning, ExitCode
from coupad.snapshot import Snapshot

BAR_WIDTH = 30


# -- rendering ---------------------------------------------------------------------------


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def render_status(data: dict[str, Any]) -> str:
    snap = Snapshot.parse(data)
    d = snap.daemon
    lines = [
        f"coupad {d.version} pid {d.pid}: {d.state}, up {_duration(d.uptime_seconds)}"
        f", tenant {d.base_url or '(not set)'}",
    ]
    lines += [f"PROBLEM: {problem}" for problem in d.problems]
    sign_in = snap.sign_in
    if sign_in.failed:
        lines.append(f"sign-in: FAILED ({sign_in.detail}); fix the password file, then "
                     "`coupactl resume`")
    elif sign_in.needed:
        how = ("run `coupad login`" if sign_in.mode == "profile"
               else "signing in again with the password file")
        since = time.strftime("%H:%M:%S", time.localtime(sign_in.since or 0))
        lines.append(f"sign-in: NEEDED since {since} ({sign_in.detail}); {how}")
    else:
        lines.append(f"sign-in: ok ({sign_in.mode})")
    memory = snap.memory
    if memory:
        flag = "  (high: starting no new POs)" if memory.high else ""
        lines.append(f"memory: {memory.used_mb} of {memory.limit_mb} MB ({memory.source}){flag}")
    throttle = snap.throttle
    if throttle and (throttle.cap < throttle.limit or throttle.paused_for):
        lines.append(f"throttled by Coupa: {throttle.cap} of {throttle.limit} POs in "
                     f"flight, paused {throttle.paused_for:.0f} s more")
    lines.append("workers:")
    for w in snap.workers:
        extra = f"  last error: {w.last_error}" if w.last_error else ""
        lines.append(
            f"  {w.slot:>2} {w.state:<10} pid {w.pid or '-':<7} "
            f"{w.busy}/{w.tabs} tabs  {w.pos_done:>5} POs  "
            f"{w.memory_mb:>7.0f} MB  {w.restarts} restarts{extra}"
        )
    if not snap.batches:
        lines.append("batches: none open")
    for b in snap.batches:
        counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(b.counts.items()))
        eta = f", ETA {_duration(b.eta_seconds)}" if b.eta_seconds is not None else ""
        pdfs = (f", {b.pdfs_pending} PDF(s) of mails to make before the report"
                if b.pdfs_pending else "")
        lines.append(
            f"batch {b.id} {b.name} ({b.priority}) {bar(b.done, b.total)} "
            f"{b.done}/{b.total}  {b.rate_per_min:.1f}/min{eta}{pdfs}"
        )
        lines.append(f"    {counts}")
    return "\n".join(lines)


def render_batches(batches: list[dict[str, Any]]) -> str:
    if not batches:
        return "no batches"
    lines = [f"{'ID':<15} {'NAME':<24} {'PRIORITY':<8} {'STATE':<10} PROGRESS"]
    for b in batches:
        lines.append(f"{b['id']:<15} {b['name'][:24]:<24} {b['priority']:<8} {b['state']:<10} "
                     f"{b['done']}/{b['total']}")
    return "\n".join(lines)


def render_batch(batch: dict[str, Any]) -> str:
    lines = [f"batch {batch['id']} {batch['name']} ({batch['state']}): "
             f"{batch['done']}/{batch['total']} POs"]
    lines.append(f"{'PO':<18} {'STATUS':<15} {'TRIES':>5} {'FILES':>7}  FOLDER / REASON")
    for t in batch["tasks"]:
        files = f"{t['downloaded'] or 0}/{t['found'] or 0}" if t["found"] is not None else "-"
        detail = t["folder"] or t["reason"] or ""
        lines.append(f"{t['po']:<18} {t['state']:<15} {t['attempts']:>5} {files:>7}  {detail}")
    return "\n".join(lines)


# -- commands ----------------------------------------------------------------------------


def submit_files(inbox: Path, files: Sequence[Path], priority: str) -> list[Path]:
    """Copy files into the inbox under a hidden name, then rename: the daemon never sees a
    half-copied file."""
    import shutil  # here, not at the top: `coupactl status` is started often and needs neither
    import uuid

    for source in files:  # all checked before any is copied: all or nothing
        if source.suffix.lower() not in (".csv", ".xlsx"):
            raise CoupadError(f"{source}: only .csv and .xlsx files can be submitted")
        if not source.is_file():
            raise CoupadError(f"{source}: no such file")
    target_dir = inbox / priority if priority in ("high", "low") else inbox
    target_dir.mkdir(parents=True, exist_ok=True)
    placed = []
    for source in files:
        target = target_dir / source.name
        if target.exists():
            target = target_dir / f"{source.stem}-{uuid.uuid4().hex[:6]}{source.suffix}"
        temp = target_dir / f".{target.name}.{uuid.uuid4().hex[:6]}.tmp"
        shutil.copyfile(source, temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
        placed.append(target)
    return placed


COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("daemon, workers, memory, sign-in state and every open batch", "coupactl status"),
    "batches": ("every batch with its progress", "coupactl batches --json"),
    "batch": ("one batch, PO by PO", "coupactl batch 20261124-3f9a"),
    "submit": ("copy CSV/XLSX files into the inbox safely",
               "coupactl submit --priority high pos.csv"),
    "pause": ("start no new POs (in-flight POs finish)", "coupactl pause"),
    "resume": ("start POs again after pause or drain", "coupactl resume"),
    "drain": ("like pause, and close the browsers once idle", "coupactl drain"),
    "retry": ("run a batch's POs again, or every failed PO", "coupactl retry --failed"),
    "cancel": ("cancel a batch's POs that have not ended", "coupactl cancel 20261124-3f9a"),
    "stop": ("stop the daemon gracefully (like SIGTERM)", "coupactl stop"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coupactl", description="Talk to a running coupad daemon over its control socket.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-c", "--config", help="coupad config file (finds the socket)")
    where.add_argument("--socket", help="control socket path")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, example) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=f"{help_text}.",
                           epilog=f"example: {example}")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        if name in ("batch", "cancel"):
            p.add_argument("id", type=_batch_id, help="batch id (a unique prefix is enough)")
        if name == "retry":
            target = p.add_mutually_exclusive_group(required=True)
            target.add_argument("id", nargs="?", type=_batch_id,
                                help="batch id (a unique prefix is enough)")
            target.add_argument("--failed", action="store_true", help="every FAILED/PARTIAL PO")
        if name == "submit":
            p.add_argument("files", nargs="+", type=Path, metavar="FILE")
            p.add_argument("--priority", choices=("high", "normal", "low"), default="normal")
    return parser


def _batch_id(text: str) -> str:
    """A batch id as typed; blank is refused here, so it can never stand for every batch."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "a batch id cannot be blank (to re-run every failed PO, say --failed)")
    return text


SYSTEMD_SOCKET = Path("/run/coupad/coupad.sock")


def _socket_path(args: argparse.Namespace) -> Path:
    """The socket named on the command line, else the config's; under systemd the daemon's
    socket is in its RuntimeDirectory, which an admin's shell knows nothing of."""
    if args.socket:
        return Path(args.socket)
    path = configuration.load(args.config).socket_path
    if not path.exists() and SYSTEMD_SOCKET.exists():
        return SYSTEMD_SOCKET
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except DaemonNotRunning as exc:
        if args.json:
            print(json.dumps({"running": False, "error": str(exc)}))
        else:
            print(f"coupactl: {exc}", file=sys.stderr)
        return int(ExitCode.NOT_RUNNING)
    except ConfigError as exc:
        print(f"coupactl: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except CoupadError as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        print(f"coupactl {args.command}: {exc}", file=sys.stderr)
        return int(exc.exit_code)


def _run(args: argparse.Namespace) -> int:
    if args.command == "submit":
        return _submit(args)
    text: Callable[[Any], str]
    result: Any
    with ControlClient(_socket_path(args)) as client:
        if args.command == "status":
            # Checked against the typed snapshot, for --json too: a script reads what is written
            # down in coupad.snapshot, or coupactl says what differs.
            result = Snapshot.parse(client.call("status")).plain()
            text = render_status
        elif args.command == "batches":
            result, text = client.call("batches"), render_batches
        elif args.command == "batch":
            result, text = client.call("batch", id=args.id), render_batch
        elif args.command == "retry":
            result = client.call("retry", id=args.id, failed=args.failed)
            text = lambda r: f"requeued {r['requeued']} PO(s)"  # noqa: E731
        elif args.command == "cancel":
            result = client.call("cancel", id=args.id)
            text = lambda r: f"cancelled {r['cancelled']} PO(s) of batch {r['batch']}"  # noqa: E731
        else:
            result = client.call(args.command)
            text = lambda r: f"{args.command}: ok"  # noqa: E731
    print(json.dumps(result, indent=2, default=str) if args.json else text(result))
    return int(ExitCode.OK)


def _submit(args: argparse.Namespace) -> int:
    inbox: Path | None = None
    try:
        with ControlClient(_socket_path(args)) as client:
            inbox = Path(client.call("paths")["inbox"])
    except DaemonNotRunning:
        if args.socket:
            raise
        inbox = configuration.load(args.config).paths.inbox  # queued for the next start
    placed = submit_files(inbox, args.files, args.priority)
    if args.json:
        print(json.dumps({"submitted": [str(p) for p in placed]}))
    else:
        for path in placed:
            print(f"submitted {path}")
    return int(ExitCode.OK)


if __name__ == "__main__":
    raise SystemExit(main())
