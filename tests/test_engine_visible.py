"""Pages that work only while they are visible, and POs that only watch, with real Chromium.

A headless Chromium runs animation frames only for the tab in front of its window, and tells
every other tab it is hidden (``document.visibilityState``); pages pause there — a list
rendered in an animation frame never appears, a page that fetches its list only once it is
seen never fetches it. So the engine opens each tab with focus emulation, under which every
tab is visible, and several POs render at once as they would for a person.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coupad.browser import Browser, BrowserSpec
from coupad.browser.cdp import Connection, browser_endpoint
from coupad.engine import Engine
from coupad.errors import BrowserError
from coupad.sim.testing import SimHandle, sim_server
from enginekit import assert_folder_matches, config_for, engine_for, job, run_all
from util import wait_until

pytestmark = [pytest.mark.browser]

FRAME = {"render_delay": 0.3, "page": {"arrival": "frame"}}
VISIBLE = {"render_delay": 0.3, "page": {"arrival": "visible"}}
SCENARIO: dict[str, Any] = {
    "po": {
        **{f"3300000{n}": {**(FRAME if n % 2 else VISIBLE), "attachments": [
            {"name": f"seen {n}.pdf", "size": 1500 + n},
            {"name": f"clicked {n}.pdf", "size": 1700 + n, "shape": "button"}]}
           for n in range(6)},
        # The requisition of a PO without files of its own renders its list in a frame too.
        "33000010": {"requisition": "33000011", "attachments": []},
    },
    "requisition": {
        "33000011": {**FRAME, "attachments": [{"name": "quote.pdf", "size": 2100}]},
    },
}
STATE_JS = """
var shown = document.querySelectorAll('section [aria-label$="file attachment"], section a[href*="attachment_file"]');
return [document.visibilityState, shown.length];
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with sim_server(scenario=SCENARIO) as handle:
        yield handle


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    root = tmp_path_factory.mktemp("visible-browser")
    started = Browser.start(BrowserSpec(profile_dir=root / "profile", download_dir=root / "dl"))
    try:
        yield started
    finally:
        started.quit()


@pytest.mark.timeout(60)
def test_the_simulators_frame_and_visible_pages_show_nothing_in_a_background_tab(
        sim: SimHandle, browser: Browser) -> None:
    # What these pages do: hidden, no list however long one waits; in front, the list.
    driver = browser.driver
    conn = Connection(browser_endpoint(driver))
    try:
        conn.attach_tabs()
        driver.get(f"{sim.base_url}/user/home")
        sim_sign_in(driver, sim)
        front = driver.current_window_handle
        hidden = {}
        for digits in ("33000000", "33000001"):
            target = conn.call("Target.createTarget", {"url": "about:blank", "background": True})
            session = conn.wait_session(target["targetId"])
            conn.call("Page.navigate", {"url": f"{sim.base_url}/order_headers/{digits}"},
                      session=session)
            hidden[digits] = session
        def page_age_ms(session: str) -> float:
            return float(conn.call("Runtime.evaluate", {
                "expression": "document.readyState === 'complete' ? performance.now() : 0",
                "returnByValue": True}, session=session)["result"]["value"])

        # Each page has lived past the render delay, with a margin, by its own clock: what
        # would have rendered has had its time; nothing may have come.
        wait_until(lambda: all(page_age_ms(s) > (0.3 + 1.5) * 1000 for s in hidden.values()),
                   20, what="the hidden pages past their render delay")
        for digits, session in hidden.items():
            conn.wait_session(conn.targets.target_of(session) or "")
            state = conn.call("Runtime.evaluate", {
                "expression": f"(function () {{ {STATE_JS} }})()", "returnByValue": True},
                session=session)["result"]["value"]
            assert state == ["hidden", 0], digits
        driver.switch_to.window(front)
        for digits in ("33000000", "33000001"):
            driver.get(f"{sim.base_url}/order_headers/{digits}")
            deadline = time.monotonic() + 10
            while driver.execute_script(STATE_JS) != ["visible", 2]:
                assert time.monotonic() < deadline, driver.execute_script(STATE_JS)
                time.sleep(0.05)
    finally:
        conn.close()


def sim_sign_in(driver: Any, sim: SimHandle) -> None:
    from coupad.signin import form_sign_in

    form_sign_in(driver, sim.base_url, sim.username, sim.password, timeout=20)


@pytest.mark.timeout(120)
def test_pos_in_every_tab_see_lists_that_render_only_while_visible(
        sim: SimHandle, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("visible")
    config = config_for(root, sim.base_url, username=sim.username, password=sim.password)
    engine: Engine = engine_for(config, root, tabs=3)
    try:
        engine.start()
        pos = [f"3300000{n}" for n in range(6)] + ["33000010"]
        results = run_all(engine, [job(d) for d in pos])
        for digits in pos:
            truth = sim.truth(digits)
            result = results[digits]
            assert result.outcome.value == truth["expected_status"] == "COMPLETED", (
                digits, result.reason)
            folder = config.paths.downloads / f"PO{digits}_COMPLETED"
            assert_folder_matches(folder, truth["expected_files"])
    finally:
        engine.close()


# ---- watching is latency, not work -----------------------------------------------------------

WATCHED = {"33000020": {"render_delay": 2.0, "page": {"arrival": "timer"},
                        "attachments": [{"name": "late.pdf", "size": 1234}]},
           "33000021": {"attachments": [{"name": "prompt.pdf", "size": 4321}]}}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("watching_tabs", [1, 0])
def test_a_po_that_only_watches_its_page_lets_the_next_po_start(
        tmp_path: Path, watching_tabs: int) -> None:
    # One tab: the first PO's list comes 2 s after load by a timer, so it only watches its page
    # meanwhile; with pool.watching_tabs = 1 the second PO starts and ends in that time.
    with sim_server(scenario={"po": WATCHED}) as sim:
        config = config_for(tmp_path, sim.base_url, username=sim.username, password=sim.password,
                            pool={"watching_tabs": watching_tabs})
        engine = engine_for(config, tmp_path, tabs=1)
        try:
            engine.start()
            engine.submit(job("33000020"))
            assert engine.room == 0
            ended: dict[str, Any] = {}

            def watching() -> bool:
                ended.update({r.job.po.digits: r for r in engine.poll(0.05)})
                return engine.watching == {"33000020"}

            wait_until(watching, 20, interval=0.01, what="the first PO watching its page")
            assert engine.room == watching_tabs
            if watching_tabs:
                engine.submit(job("33000021"))
            else:
                with pytest.raises(BrowserError):
                    engine.submit(job("33000021"))
            wait_until(lambda: ended.update({r.job.po.digits: r for r in engine.poll(0.05)})
                       or len(ended) == 1 + watching_tabs, 60, what="the POs' ends")
            assert [r.outcome.value for r in ended.values()] == ["COMPLETED"] * (1 + watching_tabs)
            if watching_tabs:
                # The second PO ended while the first still waited for its list.
                assert list(ended) == ["33000021", "33000020"]
                assert ended["33000021"].timings["total"] < ended["33000020"].timings["total"]
        finally:
            engine.close()
