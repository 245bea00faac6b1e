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
