"""The simulator in-process, for tests and the demo: ``with sim_server() as sim: ...``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from coupad.ponumber import normalize
from coupad.sim import scenario as scenarios
from coupad.sim.catalogue import PRESETS, Catalogue
from coupad.sim.server import SimConfig, Simulator
from coupad.sim.sessions import SignInMode

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class SimHandle:
    """A running simulator: where it listens, who may sign in, and its admin API."""

    base_url: str
    idp_url: str
    username: str = "buyer@example.com"
    password: str = "coupa-sim"
    storage_url: str = ""  # the file-storage origin of redirected downloads (another host)

    def _get(self, path: str) -> Any:
        response = requests.get(self.base_url + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = requests.post(self.base_url + path, json=body or {}, timeout=30)
        if response.status_code == 400:
            raise ValueError(response.text)
        response.raise_for_status()
        return response.json()

    def truth(self, po: str | int, requisition_attachments: str | None = None) -> dict[str, Any]:
        """Expected outcome and files of a PO (``PO123``, ``123`` and 123 all work);
        ``expected_status`` and ``expected_files`` for a client fetching requisition files
        in the given mode (default ``when_po_has_none``, coupad's default)."""
        digits = normalize(po).digits
        query = f"?requisition_attachments={requisition_attachments}" if requisition_attachments else ""
        return dict(self._get(f"/_sim/truth/{digits}{query}"))

    def counters(self) -> dict[str, Any]:
        return dict(self._get("/_sim/counters"))

    def reset_counters(self) -> None:
        """Zero the counters and empty the storage origin's request log."""
        self._post("/_sim/counters/reset")

    def storage_requests(self) -> list[dict[str, Any]]:
        """Every request the storage origin got: path, status, and the Cookie,
        Authorization and Referer headers it carried (None when absent)."""
        return list(self._get("/_sim/storage-requests")["requests"])

    def expire_sessions(self) -> None:
        """End every session now (tenant and identity provider)."""
        self._post("/_sim/expire-sessions")

    def set_trouble(self, **trouble: Any) -> None:
        """Replace the global trouble, e.g. ``set_trouble(rate_429=0.5)``; ``{}`` clears it."""
        self._post("/_sim/trouble", trouble)

    def sign_in_cookie(self) -> dict[str, str]:
        """A valid session cookie created server-side: ``{"name", "value", "path"}``."""
        return dict(self._post("/_sim/sessions"))

    def examples(self) -> dict[str, list[str]]:
        return dict(self._get("/_sim/examples"))


def build_config(
    *,
    sign_in: str = "form",
    scenario: Path | str | Mapping[str, Any] | None = None,
    preset: str = "none",
    render_delay: float | None = None,
    session_lifetime: float | None = None,
    catalogue: Catalogue | None = None,
) -> SimConfig:
    """Validate the options shared by sim_server and the CLI into a SimConfig; a ready
    ``catalogue`` (the fuzzer's) replaces a scenario's POs and requisitions."""
    if preset not in PRESETS:
        raise scenarios.ScenarioError(
            f"unknown preset {preset!r} (expected one of: {', '.join(PRESETS)})"
        )
    try:
        mode = SignInMode(sign_in)
    except ValueError:
        raise scenarios.ScenarioError(
            f"unknown sign-in mode {sign_in!r} (expected form or sso)"
        ) from None
    for name, value in (("render_delay", render_delay), ("session_lifetime", session_lifetime)):
        if value is not None and not (0 <= value < float("inf")):
            raise scenarios.ScenarioError(f"{name} must be a finite number of seconds, got {value}")
    if session_lifetime == 0:
        raise scenarios.ScenarioError("session_lifetime must be more than 0 seconds")
    if catalogue is not None and scenario is not None:
        raise scenarios.ScenarioError("give a scenario or a catalogue, not both")
    if scenario is None:
        parsed = scenarios.Scenario()
    elif isinstance(scenario, Mapping):
        parsed = scenarios.from_mapping(scenario)
    else:
        parsed = scenarios.load(Path(scenario))
    return SimConfig(
        catalogue=catalogue if catalogue is not None else parsed.catalogue(),
        latency=parsed.latency_over(PRESETS[preset]),
        trouble=parsed.trouble,
        sign_in=mode,
        session_lifetime=session_lifetime,
        render_delay=render_delay,
        seed=parsed.seed,
    )


@contextmanager
def sim_server(
    *,
    sign_in: str = "form",
    scenario: Path | Mapping[str, Any] | None = None,
    preset: str = "none",
    render_delay: float | None = None,
    session_lifetime: float | None = None,
    host: str = "127.0.0.1",
    catalogue: Catalogue | None = None,
) -> Iterator[SimHandle]:
    """Run tenant, identity provider and file storage on free ports in a background thread
    until exit."""
    config = build_config(
        sign_in=sign_in,
        scenario=scenario,
        preset=preset,
        render_delay=render_delay,
        session_lifetime=session_lifetime,
        catalogue=catalogue,
    )
    sim = Simulator(config)
    started = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            await sim.start(host)
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        try:
            await stop.wait()
        finally:
            await sim.stop()

    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(),), name="coupad-sim", daemon=True
    )
    thread.start()
    try:
        if not started.wait(START_TIMEOUT):
            raise RuntimeError("the simulator did not start")
        if failure:
            raise failure[0]
        yield SimHandle(
            sim.base_url, sim.idp_url, config.username, config.password, sim.storage_url
        )
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT)
        if not thread.is_alive():
            loop.close()
