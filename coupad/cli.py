"""The `coupad` command: a thin layer that hands each subcommand to its module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from coupad import __version__
from coupad.errors import CoupadError, ExitCode

# subcommand -> (module, one-line help, example). Each module provides
# add_arguments(parser) and main(args) -> int.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "coupad.daemon",
        "run the daemon in the foreground (stops cleanly on SIGTERM/SIGINT)",
        "coupad run -c /etc/coupad/coupad.toml",
    ),
    "demo": (
        "coupad.demo",
        "simulator + daemon on temporary folders, a sample CSV, live progress, the summary",
        "coupad demo",
    ),
    "login": (
        "coupad.login",
        "sign the base browser profile in to Coupa in a visible browser (SSO included)",
        "coupad login -c /etc/coupad/coupad.toml",
    ),
    "check": (
        "coupad.check",
        "validate config, folders, browser and driver, tenant and sign-in; exit 0 when ready",
        "coupad check -c /etc/coupad/coupad.toml",
    ),
    "fetch": (
        "coupad.fetch",
        "process a few POs with one browser and print one line per PO (to check the config)",
        "coupad fetch -c /etc/coupad/coupad.toml PO15262984 PO15262985",
    ),
    "convert": (
        "coupad.convert",
        "write a PDF beside each Outlook .msg mail (headers, attachment list, body)",
        "coupad convert --out pdfs/ PO15262984/approval.msg",
    ),
    "sim": (
        "coupad.sim.cli",
        "run the Coupa simulator on its own",
        "coupad sim --port 8080 --scenario scenario.toml",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coupad",
        description="Bulk download of Coupa purchase-order attachments.",
    )
    parser.add_argument("--version", action="version", version=f"coupad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text, example) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub_parser = sub.add_parser(
            name,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}.",
            epilog=f"example: {example}",
        )
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.main(args))
    except CoupadError as exc:
        print(f"coupad {args.command}: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.OK)
