"""The real daemon with its browsers on a real Selenium Grid (hub + 2 nodes on this machine).

A batch spread over both nodes with both attachment shapes; a node killed with ``kill -9``
(JVM, chromedriver and Chromium) mid-batch; the hub restarted mid-batch; an idle pool that
outlives the nodes' session-timeout; SIGTERM leaves no session of ours on the Grid. Every batch
must end with every PO's files verified against the simulator's truth, nothing fetched twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coupad.browser.hub import INSTANCE_CAP
from coupad.sim.testing import SimHandle, sim_server
from daemonkit import daemon
from gridkit import Grid, grid, sessions
from test_daemon_browser import (
    fetched_twice,
    files_dropped_together_and_slowly,
    kill_9_at,
    scenario,
    session_expiry_mid_batch,
    sim_config,
    verify,
)
from test_pool_browser import recycled_over_the_memory_limit, slow_pos
from util import csv_of, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SESSION_TIMEOUT = 10  # Grid's least: an idle pool must outlive it


@pytest.fixture(scope="module")
def the_grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    # One session per node: the two workers' browsers are on different nodes.
    with grid(tmp_path_factory.mktemp("grid"), nodes=2, max_sessions=1,
              session_timeout=SESSION_TIMEOUT) as g:
        yield g


def ours(g: Grid) -> list[dict[str, Any]]:
    """The sessions that carry a coupad instance tag on the Grid's live nodes. A node killed
    with kill -9 stays listed, with its sessions, until the hub gives it up (up to ~2 min):
    those are the hub's memory of browsers that died with the node, and DELETE gets HTTP 500."""
    live = {f":{port}" for port in g.node_ports}
    return [s for s in sessions(g.url) if s["capabilities"].get(INSTANCE_CAP)
            and any(s.get("uri", "").endswith(port) for port in live)]


def grid_config(sim: SimHandle, root: Path, g: Grid, **sections: dict[str, Any]) -> dict[str, Any]:
    return sim_config(sim, root, **on(g),
                      pool={"workers": 2, "tabs_per_worker": 2, "heartbeat_seconds": 0.5,
                            "lease_seconds": 10.0, "shutdown_timeout": 20.0,
                            "restart_backoff_max": 2.0},
                      **sections)


def on(g: Grid) -> dict[str, Any]:
    """The config section that puts a daemon's browsers on ``g``."""
    return {"browser": {"grid_url": g.url, "grid_timeout": 60}}


def nodes_used(g: Grid) -> set[int]:
    return {g.node_of(s["sessionId"]) for s in ours(g)}


def test_a_batch_runs_on_both_nodes_outlives_an_idle_timeout_and_sigterm_leaves_no_session(
        the_grid: Grid, tmp_path: Path) -> None:
    first = 76_000_100
    pos = [str(n) for n in range(first, first + 8)]
    later = [str(n) for n in range(first + 8, first + 12)]
    with sim_server(scenario=scenario(first, 12), render_delay=0.2) as sim:
        with daemon(tmp_path, "", **grid_config(sim, tmp_path, the_grid)) as d:
            wait_until(lambda: len(ours(the_grid)) == 2, 90, what="two remote sessions")
            assert nodes_used(the_grid) == {0, 1}, "one worker's browser on each node"
            d.drop("grid.csv", csv_of(*pos))
            d.wait_report("grid")
            verify(d, sim, "grid", pos)
            # Idle for longer than the nodes' session-timeout: the sessions are kept alive.
            sessions_before = {s["sessionId"] for s in ours(the_grid)}
            idle_until = time.monotonic() + 1.5 * SESSION_TIMEOUT
            wait_until(lambda: time.monotonic() > idle_until, 3 * SESSION_TIMEOUT,
                       what="an idle pool past the session-timeout", interval=0.5)
            assert {s["sessionId"] for s in ours(the_grid)} == sessions_before
            d.drop("later.csv", csv_of(*later))
            d.wait_report("later")
            verify(d, sim, "later", later)
            assert fetched_twice(sim) == []
            assert d.terminate() == 0
        assert ours(the_grid) == [], "SIGTERM ends every session of ours on the Grid"


def test_a_node_killed_mid_batch_loses_nothing(the_grid: Grid, tmp_path: Path) -> None:
    first = 76_000_200
    pos = [str(n) for n in range(first, first + 12)]
    with sim_server(scenario=slow_pos(first, 12, delay=0.6)) as sim:
        with daemon(tmp_path, "", **grid_config(sim, tmp_path, the_grid)) as d:
            wait_until(lambda: len(ours(the_grid)) == 2, 90, what="two remote sessions")
            d.drop("node.csv", csv_of(*pos))
            wait_until(lambda: d.status()["totals"].get("LEASED"), 60, what="POs in flight")
            busy = {the_grid.node_of(s["sessionId"]) for s in ours(the_grid)}
            the_grid.kill_node(sorted(busy)[0])  # kill -9: JVM, chromedriver, Chromium
            try:
                d.wait_report("node", timeout=240)
                verify(d, sim, "node", pos)  # each PO's folder exactly its files, once
            finally:
                the_grid.start_node()
                the_grid.wait_ready(2, timeout=120)
            # The pool heals: the worker whose node died gets a session on the new node.
            wait_until(lambda: [w["state"] for w in d.status()["workers"]] == ["READY"] * 2,
                       120, what="both workers ready again")
            assert len(ours(the_grid)) == 2
            assert d.terminate() == 0
        assert ours(the_grid) == []


def test_the_hub_restarted_mid_batch_loses_nothing(the_grid: Grid, tmp_path: Path) -> None:
    first = 76_000_300
    pos = [str(n) for n in range(first, first + 10)]
    with sim_server(scenario=slow_pos(first, 10, delay=0.6)) as sim:
        with daemon(tmp_path, "", **grid_config(sim, tmp_path, the_grid)) as d:
            wait_until(lambda: len(ours(the_grid)) == 2, 90, what="two remote sessions")
            d.drop("hub.csv", csv_of(*pos))
            wait_until(lambda: d.status()["totals"].get("LEASED"), 60, what="POs in flight")
            the_grid.kill(the_grid.hub)
            the_grid.start_hub()
            # Nodes come back at their next heartbeat (3 s here); one is enough to go on. Their
            # slots may all still hold the sessions the old hub knew: no free slot needed.
            the_grid.wait_ready(1, timeout=180, free=False)
            d.wait_report("hub", timeout=240)
            verify(d, sim, "hub", pos)
            assert d.terminate() == 0
        wait_until(lambda: ours(the_grid) == [], 60,
                   what="no session of ours left (sessions the old hub lost end by time-out)")


def test_a_full_session_queue_backs_off_without_spending_po_attempts(tmp_path: Path) -> None:
    """One slot on the whole Grid, two workers: the second's session request times out in the
    hub's queue (SessionNotCreatedException) again and again; the batch runs on the first
    worker and no PO is charged an attempt for it."""
    first = 76_000_400
    pos = [str(n) for n in range(first, first + 6)]
    with grid(tmp_path / "grid", nodes=1, max_sessions=1, request_timeout=3) as small, \
            sim_server(scenario=scenario(first, 6), render_delay=0.2) as sim:
        with daemon(tmp_path, "", **grid_config(sim, tmp_path, small)) as d:
            wait_until(lambda: any("gave no session" in w["last_error"]
                                   for w in d.status()["workers"]), 90,
                       what="a worker told the Grid has no session for it")
            d.drop("queue.csv", csv_of(*pos))
            d.wait_report("queue", timeout=120)
            verify(d, sim, "queue", pos)
            batch = d.call("batches")[0]["id"]
            assert {t["attempts"] for t in d.call("batch", id=batch)["tasks"]} == {1}
            assert d.terminate() == 0


def test_a_stop_while_a_session_waits_in_the_hubs_queue_is_clean(
        the_grid: Grid, tmp_path: Path) -> None:
    """Three workers, two slots on the Grid: the third's session request waits in the hub's
    queue. SIGTERM then: the two ready workers quit, the queued request gets a slot, and that
    browser is closed before it signs in; the stop is clean and leaves no session."""
    with sim_server() as sim:
        config = grid_config(sim, tmp_path, the_grid)
        config["pool"]["workers"] = 3
        with daemon(tmp_path, "", **config) as d:
            wait_until(lambda: sorted(w["state"] for w in d.status()["workers"])
                       == ["READY", "READY", "STARTING"], 120,
                       what="two workers ready, the third's request queued")
            assert d.terminate() == 0
        log = d.log(tail=None)
        assert log.count("signed in on the native form") == 2
        assert "closing the browser without using it" in log
        wait_until(lambda: ours(the_grid) == [], 30, what="no session of ours left")


# ---- the local daemon tests of test_daemon_browser.py, once with the browsers on the Grid ----


def test_on_the_grid_files_dropped_together_and_slowly_all_become_verified_folders(
        the_grid: Grid, tmp_path: Path) -> None:
    files_dropped_together_and_slowly(tmp_path, on(the_grid))
    wait_until(lambda: ours(the_grid) == [], 30, what="the daemon's sessions closed at its stop")


# The crash point where the browser's side differs on the Grid: files the worker took from a
# node's browser that the killed daemon never recorded (the killed daemon's session is left on
# the Grid). The others (intake, the folder's rename, the report) are the daemon's own steps,
# the same whichever browser fetched: they run with local browsers only.
GRID_POINTS = ("download",)


@pytest.mark.parametrize("point", GRID_POINTS)
def test_on_the_grid_kill_9_at_any_point_resumes_without_loss_or_double_download(
        the_grid: Grid, tmp_path: Path, point: str) -> None:
    """The killed daemon's remote session is left on the Grid; the restarted daemon sweeps it
    (same state folder, same instance tag) and starts its own."""
    kill_9_at(point, tmp_path, on(the_grid), first=77_000_100)
    wait_until(lambda: ours(the_grid) == [], 30, what="no session of ours left")


def test_on_the_grid_mid_batch_session_expiry_waits_for_sign_in_and_completes(
        the_grid: Grid, tmp_path: Path) -> None:
    session_expiry_mid_batch(tmp_path, on(the_grid), first=77_001_100)


def test_remote_browsers_over_their_memory_limit_are_recycled_between_pos(
        the_grid: Grid, tmp_path: Path) -> None:
    """No PSS on a node: recycling reads the heaps the remote tabs report (every tab has some,
    so a 1 MB limit recycles each browser after its POs) and still loses and repeats nothing."""
    recycled_over_the_memory_limit(tmp_path, {**on(the_grid), "pool": {"restart_backoff_max": 2.0}},
                                   "remote browser's tabs report", first=77_002_100)
    wait_until(lambda: ours(the_grid) == [], 30, what="no session of ours left")
