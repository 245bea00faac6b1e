"""The simulator as Chromium sees it: sign-in, JS-rendered attachments, toolbar, downloads."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import ElementClickInterceptedException, NoSuchElementException
from selenium.webdriver.common.by import By
from util import wait_until

from coupad.browser import Browser, BrowserSpec
from coupad.sim.catalogue import examples
from coupad.sim.testing import SimHandle, sim_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

EXAMPLES = examples()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    root = tmp_path_factory.mktemp("sim-browser")
    started = Browser.start(
        BrowserSpec(profile_dir=root / "profile", download_dir=root / "downloads")
    )
    try:
        yield started
    finally:
        started.quit()


@pytest.fixture
def downloads(browser: Browser) -> Path:
    folder = browser.spec.download_dir
    for leftover in folder.iterdir():
        leftover.unlink()
    return folder


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with sim_server() as handle:
        yield handle


def _fresh(browser: Browser, sim: SimHandle) -> None:
    """Start from a blank, signed-out browser (cookies of earlier tests dropped)."""
    browser.driver.get("about:blank")
    browser.driver.delete_all_cookies()
    browser.driver.get(sim.base_url + "/_sim/health")
    wait_until(lambda: "ok" in browser.driver.page_source, 10, what="health page")
    browser.driver.delete_all_cookies()


def _sign_in_by_cookie(browser: Browser, sim: SimHandle) -> None:
    _fresh(browser, sim)
    browser.driver.add_cookie(sim.sign_in_cookie())


def _open(browser: Browser, url: str, css: str = "h1") -> None:
    browser.driver.get(url)
    wait_until(
        lambda: browser.driver.find_elements(By.CSS_SELECTOR, css), 15, what=f"{css} on {url}"
    )


def _heading(browser: Browser) -> str:
    return str(browser.driver.find_element(By.CSS_SELECTOR, "h1").text)


def test_form_sign_in_lands_on_home(browser: Browser, sim: SimHandle) -> None:
    _fresh(browser, sim)
    _open(browser, sim.base_url + "/sessions/new", "#user_email")
    driver = browser.driver
    driver.find_element(By.ID, "user_email").send_keys(sim.username)
    driver.find_element(By.ID, "user_password").send_keys(sim.password)
    driver.find_element(By.ID, "login_form").submit()
    wait_until(lambda: "home" in driver.current_url, 15, what="landing on home")
    cookie = driver.get_cookie("_coupa_session")
    assert cookie is not None and cookie["httpOnly"] is True


def test_wrong_password_stays_on_the_form(browser: Browser, sim: SimHandle) -> None:
    _fresh(browser, sim)
    _open(browser, sim.base_url + "/sessions/new", "#user_email")
    driver = browser.driver
    driver.find_element(By.ID, "user_email").send_keys(sim.username)
    driver.find_element(By.ID, "user_password").send_keys("wrong")
    driver.find_element(By.ID, "login_button").click()
    wait_until(lambda: "Invalid email or password" in driver.page_source, 15, what="error message")
    assert driver.get_cookie("_coupa_session") is None


def test_sso_sign_in_crosses_origins_and_lands_on_home(browser: Browser) -> None:
    with sim_server(sign_in="sso") as sso:
        _fresh(browser, sso)
        driver = browser.driver
        driver.get(sso.base_url + "/user/home")
        wait_until(
            lambda: driver.find_elements(By.ID, "idp-username"), 15, what="identity provider form"
        )
        assert driver.current_url.startswith(sso.idp_url + "/sso/authorize")
        assert not driver.find_elements(By.ID, "user_email")
        driver.find_element(By.ID, "idp-username").send_keys(sso.username)
        driver.find_element(By.ID, "idp-password").send_keys(sso.password)
        driver.find_element(By.ID, "idp-submit").click()
        wait_until(
            lambda: driver.current_url.startswith(sso.base_url) and "home" in driver.current_url,
            15,
            what="back on the tenant's home",
        )
        assert "Welcome back" in _heading(browser)
        # Expiry ends the identity provider's session too: the next visit needs the form again.
        sso.expire_sessions()
        driver.get(sso.base_url + "/order_headers/15262980")
        wait_until(
            lambda: driver.find_elements(By.ID, "idp-username"), 15, what="form after expiry"
        )
        assert driver.current_url.startswith(sso.idp_url)


def test_signed_out_and_expired_sessions_redirect_to_sign_in(
    browser: Browser, sim: SimHandle
) -> None:
    po = EXAMPLES["link_only"][0]
    _fresh(browser, sim)
    _open(browser, f"{sim.base_url}/order_headers/{po}", "#user_email")
    assert "/sessions/new" in browser.driver.current_url
    _sign_in_by_cookie(browser, sim)
    _open(browser, f"{sim.base_url}/order_headers/{po}", "#attachments")
    sim.expire_sessions()
    _open(browser, f"{sim.base_url}/order_headers/{po}", "#user_email")
    assert "/sessions/new" in browser.driver.current_url


def test_sessions_past_their_lifetime_redirect_to_sign_in(browser: Browser) -> None:
    with sim_server(session_lifetime=3.0) as short:
        _sign_in_by_cookie(browser, short)
        _open(browser, f"{short.base_url}/order_headers/15262980", "#attachments")

        def signed_out() -> bool:
            _open(browser, f"{short.base_url}/order_headers/15262980", "#attachments, #user_email")
            return bool(browser.driver.find_elements(By.ID, "user_email"))

        wait_until(signed_out, 10, interval=0.2, what="the session to expire")
        assert "/sessions/new?return_to=" in browser.driver.current_url


def test_attachment_list_appears_only_after_the_render_delay(browser: Browser) -> None:
    delay = 1.5
    po = EXAMPLES["both_shapes"][0]
    with sim_server(render_delay=delay) as slow:
        _sign_in_by_cookie(browser, slow)
        driver = browser.driver
        started = time.monotonic()
        _open(browser, f"{slow.base_url}/order_headers/{po}", "#attachment-list")
        skeleton = time.monotonic()
        assert skeleton - started < delay
        assert driver.find_element(By.ID, "attachment-list").get_attribute("aria-busy") == "true"
        assert not driver.find_elements(
            By.CSS_SELECTOR, "a[href*='attachment_file'], span[role=button]"
        )
        expected = len(slow.truth(po)["attachments"])
        wait_until(
            lambda: (
                len(
                    driver.find_elements(
                        By.CSS_SELECTOR, "a[href*='attachment_file'], span[role=button]"
                    )
                )
                == expected
            ),
            15,
            what="attachments rendered",
        )
        assert time.monotonic() - started >= delay


def test_span_attachment_clicked_under_the_toolbar_downloads_the_true_bytes(
    browser: Browser, sim: SimHandle, downloads: Path
) -> None:
    po = EXAMPLES["button_only"][0]
    truth = sim.truth(po)
    first = truth["attachments"][0]
    assert first["shape"] == "button"
    _sign_in_by_cookie(browser, sim)
    driver = browser.driver
    _open(browser, f"{sim.base_url}/order_headers/{po}", "span[role=button]")
    button = driver.find_element(
        By.CSS_SELECTOR, f"span[aria-label='{first['name']} file attachment']"
    )
    assert button.get_attribute("title") == first["name"]
    assert "/attachments/" not in driver.page_source  # the URL lives only in JavaScript
    driver.execute_script("arguments[0].scrollIntoView(true);", button)
    with pytest.raises(ElementClickInterceptedException):
        button.click()
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    target = downloads / first["name"]
    wait_until(
        lambda: target.exists() and target.stat().st_size == first["size"], 30, what=str(target)
    )
    assert hashlib.sha256(target.read_bytes()).hexdigest() == first["sha256"]
    assert sim.counters()["attachments"][first["id"]] == 1


def test_rfc5987_names_round_trip_through_chromium(
    browser: Browser, sim: SimHandle, downloads: Path
) -> None:
    po = EXAMPLES["rfc5987_names"][0]
    link = next(
        a
        for a in sim.truth(po)["attachments"]
        if a["shape"] == "link" and a["disposition"] == "rfc5987"
    )
    _sign_in_by_cookie(browser, sim)
    _open(browser, f"{sim.base_url}/order_headers/{po}", "a[href*='attachment_file']")
    anchor = browser.driver.find_element(
        By.XPATH, f"//a[@href='{link['url'].removeprefix(sim.base_url)}']"
    )
    assert anchor.text == link["name"]
    browser.driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", anchor
    )
    target = downloads / link["name"]
    wait_until(
        lambda: target.exists() and target.stat().st_size == link["size"], 30, what=str(target)
    )
    assert hashlib.sha256(target.read_bytes()).hexdigest() == link["sha256"]


@pytest.mark.parametrize(
    ("case", "texts"),
    [
        ("not_found", ["Oops! We couldn't find what you wanted"]),
        (
            "not_found_variant",
            ["The page you were looking for doesn't exist", "Hoppla! Wir konnten nicht finden"],
        ),
        ("access_denied", ["You are not authorized to view this page"]),
        ("access_denied_variant", ["Access denied", "Sie sind nicht berechtigt", "Accès refusé"]),
    ],
)
def test_error_pages_show_their_text(
    browser: Browser, sim: SimHandle, case: str, texts: list[str]
) -> None:
    _sign_in_by_cookie(browser, sim)
    seen = set()
    for po in EXAMPLES[case]:
        _open(browser, f"{sim.base_url}/order_headers/{po}")
        heading = _heading(browser)
        assert any(text in heading for text in texts), heading
        seen.add(next(text for text in texts if text in heading))
        with pytest.raises(NoSuchElementException):
            browser.driver.find_element(By.ID, "attachments")
    assert seen == set(texts)  # every variant of the case occurs among the examples


def test_throttled_po_shows_the_429_page_then_the_order(browser: Browser) -> None:
    with sim_server(scenario={"po": {"15262984": {"trouble": {"throttle_first": 1}}}}) as throttled:
        _sign_in_by_cookie(browser, throttled)
        _open(browser, f"{throttled.base_url}/order_headers/15262984")
        assert _heading(browser) == "Too Many Requests"
        assert "you have made too many requests, please slow down" in browser.driver.page_source
        _open(browser, f"{throttled.base_url}/order_headers/15262984", "#attachments")
        assert _heading(browser) == "Purchase Order #15262984"


def test_inline_pdf_behind_a_span_downloads_instead_of_opening(
    browser: Browser, sim: SimHandle, downloads: Path
) -> None:
    po = EXAMPLES["inline_pdf"][0]
    pdf = next(
        a
        for a in sim.truth(po)["attachments"]
        if a["disposition"] == "inline" and a["shape"] == "button"
    )
    _sign_in_by_cookie(browser, sim)
    driver = browser.driver
    _open(browser, f"{sim.base_url}/order_headers/{po}", "span[role=button]")
    page = driver.current_url
    button = driver.find_element(By.CSS_SELECTOR, f"span[title='{pdf['name']}']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    target = downloads / pdf["name"]
    wait_until(
        lambda: target.exists() and target.stat().st_size == pdf["size"], 30, what=str(target)
    )
    assert hashlib.sha256(target.read_bytes()).hexdigest() == pdf["sha256"]
    assert driver.current_url == page  # the PO page stays; no PDF viewer took over


def test_server_error_pages_in_the_browser(browser: Browser) -> None:
    with sim_server(scenario={"po": {15262980: {"trouble": {"server_error_first": 3}}}}) as failing:
        _sign_in_by_cookie(browser, failing)
        seen = []
        for _ in range(3):
            _open(browser, f"{failing.base_url}/order_headers/15262980")
            seen.append(_heading(browser))
        assert seen == [
            "We're sorry, but something went wrong.",
            "502 Bad Gateway",
            "Service Unavailable — Coupa is temporarily unavailable, please try again later.",
        ]
        _open(browser, f"{failing.base_url}/order_headers/15262980", "#attachments")


# ---- page shapes and download options ----------------------------------------------------

_COUNT_ATTACHMENTS_JS = """
var seen = {};
document.querySelectorAll('[aria-label]').forEach(function (el) {
  var m = /^(.*) file attachment$/.exec(el.getAttribute('aria-label'));
  if (m) { seen[m[1]] = true; }
});
document.querySelectorAll('a[href]').forEach(function (a) {
  if (/attachment_file|\\/attachments\\//.test(a.href)) { seen[a.textContent] = true; }
});
return Object.keys(seen).length;
"""

GROWING = {
    "po": {
        # First slice in the HTML, the rest by the page's own requests.
        "42000001": {
            "page": {"arrival": "inline", "steps": [0.0, 0.8, 1.6], "grow_by": "request",
                     "markup": "varied", "noise": ["ticker"]},
            "attachments": [{"name": "a.pdf"}, {"name": "b.pdf", "shape": "button", "step": 1},
                            {"name": "c.pdf", "step": 1}, {"name": "d.pdf", "step": 2}],
        },
        # Nothing at first (an empty list is shown), then everything by a timer.
        "42000002": {
            "page": {"arrival": "timer", "steps": [0.2, 1.2], "decoys": ["print_button"]},
            "attachments": [{"name": "late.pdf", "shape": "button", "step": 1},
                            {"name": "later.pdf", "step": 1}],
        },
        "42000003": {
            "attachments": [{"name": "stored by click.pdf", "shape": "button", "redirect": True,
                             "no_length": True, "size": 120_000}],
        },
    }
}


@pytest.fixture(scope="module")
def growing() -> Iterator[SimHandle]:
    with sim_server(scenario=GROWING) as handle:
        yield handle


@pytest.mark.parametrize(("po", "counts"), [("42000001", [1, 3, 4]), ("42000002", [0, 2])])
def test_a_growing_list_appears_slice_by_slice(
    browser: Browser, growing: SimHandle, po: str, counts: list[int]
) -> None:
    _sign_in_by_cookie(browser, growing)
    steps = GROWING["po"][po]["page"]["steps"]
    browser.driver.get(f"{growing.base_url}/order_headers/{po}")
    started = time.monotonic()
    seen: list[tuple[int, float]] = []
    while time.monotonic() - started < steps[-1] + 1.5:
        count = browser.driver.execute_script(_COUNT_ATTACHMENTS_JS)
        if not seen or seen[-1][0] != count:
            seen.append((count, time.monotonic() - started))
        time.sleep(0.05)
    assert [count for count, _ in seen] == counts, seen
    for (_, at), due in zip(seen[1:], steps[1:], strict=True):
        assert at >= due - 0.1, seen  # never earlier than its step (the load itself is later)


def test_a_redirected_click_download_lands_without_the_tenant_cookie(
    browser: Browser, growing: SimHandle, downloads: Path
) -> None:
    stored = growing.truth("42000003")["attachments"][0]
    _sign_in_by_cookie(browser, growing)
    growing.reset_counters()
    _open(browser, f"{growing.base_url}/order_headers/42000003", "span[role=button]")
    button = browser.driver.find_element(By.CSS_SELECTOR, "span[role=button]")
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    target = downloads / stored["name"]
    wait_until(
        lambda: target.exists() and target.stat().st_size == stored["size"], 30, what=str(target)
    )
    assert hashlib.sha256(target.read_bytes()).hexdigest() == stored["sha256"]
    log = growing.storage_requests()
    assert [entry["status"] for entry in log] == [200]
    assert log[0]["cookie"] is None and log[0]["authorization"] is None
