"""`coupad sim`: the simulator on its own, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from coupad import logs
from coupad.errors import CoupadError, ExitCode
from coupad.sim.catalogue import PRESETS
from coupad.sim.server import Simulator
from coupad.sim.testing import build_config


def _port(text: str) -> int:
    port = int(text) if text.isascii() and text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=8080,
        help="tenant port; 0 picks a free one (default %(default)s)",
    )
    parser.add_argument(
        "--idp-port", type=_port, default=0, help="identity provider port; 0 picks a free one"
    )
    parser.add_argument(
        "--scenario", metavar="FILE", help="TOML or JSON file overriding POs, latency, trouble"
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="none",
        help="latency profile (default %(default)s)",
    )
    parser.add_argument(
        "--sign-in",
        choices=("form", "sso"),
        default="form",
        help="native form or SSO (default %(default)s)",
    )
    parser.add_argument(
        "--session-lifetime",
        type=float,
        metavar="S",
        help="seconds a session lives (default: forever)",
    )
    parser.add_argument(
        "--render-delay", type=float, metavar="S", help="seconds before the attachment list appears"
    )


def main(args: argparse.Namespace) -> int:
    logs.setup("info")
    config = build_config(
        sign_in=args.sign_in,
        scenario=args.scenario,
        preset=args.preset,
        render_delay=args.render_delay,
        session_lifetime=args.session_lifetime,
    )
    return asyncio.run(_serve(Simulator(config), args.host, args.port, args.idp_port))


async def _serve(sim: Simulator, host: str, port: int, idp_port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The handler only records; the coroutine below does the stopping.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await sim.start(host, port, idp_port)
    except OSError as exc:
        await sim.stop()
        raise CoupadError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    print(f"coupad sim listening on {sim.base_url}", flush=True)
    print(f"identity provider on {sim.idp_url}", flush=True)
    print(f"file storage on {sim.storage_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
    print("coupad sim stopped", file=sys.stderr, flush=True)
    return int(ExitCode.OK)
