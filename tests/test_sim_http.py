"""The simulator over plain HTTP: sign-in, redirects, admin API, trouble, downloads, CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from html import escape as html_escape
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
from util import wait_until

from coupad.sim.catalogue import examples
from coupad.sim.scenario import ScenarioError
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


def test_a_mail_attachment_is_served_as_the_outlook_file_the_truth_describes(
        sim: SimHandle) -> None:
    po = EXAMPLES["button_only"][0]
    truth = sim.truth(f"PO{po}")
    mails = [a for a in truth["attachments"] if a["mail"]]
    assert [a["name"].endswith(".msg") for a in mails] == [True, True]
    browser = signed_in(sim)
    for attachment in mails:
        response = browser.get(attachment["url"], timeout=10)
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == attachment["size"] == len(response.content)
        assert hashlib.sha256(response.content).hexdigest() == attachment["sha256"]
        assert response.content.startswith(bytes.fromhex("D0CF11E0A1B11AE1"))  # OLE2


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


# ---- pages -------------------------------------------------------------------------------


def test_po_page_skeleton_has_toolbar_supplier_decoys_and_no_attachment_urls(
    sim: SimHandle,
) -> None:
    po = EXAMPLES["with_requisition"][0]
    truth = sim.truth(po)
    page = signed_in(sim).get(f"{sim.base_url}/order_headers/{po}", timeout=10)
    assert page.status_code == 200
    html = page.text
    assert 'id="toolbar"' in html and "position: fixed" in html and "z-index: 1000" in html
    supplier = html_escape(truth["supplier"], quote=False)
    assert f'<dt>Supplier</dt><dd><span class="supplier-name">{supplier}</span>' in html
    assert f'<a href="/requisition_headers/{truth["requisition_id"]}">' in html
    assert f'href="/order_headers/{po}/print.pdf">Export to PDF</a>' in html
    # The list is rendered by JavaScript: no attachment URL or name is in the served HTML.
    assert "attachment_file" not in html and "/attachments/" not in html
    for attachment in truth["attachments"]:
        assert attachment["name"] not in html


def test_attachment_data_arrives_after_the_render_delay() -> None:
    po = EXAMPLES["link_only"][0]
    with sim_server(render_delay=1.0) as slow:
        browser = signed_in(slow)
        started = time.monotonic()
        browser.get(f"{slow.base_url}/order_headers/{po}", timeout=10)
        assert time.monotonic() - started < 0.9
        started = time.monotonic()
        data = browser.get(
            f"{slow.base_url}/order_headers/{po}/attachments.json", timeout=10
        ).json()
        assert time.monotonic() - started >= 1.0
        assert [a["name"] for a in data["attachments"]] == [
            a["name"] for a in slow.truth(po)["attachments"]
        ]


def test_requisition_page_and_its_attachments(sim: SimHandle) -> None:
    po = EXAMPLES["requisition_only"][0]
    truth = sim.truth(po)
    assert truth["outcome"] == "NO_ATTACHMENTS" and truth["attachments"] == []
    req = truth["requisition_id"]
    browser = signed_in(sim)
    page = browser.get(f"{sim.base_url}/requisition_headers/{req}", timeout=10)
    assert page.status_code == 200 and f"Requisition #{req}" in page.text
    data = browser.get(
        f"{sim.base_url}/requisition_headers/{req}/attachments.json", timeout=10
    ).json()
    assert [a["name"] for a in data["attachments"]] == [
        a["name"] for a in truth["requisition_attachments"]
    ]
    for attachment in truth["requisition_attachments"]:
        body = browser.get(attachment["url"], timeout=10).content
        assert hashlib.sha256(body).hexdigest() == attachment["sha256"]


@pytest.mark.parametrize(
    ("case", "outcome"),
    [
        ("not_found", "NOT_FOUND"),
        ("not_found_variant", "NOT_FOUND"),
        ("access_denied", "ACCESS_DENIED"),
        ("access_denied_variant", "ACCESS_DENIED"),
    ],
)
def test_error_pages_answer_http_200(sim: SimHandle, case: str, outcome: str) -> None:
    browser = signed_in(sim)
    for po in EXAMPLES[case]:
        truth = sim.truth(po)
        assert (
            truth["outcome"] == outcome and truth["attachments"] == [] and truth["supplier"] is None
        )
        page = browser.get(f"{sim.base_url}/order_headers/{po}", allow_redirects=False, timeout=10)
        assert page.status_code == 200 and 'class="error-page"' in page.text
        assert 'id="attachments"' not in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/order_headers/abc",
        "/order_headers/" + "9" * 5000,
        "/order_headers/%D9%A1%D9%A2%D9%A3",
        "/requisition_headers/x",
    ],
)
def test_hostile_numbers_show_not_found(sim: SimHandle, path: str) -> None:
    page = signed_in(sim).get(sim.base_url + path, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and "Oops! We couldn't find what you wanted" in page.text


@pytest.mark.parametrize(
    "att_id", ["nope", "15262980-99", "R1-x", "9" * 5000 + "-1", "..%2F..%2Fetc-1"]
)
def test_unknown_attachments_are_404(sim: SimHandle, att_id: str) -> None:
    response = signed_in(sim).get(f"{sim.base_url}/attachments/{att_id}/download", timeout=10)
    assert response.status_code == 404


def test_decoy_links_are_not_attachments(sim: SimHandle) -> None:
    browser = signed_in(sim)
    sim.reset_counters()
    pdf = browser.get(f"{sim.base_url}/order_headers/15262980/print.pdf", timeout=10)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert (
        browser.get(f"{sim.base_url}/order_headers/15262980/export.csv", timeout=10).status_code
        == 200
    )
    assert sim.counters()["attachments"] == {}


# ---- downloads ---------------------------------------------------------------------------


def _filename(header: str) -> str:
    """The file name a client should use: filename* wins over filename (RFC 6266)."""
    parts = [p.strip() for p in header.split(";")]
    extended = [p for p in parts if p.startswith("filename*=")]
    if extended:
        charset, _, encoded = extended[0].removeprefix("filename*=").partition("''")
        assert charset == "UTF-8"
        return unquote(encoded, encoding="utf-8", errors="strict")
    plain = header.split("filename=", 1)[1]
    assert plain.startswith('"') and plain.endswith('"')
    return plain[1:-1].replace('\\"', '"').replace("\\\\", "\\")


@pytest.mark.parametrize("case", ["rfc5987_names", "awkward_names", "inline_pdf", "mixed"])
def test_content_disposition_names_round_trip(sim: SimHandle, case: str) -> None:
    browser = signed_in(sim)
    for po in EXAMPLES[case]:
        for attachment in sim.truth(po)["attachments"]:
            response = browser.get(attachment["url"], timeout=10)
            header = response.headers["Content-Disposition"]
            header.encode("ascii")  # RFC 5987 and escaping keep every header plain ASCII here
            assert _filename(header) == attachment["name"]
            kind = {"plain": "attachment;", "rfc5987": "attachment;", "inline": "inline;"}
            assert header.startswith(kind[attachment["disposition"]])
            if attachment["disposition"] == "rfc5987":
                assert "filename*=UTF-8''" in header
            if attachment["disposition"] == "inline":
                assert response.headers["Content-Type"] == "application/pdf"
                assert response.content.startswith(b"%PDF")
            assert hashlib.sha256(response.content).hexdigest() == attachment["sha256"]


def test_a_large_file_streams_with_its_length(sim: SimHandle) -> None:
    po = EXAMPLES["large"][0]
    big = sim.truth(po)["attachments"][0]
    assert big["size"] == 5_000_000
    digest = hashlib.sha256()
    with signed_in(sim).get(big["url"], stream=True, timeout=30) as response:
        assert int(response.headers["Content-Length"]) == big["size"]
        for piece in response.iter_content(1 << 16):
            digest.update(piece)
    assert digest.hexdigest() == big["sha256"]


def test_bandwidth_limits_downloads() -> None:
    scenario = {
        "po": {
            "15262980": {
                "trouble": {"bandwidth": 200_000},
                "attachments": [{"name": "slow.bin", "size": 100_000}],
            }
        }
    }
    with sim_server(scenario=scenario) as slow:
        started = time.monotonic()
        body = (
            signed_in(slow).get(slow.truth(15262980)["attachments"][0]["url"], timeout=10).content
        )
        elapsed = time.monotonic() - started
        assert len(body) == 100_000
        assert 0.45 <= elapsed < 3, elapsed


def test_realistic_preset_takes_about_a_second_per_page() -> None:
    with sim_server(preset="realistic") as real:
        browser = signed_in(real)
        started = time.monotonic()
        browser.get(f"{real.base_url}/order_headers/15262980", timeout=10)
        browser.get(f"{real.base_url}/order_headers/15262980/attachments.json", timeout=10)
        assert 0.9 <= time.monotonic() - started < 3


def test_the_sign_in_pages_cost_server_time_like_any_page() -> None:
    delay = 0.4
    with sim_server(scenario={"latency": {"page_delay": delay}}) as slow:
        started = time.monotonic()
        form = requests.get(slow.base_url + "/sessions/new", timeout=10)
        between = time.monotonic()
        answer = form_sign_in(slow)
        ended = time.monotonic()
        assert form.status_code == 200 and "user[password]" in form.text
        assert answer.status_code == 302, answer.status_code
        assert between - started >= delay and ended - between >= delay


# ---- trouble -----------------------------------------------------------------------------


def test_throttle_and_server_errors_for_given_visits() -> None:
    scenario = {
        "po": {
            "15262980": {"trouble": {"throttle_first": 2}},
            "15262981": {"trouble": {"server_error_first": 3}},
            "15262982": {"trouble": {"throttle_page_first": 1}},
        }
    }
    with sim_server(scenario=scenario) as trouble:
        browser = signed_in(trouble)

        def visit(digits: str) -> requests.Response:
            return browser.get(
                f"{trouble.base_url}/order_headers/{digits}", allow_redirects=False, timeout=10
            )

        first, second, third = visit("15262980"), visit("15262980"), visit("15262980")
        assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
        assert first.headers["Retry-After"] == "1" and "Too Many Requests" in first.text
        assert "Purchase Order #15262980" in third.text
        assert [visit("15262981").status_code for _ in range(4)] == [500, 502, 503, 200]
        throttle_page = visit("15262982")
        assert throttle_page.status_code == 200
        assert "you have made too many requests, please slow down" in throttle_page.text
        assert "Purchase Order" in visit("15262982").text


def test_default_catalogue_trouble_overlays(sim: SimHandle) -> None:
    browser = signed_in(sim)
    po = EXAMPLES["throttled"][0]
    statuses = [
        browser.get(f"{sim.base_url}/order_headers/{po}", timeout=10).status_code for _ in range(3)
    ]
    assert statuses == [429, 429, 200]


def test_global_rates_inject_429_and_5xx_and_end_at_until() -> None:
    with sim_server() as trouble:
        browser = signed_in(trouble)
        url = f"{trouble.base_url}/order_headers/15262980"
        trouble.set_trouble(rate_429=1.0)
        assert {browser.get(url, timeout=10).status_code for _ in range(5)} == {429}
        trouble.set_trouble(rate_5xx=1.0)
        statuses = {browser.get(url, timeout=10).status_code for _ in range(30)}
        assert statuses == {500, 502, 503}
        trouble.set_trouble(rate_throttle_page=1.0)
        page = browser.get(url, timeout=10)
        assert page.status_code == 200 and "please slow down" in page.text
        # Admin calls and sign-in are never troubled, so tests can always recover.
        assert requests.get(trouble.base_url + "/_sim/health", timeout=10).status_code == 200
        trouble.set_trouble(rate_5xx=1.0, until=time.time() - 1)
        assert browser.get(url, timeout=10).status_code == 200
        trouble.set_trouble()
        assert browser.get(url, timeout=10).status_code == 200


def test_global_rates_are_reproducible() -> None:
    def run() -> list[int]:
        with sim_server(
            scenario={"seed": 3, "trouble": {"rate_429": 0.3, "rate_5xx": 0.2}}
        ) as trouble:
            browser = signed_in(trouble)
            return [
                browser.get(f"{trouble.base_url}/user/home", timeout=10).status_code
                for _ in range(40)
            ]

    first = run()
    assert first == run()
    assert {200, 429} <= set(first) and set(first) & {500, 502, 503}


def test_set_trouble_refuses_bad_settings(sim: SimHandle) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        sim.set_trouble(rate_9000=1)
    with pytest.raises(ValueError, match="at most 1.0"):
        sim.set_trouble(rate_429=2)
    response = requests.post(sim.base_url + "/_sim/trouble", data="{not json", timeout=10)
    assert response.status_code == 400


def test_global_page_delay_slows_pages() -> None:
    with sim_server() as trouble:
        browser = signed_in(trouble)
        trouble.set_trouble(page_delay=0.5)
        started = time.monotonic()
        assert (
            browser.get(f"{trouble.base_url}/order_headers/15262980", timeout=10).status_code == 200
        )
        assert time.monotonic() - started >= 0.5


@pytest.mark.timeout(30)
def test_hanging_pages_never_answer_until_the_server_stops() -> None:
    outcome: list[object] = []
    scenario = {"po": {"15262980": {"trouble": {"hang": True}}}}
    with sim_server(scenario=scenario) as trouble:
        browser = signed_in(trouble)
        trouble.set_trouble(hang_paths=["/requisition_headers/*"])
        for path in ("/order_headers/15262980", "/requisition_headers/4711"):
            with pytest.raises(requests.Timeout):
                browser.get(trouble.base_url + path, timeout=0.5)
        assert (
            browser.get(f"{trouble.base_url}/order_headers/15262981", timeout=10).status_code == 200
        )

        def wait_forever() -> None:
            try:
                outcome.append(
                    browser.get(
                        f"{trouble.base_url}/order_headers/15262980", timeout=20
                    ).status_code
                )
            except requests.RequestException as exc:
                outcome.append(exc)

        waiter = ThreadPoolExecutor(max_workers=1)
        future = waiter.submit(wait_forever)
        wait_until(
            lambda: trouble.counters()["paths"]["/order_headers/15262980"] == 2,
            5,
            what="hanging request",
        )
        stopping = time.monotonic()
    future.result(timeout=10)
    waiter.shutdown()
    assert time.monotonic() - stopping < 5
    assert outcome and outcome[0] != 200


def test_cli_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = _start_cli("--port", str(taken.getsockname()[1]))
        try:
            out, err = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 1
    assert "cannot listen on 127.0.0.1" in err and "listening" not in out


def test_scenario_mapping_accepts_numeric_keys_and_bad_options_are_refused() -> None:
    with sim_server(scenario={"po": {15262980: {"supplier": "Numbers Inc"}}}) as numeric:
        assert numeric.truth(15262980)["supplier"] == "Numbers Inc"
    for options in (
        {"session_lifetime": -1.0},
        {"render_delay": float("nan")},
        {"preset": "fast"},
        {"sign_in": "kerberos"},
    ):
        with pytest.raises(ScenarioError):
            with sim_server(**options):  # type: ignore[arg-type]
                pass
