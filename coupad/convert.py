"""`coupad convert`: Outlook .msg files to PDFs by hand, with the same code the library has.

For folders downloaded before coupad made PDFs, or to try a mail. Each ``FILE.msg`` gets
``FILE.msg.pdf`` beside it (or in ``--out DIR``); the .msg is never modified. One line per
file; exit status 0 when every file gave a PDF, 1 when any did not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coupad.errors import ExitCode
from coupad.msg import Converter, pdf_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE.msg", type=Path, help="mails to convert")
    parser.add_argument(
        "--out", metavar="DIR", type=Path, help="write the PDFs here (default: beside each mail)"
    )


def main(args: argparse.Namespace) -> int:
    out: Path | None = args.out
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    failures = 0
    with Converter() as converter:
        for msg_path in args.files:
            pdf_path = (out or msg_path.parent) / pdf_name(msg_path)
            result = converter.convert(msg_path, pdf_path)
            if result.ok:
                print(f"{msg_path}: OK {pdf_path} ({result.size} bytes)", flush=True)
            else:
                failures += 1
                print(f"{msg_path}: FAILED {result.reason}", flush=True)
    return int(ExitCode.FAILURE if failures else ExitCode.OK)
