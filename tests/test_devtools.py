"""The DevTools channel the engine reads tabs through: real Chromium, and hostile answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coupad.browser import Browser, BrowserSpec
from coupad.devtools import ChannelError, TabChannel, _value, debugger_address
from coupad.signin import form_sign_in
from coupad.sim.testing import SimHandle, sim_server

SLOW = "43000001"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with sim_server(scenario={"po": {SLOW: {"page_delay": 1.5}}}) as handle:
        yield handle


@pytest.fixture
def browser(sim: SimHandle, tmp_path: Path) -> Iterator[Browser]:
    started = Browser.start(BrowserSpec(profile_dir=tmp_path / "profile", download_dir=tmp_path / "dl"))
    try:
        form_sign_in(started.driver, sim.base_url, sim.username, sim.password, timeout=30)
        yield started
    finally:
        started.quit()


def new_tab_channel(browser: Browser) -> tuple[str, TabChannel]:
    driver = browser.driver
    driver.switch_to.new_window("tab")
    handle = str(driver.current_window_handle)
    address = debugger_address(driver)
    assert address is not None and address.startswith(("localhost:", "127.0.0.1:"))
    return handle, TabChannel(address, handle)


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_an_evaluation_waits_out_a_pending_navigation_without_blocking(
    browser: Browser, sim: SimHandle
) -> None:
    handle, channel = new_tab_channel(browser)
    try:
        assert channel.evaluate("return [arguments[0] + 1, location.href];", 41, wait=5) == (
            True, [42, "about:blank"])
        browser.driver.get(f"{sim.base_url}/order_headers/{SLOW}")  # 1.5 s of server time
        # Chromium holds an evaluation until the new document commits; collecting meanwhile
        # answers "not yet" at once instead of blocking (a probe sent before the navigation
        # began is answered by the blank page, and sent again).
        waiting = 0
        url = "about:blank"
        deadline = time.monotonic() + 30
        while url == "about:blank" and time.monotonic() < deadline:
            if channel.pending is None:
                channel.send("return location.href;")
            answered, value = channel.collect()
            if answered:
                url = value
            else:
                waiting += 1
                time.sleep(0.01)  # a paced probe loop, as the engine's select would be
        assert url.endswith(f"/order_headers/{SLOW}")
        assert waiting > 10  # 1.5 s of server time were spent answering "not yet"
        # An evaluation given up on (forgotten) is not taken for the next one's answer.
        channel.send("return 'stale';")
        channel.forget()
        assert channel.evaluate("return 'fresh';", wait=5) == (True, "fresh")
        with pytest.raises(ChannelError, match="script failed"):
            channel.evaluate("throw new Error('boom');", wait=5)
    finally:
        channel.close()


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_a_closed_tab_is_a_channel_error_not_a_hang(browser: Browser) -> None:
    handle, channel = new_tab_channel(browser)
    try:
        browser.driver.close()
        deadline = time.monotonic() + 10
        with pytest.raises(ChannelError):
            while time.monotonic() < deadline:
                channel.evaluate("return 1;", wait=0.5)
    finally:
        channel.close()
    with pytest.raises(ChannelError, match="cannot reach"):
        TabChannel(debugger_address(browser.driver) or "", "NO-SUCH-TARGET")


@pytest.mark.parametrize(("message", "match"), [
    ({"id": 1, "error": {"code": -32000, "message": "Cannot find context"}}, "refused"),
    ({"id": 1, "error": "plain"}, "refused"),
    ({"id": 1}, "without a result"),
    ({"id": 1, "result": "nope"}, "without a result"),
    ({"id": 1, "result": {"exceptionDetails": {"text": "Uncaught", "exception": {}}}}, "Uncaught"),
    ({"id": 1, "result": {"exceptionDetails": {"exception": {"description": "x" * 5000}}}}, "script failed"),
])
def test_hostile_answers_are_channel_errors(message: dict[str, Any], match: str) -> None:
    with pytest.raises(ChannelError, match=match) as caught:
        _value(message)
    assert len(str(caught.value)) < 400


def test_answers_without_a_value_read_as_none() -> None:
    assert _value({"id": 1, "result": {"result": {"type": "undefined"}}}) is None
    assert _value({"id": 1, "result": {"result": "odd"}}) is None
    assert _value({"id": 1, "result": {"result": {"type": "object", "value": {"a": [1]}}}}) == {"a": [1]}


class _Driver:
    def __init__(self, capabilities: Any) -> None:
        self._capabilities = capabilities

    @property
    def capabilities(self) -> Any:
        if isinstance(self._capabilities, Exception):
            raise self._capabilities
        return self._capabilities


@pytest.mark.parametrize(("capabilities", "address"), [
    ({"goog:chromeOptions": {"debuggerAddress": "localhost:40001"}}, "localhost:40001"),
    ({"goog:chromeOptions": {"debuggerAddress": "127.0.0.1:9222"}}, "127.0.0.1:9222"),
    # A remote browser (a Grid node) is not reached behind its driver's back.
    ({"goog:chromeOptions": {"debuggerAddress": "10.0.0.7:9222"}}, None),
    ({"goog:chromeOptions": {"debuggerAddress": 9222}}, None),
    ({"goog:chromeOptions": "nonsense"}, None),
    ({}, None),
    (RuntimeError("no session"), None),
])
def test_the_debugger_address_is_used_only_when_local(capabilities: Any, address: str | None) -> None:
    assert debugger_address(_Driver(capabilities)) == address
