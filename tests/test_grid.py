"""Browsers on a real Selenium Grid 4 (hub + 2 nodes on this machine, Debian's Chromium): the
same engine over ``se:cdp``, click downloads brought back through managed downloads, sessions
tagged and swept, the keep-alive interval an idle session needs, a node dying under a PO, and
the Grid's answers checked as hostile input. An idle pool outliving the nodes' session-timeout
runs with the whole daemon in test_grid_daemon.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from coupad.browser import Browser, BrowserSpec, keep_session_cookies
from coupad.browser.heap import heap_bytes
from coupad.browser.hub import INSTANCE_CAP, grid_status, keepalive_interval, sweep_sessions
from coupad.browser.remote import RemoteBrowser
from coupad.config import redact_url
from coupad.engine import Engine, Outcome
from coupad.errors import BrowserError, ConfigError
from coupad.signin import form_sign_in
from coupad.sim.testing import SimHandle, sim_server
from enginekit import assert_folder_matches, config_for, engine_for, job, run_all
from gridkit import Grid, grid, sessions
from util import wait_until

pytestmark = [pytest.mark.browser]


def attachments(*items: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "shape": shape, "size": 20_000 + 1000 * n}
            for n, (name, shape) in enumerate(items)]


SCENARIO = {
    "po": {
        "36000001": {"attachments": attachments(("a.pdf", "link"), ("b.pdf", "button"))},
        "36000002": {"attachments": attachments(("c.pdf", "button"), ("c.pdf", "button"),
                                                ("d.xlsx", "link"))},
        "36000003": {"requisition": "9601"},  # none of its own: the requisition's are fetched
        "36000004": {},
        "36000005": {"attachments": attachments(("e.pdf", "button"))},
        "36000006": {"render_delay": 30.0, "attachments": attachments(("late.pdf", "link"))},
    },
    "requisition": {"9601": {"attachments": attachments(("quote.pdf", "button"), ("terms.pdf", "link"))}},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with sim_server(scenario=SCENARIO, render_delay=0.2) as handle:
        yield handle


@pytest.fixture(scope="module")
def the_grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    with grid(tmp_path_factory.mktemp("grid"), nodes=2, max_sessions=2) as g:
        yield g


def remote_engine(sim: SimHandle, root: Path, url: str, *, instance: str = "test",
                  worker: str = "w1", tabs: int = 3) -> Engine:
    config = config_for(root, sim.base_url, username=sim.username, password=sim.password)
    spec = BrowserSpec(profile_dir=root / "profile", download_dir=root / "browser-dl")
    return Engine(config, tabs=tabs, browser_factory=lambda: RemoteBrowser.start(
        spec, url, timeout=60, instance=instance, worker=worker))


def expected(sim: SimHandle, digits: str) -> list[dict[str, Any]]:
    truth = sim.truth(digits)
    return list(truth["attachments"]) + list(truth.get("requisition_attachments", []))


@pytest.mark.timeout(180)
def test_an_engine_on_the_grid_gets_both_shapes_and_leaves_no_session(
        the_grid: Grid, sim: SimHandle, tmp_path: Path) -> None:
    eng = remote_engine(sim, tmp_path, the_grid.url, instance="both-shapes")
    try:
        eng.start()
        ours = [s for s in sessions(the_grid.url)
                if s["capabilities"].get(INSTANCE_CAP) == "both-shapes"]
        assert len(ours) == 1, "the session carries its daemon's tag"
        assert eng.keepalive == pytest.approx(60.0)  # the nodes' session-timeout is 300 s
        results = run_all(eng, [job(d) for d in ("36000001", "36000002", "36000003", "36000004",
                                                 "36000005")])
    finally:
        eng.close()
    for digits in ("36000001", "36000002", "36000003", "36000005"):
        assert results[digits].outcome is Outcome.COMPLETED, results[digits].reason
        assert_folder_matches(tmp_path / "downloads" / f"PO{digits}_COMPLETED",
                              expected(sim, digits))
    assert results["36000004"].outcome is Outcome.NO_ATTACHMENTS
    # The hub drops a quit session from /status a moment after the quit returns.
    wait_until(lambda: not [s for s in sessions(the_grid.url)
                            if s["capabilities"].get(INSTANCE_CAP) == "both-shapes"], 10,
               what="the closed engine's session gone from the Grid")


@pytest.mark.timeout(180)
def test_the_base_profiles_sign_in_is_carried_to_remote_browsers(
        the_grid: Grid, sim: SimHandle, tmp_path: Path) -> None:
    config = config_for(tmp_path, sim.base_url, sign_in="profile")
    # The base profile signed in on this machine, as `coupad login` leaves it.
    local = Browser.start(BrowserSpec(profile_dir=config.paths.base_profile,
                                      download_dir=tmp_path / "login-dl"))
    try:
        form_sign_in(local.driver, sim.base_url, sim.username, sim.password, timeout=20)
        keep_session_cookies(local.driver)
    finally:
        local.quit()
    spec = BrowserSpec(profile_dir=tmp_path / "profiles" / "w1", download_dir=tmp_path / "dl")
    eng = Engine(config, tabs=2, browser_factory=lambda: RemoteBrowser.start(
        spec, the_grid.url, timeout=60, instance="carried"))
    try:
        eng.start()
        results = run_all(eng, [job("36000001"), job("36000005")])
    finally:
        eng.close()
    for digits, result in results.items():
        assert result.outcome is Outcome.COMPLETED, result.reason
        assert_folder_matches(result.folder, expected(sim, digits))  # type: ignore[arg-type]


@pytest.mark.timeout(120)
def test_the_sweep_ends_only_this_daemons_sessions(the_grid: Grid, tmp_path: Path) -> None:
    spec = BrowserSpec(profile_dir=tmp_path / "p", download_dir=tmp_path / "dl")
    ours = RemoteBrowser.start(spec, the_grid.url, timeout=60, instance="sweeper", worker="w9")
    other = RemoteBrowser.start(spec, the_grid.url, timeout=60, instance="somebody-else")
    try:
        ours_id = ours.session_id
        assert sweep_sessions(the_grid.url, "sweeper", keep=frozenset({str(ours_id)})) == 0
        assert sweep_sessions(the_grid.url, "sweeper", keep=frozenset({"w9"})) == 0  # live worker
        assert sweep_sessions(the_grid.url, "sweeper") == 1
        wait_until(lambda: ours_id not in {s["sessionId"] for s in sessions(the_grid.url)}, 10,
                   what="the swept session gone from the Grid")
        assert other.session_id in {s["sessionId"] for s in sessions(the_grid.url)}
    finally:
        ours.quit()
        other.quit()


@pytest.mark.timeout(180)
def test_a_remote_browser_reports_its_tabs_heaps_and_they_grow_with_a_page(
        the_grid: Grid, sim: SimHandle, tmp_path: Path) -> None:
    """No PSS can be read on a node: the engine sums what the tabs report of their heaps."""
    eng = remote_engine(sim, tmp_path, the_grid.url, tabs=2)
    try:
        eng.start()
        assert eng._heap is not None
        eng._heap.every = 0.2  # the engine samples every few seconds; sooner here
        wait_until(lambda: eng.poll(0.1) == [] and (eng.reported_memory_mb or 0) > 0, 30,
                   what="the tabs' first heap figures")
        before = eng.reported_memory_mb or 0.0
        conn = eng._conn
        assert conn is not None
        tab = next(t for t in conn.targets.pages() if conn.targets.session_for(t))
        # 64 MB of doubles held by a page, as a leaking page would hold them.
        conn.call("Runtime.evaluate", {"expression": "window.hog = new Float64Array(8 << 20)"},
                  session=conn.targets.session_for(tab))
        wait_until(lambda: eng.poll(0.1) == [] and (eng.reported_memory_mb or 0) > before + 50,
                   30, what="the page's allocation in the reported figure")
    finally:
        eng.close()


def test_a_local_engine_reports_no_memory_of_its_own(sim: SimHandle, tmp_path: Path) -> None:
    """A local browser's memory is read from its processes (PSS), never from its tabs."""
    eng = engine_for(config_for(tmp_path, sim.base_url, username=sim.username,
                                password=sim.password), tmp_path, tabs=1)
    try:
        eng.start()
        assert [eng.poll(0.1) for _ in range(3)] == [[], [], []]
        assert eng.reported_memory_mb is None
    finally:
        eng.close()


@pytest.mark.parametrize(("answer", "expected_bytes"), [
    ({"usedSize": 1, "totalSize": 2048, "backingStorageSize": 1024}, 3072),
    ({"totalSize": 4096}, 4096),
    ({"totalSize": "4096", "backingStorageSize": None}, 0),
    ({"totalSize": True, "backingStorageSize": -5}, 0),
    ({"totalSize": float("nan")}, 0),
    ({"totalSize": 1e300}, 0),
    ({}, 0),
])
def test_a_heap_answer_that_is_not_plain_numbers_counts_nothing(
        answer: dict[str, Any], expected_bytes: int) -> None:
    assert heap_bytes(answer) == expected_bytes


@pytest.mark.timeout(180)
def test_a_node_killed_under_a_po_ends_it_as_retryable_and_breaks_the_engine_at_once(
        the_grid: Grid, sim: SimHandle, tmp_path: Path) -> None:
    eng = remote_engine(sim, tmp_path, the_grid.url, tabs=1)
    try:
        eng.start()
        assert isinstance(eng.browser, RemoteBrowser)
        node = the_grid.node_of(str(eng.browser.session_id))
        eng.submit(job("36000006"))  # its list takes 30 s: the PO is mid-page when the node dies
        wait_until(lambda: eng.poll(0.05) == [] and any(t.committed for t in eng._runs), 30,
                   what="the page loading")
        the_grid.kill_node(node)
        results: list[Any] = []
        wait_until(lambda: results.extend(eng.poll(0.1)) or results, 40,
                   what="the PO's end once its node is gone")
        (result,) = results
        assert result.outcome is Outcome.ERROR, result.reason  # retried, never a verdict
        wait_until(lambda: eng.poll(0.1) == [] and eng.broken is not None, 40,
                   what="the engine knowing its browser is gone")
    finally:
        eng.close()
        if len(the_grid.nodes) < 2:
            the_grid.start_node()


# ---- the Grid's answers and the config, as hostile input ----------------------------------


class _Answers(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"value": 3}', b'{"value": {"nodes": 7}}',
    b'{"value": {"ready": true, "nodes": [{"availability": "UP", "slots": [5, null]}]}}',
    b'{"value": {"ready": true, "nodes": [{"availability": "UP", "sessionTimeout": "x", "slots": [{"session": {"capabilities": 4}}]}]}}',
    b"{" * 100_000, b"x" * (9 << 20),
])
def test_a_grid_status_that_is_not_what_grid_sends_is_a_clear_error(body: bytes) -> None:
    handler = type("Answers", (_Answers,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://user:s3cret@127.0.0.1:{server.server_address[1]}"
        try:
            status = grid_status(url, timeout=5)
        except BrowserError as exc:
            assert "s3cret" not in str(exc)
            assert "127.0.0.1" in str(exc)
        else:  # what can be read from it is read, and nothing more
            assert status.slots <= 2 and status.session_timeout is None
    finally:
        server.shutdown()
        server.server_close()


def test_a_grid_that_is_not_there_is_a_clear_error() -> None:
    with pytest.raises(BrowserError, match="did not answer"):
        grid_status("http://127.0.0.1:9", timeout=2)


@pytest.mark.parametrize("url", ["ftp://grid:4444", "http://", "grid:4444", "http://g:4444/?a=1",
                                 "javascript:alert(1)", "http://u:p@:4444"])
def test_a_grid_url_that_is_not_a_grids_address_is_refused(tmp_path: Path, url: str) -> None:
    from coupad.config import load

    path = tmp_path / "c.toml"
    path.write_text(f'[browser]\ngrid_url = {json.dumps(url)}\n')
    with pytest.raises(ConfigError, match="browser.grid_url") as caught:
        load(path, env={})
    assert ":p@" not in str(caught.value)


def test_a_password_in_the_grid_url_never_reaches_a_log_line() -> None:
    assert redact_url("https://coupad:hunter2@grid.example:4444/wd/hub") == \
        "https://***@grid.example:4444/wd/hub"
    assert redact_url("http://grid.example:4444") == "http://grid.example:4444"


@pytest.mark.parametrize(("timeout", "interval"), [(300.0, 60.0), (3.0, 1.0), (None, 60.0),
                                                    (0.0, 60.0), (0.3, 0.5)])
def test_idle_sessions_are_pinged_well_inside_the_nodes_timeout(timeout: float | None,
                                                               interval: float) -> None:
    assert keepalive_interval(timeout) == pytest.approx(interval)


# ---- coupad check --------------------------------------------------------------------------


def _check(tmp_path: Path, base_url: str, grid_url: str) -> subprocess.CompletedProcess[str]:
    secret = tmp_path / "password"
    secret.write_text("coupa-sim")
    secret.chmod(0o600)
    config = tmp_path / "coupad.toml"
    config.write_text(f'[coupa]\nbase_url = "{base_url}"\nsign_in = "form"\n'
                      f'username = "buyer@example.com"\npassword_file = "password"\n'
                      f'[browser]\ngrid_url = "{grid_url}"\ngrid_timeout = 30\n')
    return subprocess.run([sys.executable, "-m", "coupad", "check", "-c", str(config)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(150)
def test_check_reports_the_grid_and_signs_in_on_a_remote_session(
        the_grid: Grid, sim: SimHandle, tmp_path: Path) -> None:
    out = _check(tmp_path, sim.base_url, the_grid.url)
    assert out.returncode == 0, out.stdout + out.stderr
    (line,) = [x for x in out.stdout.splitlines() if x.split()[1] == "grid"]
    assert line.startswith("ok") and "node(s) up" in line and "signed in" in line, line
    assert not [s for s in sessions(the_grid.url)
                if s["capabilities"].get(INSTANCE_CAP) == "coupad-check"]


@pytest.mark.timeout(60)
def test_check_names_a_grid_that_does_not_answer_without_its_password(
        sim: SimHandle, tmp_path: Path) -> None:
    out = _check(tmp_path, sim.base_url, "http://admin:s3cret@127.0.0.1:9")
    assert out.returncode != 0
    (line,) = [x for x in out.stdout.splitlines() if x.split()[1] == "grid"]
    assert line.startswith("FAIL") and "did not answer" in line, line
    assert "s3cret" not in out.stdout + out.stderr
