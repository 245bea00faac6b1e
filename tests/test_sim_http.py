"""The simulator over plain HTTP: sign-in, redirects, admin API, trouble, downloads, CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
from util import wait_until

from coupad.sim.catalogue import examples
from coupad.sim.testing import SimHandle, sim_server

pytestmark = pytest.mark.timeout(60)

EXAMPLES = examples()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with sim_server() as handle:
        yield handle


def signed_in(sim: SimHandle) -> requests.Session:
    session = requests.Session()
    cookie = sim.sign_in_cookie()
    session.cookies.set(cookie["name"], cookie["value"], path=cookie["path"])
    return session


def form_sign_in(
    sim: SimHandle, password: str | None = None, return_to: str = ""
) -> requests.Response:
    session = requests.Session()
    return session.post(
        sim.base_url + "/sessions",
        data={
            "user[login]": sim.username,
            "user[password]": sim.password if password is None else password,
            "return_to": return_to,
        },
        allow_redirects=False,
    )


@pytest.mark.parametrize(
    "path",
    [
        "/order_headers/15262980",
        "/requisition_headers/4711",
        "/attachment_file/15262980-1/download",
        "/attachments/15262981-1/download",
        "/user/home",
        "/order_headers/15262980/attachments.json",
    ],
)
def test_protected_paths_redirect_to_sign_in_when_signed_out(sim: SimHandle, path: str) -> None:
    response = requests.get(sim.base_url + path + "?x=1", allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sessions/new?return_to=")
    assert unquote(response.headers["Location"].split("=", 1)[1]) == path + "?x=1"


def test_form_sign_in_sets_an_httponly_cookie_and_returns_to_the_page(sim: SimHandle) -> None:
    response = form_sign_in(sim, return_to="/order_headers/15262980")
    assert response.status_code == 302
    assert response.headers["Location"] == "/order_headers/15262980"
    set_cookie = response.headers["Set-Cookie"]
    assert (
        set_cookie.startswith("_coupa_session=")
        and "HttpOnly" in set_cookie
        and "Path=/" in set_cookie
    )
    page = requests.get(
        sim.base_url + "/order_headers/15262980",
        cookies={"_coupa_session": response.cookies["_coupa_session"]},
        allow_redirects=False,
        timeout=10,
    )
    assert page.status_code == 200 and "Purchase Order #15262980" in page.text


def test_form_sign_in_without_target_lands_on_home(sim: SimHandle) -> None:
    assert form_sign_in(sim).headers["Location"] == "/user/home"


@pytest.mark.parametrize(
    "target", ["http://evil.example/", "//evil.example/x", "/\\evil", "/sessions/new"]
)
def test_return_to_never_leaves_the_tenant(sim: SimHandle, target: str) -> None:
    assert form_sign_in(sim, return_to=target).headers["Location"] == "/user/home"


def test_wrong_password_shows_the_form_again(sim: SimHandle) -> None:
    response = form_sign_in(sim, password="nope")
    assert response.status_code == 200
    assert "Invalid email or password" in response.text
    assert 'id="user_email"' in response.text and "_coupa_session" not in response.headers.get(
        "Set-Cookie", ""
    )


def test_sso_redirect_chain_crosses_origins(tmp_path: Path) -> None:
    with sim_server(sign_in="sso") as sso:
        assert sso.idp_url != sso.base_url
        browser = requests.Session()
        first = browser.get(sso.base_url + "/order_headers/15262980", timeout=10)
        assert first.url.startswith(sso.idp_url + "/sso/authorize?")
        assert 'id="idp-username"' in first.text and 'id="user_email"' not in first.text
        # The identity provider refuses to send codes anywhere but the tenant.
        bad = browser.post(
            sso.idp_url + "/sso/login",
            data={
                "username": sso.username,
                "password": sso.password,
                "redirect_uri": "http://evil.example/sso/callback",
                "state": "/",
            },
            allow_redirects=False,
            timeout=10,
        )
        assert bad.status_code == 400
        form = {
            "username": sso.username,
            "password": sso.password,
            "redirect_uri": sso.base_url + "/sso/callback",
            "state": "/order_headers/15262980",
        }
        wrong = browser.post(sso.idp_url + "/sso/login", data={**form, "password": "x"}, timeout=10)
        assert "Incorrect username or password" in wrong.text
        landed = browser.post(sso.idp_url + "/sso/login", data=form, timeout=10)
        assert [r.url.split("?")[0] for r in landed.history] == [
            sso.idp_url + "/sso/login",
            sso.base_url + "/sso/callback",
        ]
        assert landed.url == sso.base_url + "/order_headers/15262980"
        assert "Purchase Order #15262980" in landed.text
        # A second visit to the identity provider signs in without the form (its own cookie).
        browser.cookies.clear(domain="127.0.0.1", path="/", name="_coupa_session")
        again = browser.get(sso.base_url + "/user/home", timeout=10)
        assert again.url == sso.base_url + "/user/home"


def test_sso_callback_refuses_unknown_codes() -> None:
    with sim_server(sign_in="sso") as sso:
        response = requests.get(
            sso.base_url + "/sso/callback?code=forged&state=/user/home",
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302 and response.headers["Location"] == "/sessions/new"
        assert "Set-Cookie" not in response.headers


def test_expire_sessions_signs_everyone_out(sim: SimHandle) -> None:
    browser = signed_in(sim)
    assert (
        browser.get(sim.base_url + "/user/home", allow_redirects=False, timeout=10).status_code
        == 200
    )
    sim.expire_sessions()
    after = browser.get(sim.base_url + "/user/home", allow_redirects=False, timeout=10)
    assert after.status_code == 302 and after.headers["Location"].startswith("/sessions/new")


def test_sessions_expire_after_their_lifetime() -> None:
    with sim_server(session_lifetime=0.5) as short:
        browser = signed_in(short)
        assert (
            browser.get(
                short.base_url + "/user/home", allow_redirects=False, timeout=10
            ).status_code
            == 200
        )
        wait_until(
            lambda: (
                browser.get(
                    short.base_url + "/user/home", allow_redirects=False, timeout=10
                ).status_code
                == 302
            ),
            5,
            what="session expiry",
        )


def test_truth_lists_files_whose_bytes_match_and_counters_count_them(sim: SimHandle) -> None:
    po = EXAMPLES["both_shapes"][1]
    truth = sim.truth(f"PO{po}")
    assert truth["po"] == f"PO{po}" and truth["digits"] == po and truth["outcome"] == "COMPLETED"
    assert {a["shape"] for a in truth["attachments"]} == {"link", "button"}
    browser = signed_in(sim)
    sim.reset_counters()
    for attachment in truth["attachments"]:
        response = browser.get(attachment["url"], timeout=10)
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == attachment["size"]
        assert hashlib.sha256(response.content).hexdigest() == attachment["sha256"]
    counters = sim.counters()
    assert counters["attachments"] == {a["id"]: 1 for a in truth["attachments"]}
    for attachment in truth["attachments"]:
        assert counters["paths"][attachment["url"].removeprefix(sim.base_url)] == 1


def test_64_concurrent_slow_connections_are_served_together() -> None:
    delay = 0.5
    with sim_server(scenario={"latency": {"page_delay": delay}}) as slow:
        cookie = slow.sign_in_cookie()

        def fetch(n: int) -> int:
            response = requests.get(
                f"{slow.base_url}/order_headers/{15262980 + n}",
                cookies={cookie["name"]: cookie["value"]},
                allow_redirects=False,
                timeout=30,
            )
            return response.status_code

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=64) as pool:
            statuses = list(pool.map(fetch, range(64)))
        elapsed = time.monotonic() - started
        assert statuses == [200] * 64
        # Served one after another this would take 32 s.
        assert elapsed < delay * 8, elapsed


def _start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "coupad", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_its_url_and_stops_cleanly_on_signal(signum: int) -> None:
    process = _start_cli("--port", "0")
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        second = process.stdout.readline().strip()
        assert first.startswith("coupad sim listening on http://127.0.0.1:")
        assert not first.endswith(":0")
        assert second.startswith("identity provider on http://127.0.0.1:")
        url = first.rsplit(" ", 1)[1]
        assert requests.get(url + "/_sim/health", timeout=10).json() == {"ok": True}
        assert (
            requests.get(
                url + "/order_headers/15262980", allow_redirects=False, timeout=10
            ).status_code
            == 302
        )
        process.send_signal(signum)
        assert process.wait(timeout=15) == 0
        assert process.stderr is not None
        log = process.stderr.read()
        # One line per request, on stderr.
        assert '"GET /_sim/health HTTP/1.1" 200' in log
        assert '"GET /order_headers/15262980 HTTP/1.1" 302' in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_reports_a_bad_scenario_file_and_exits_with_the_config_code(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text('[po.15262984]\nsupplier = "ACME"\ncolour = "red"\n', encoding="utf-8")
    process = _start_cli("--port", "0", "--scenario", str(scenario))
    try:
        _, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 78
    assert "po.15262984.colour" in err and "line 3" in err
