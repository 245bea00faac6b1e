"""Page shapes and download options of the simulator over plain HTTP, and their validation."""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from coupad.sim import content
from coupad.sim.catalogue import Attachment, Catalogue, Outcome, PurchaseOrder
from coupad.sim.scenario import ScenarioError, from_mapping, load
from coupad.sim.storage import Storage
from coupad.sim.testing import SimHandle, sim_server

pytestmark = pytest.mark.timeout(60)


def files(*names: str, **options: Any) -> list[dict[str, Any]]:
    return [{"name": name, "size": 3000 + n, **options} for n, name in enumerate(names)]


SCENARIO: dict[str, Any] = {
    "po": {
        # How the list arrives.
        "41000001": {"render_delay": 0.3, "page": {"arrival": "timer"},
                     "attachments": files("timer a.pdf", "timer b.pdf")},
        "41000002": {"page": {"arrival": "inline"},
                     "attachments": [{"name": "inline.pdf"},
                                     {"name": "inline button.pdf", "shape": "button"}]},
        "41000003": {"page": {"steps": [0.2, 0.9, 1.2], "grow_by": "request"},
                     "attachments": [{"name": "first.pdf"}, {"name": "second.pdf", "step": 1},
                                     {"name": "third.pdf", "step": 1},
                                     {"name": "fourth.pdf", "step": 2}]},
        "41000004": {"page": {"markup": "varied"}, "attachments": files("varied.pdf")},
        "41000005": {"page": {"markup": "varied"}, "attachments": files("varied.pdf")},
        # What else the page does.
        "41000006": {"page": {"noise": ["ticker", "long_timer"],
                              "decoys": ["download_all", "export_xlsx", "print_button",
                                         "terms_pdf"]},
                     "attachments": files("real.pdf")},
        # Download options.
        "41000010": {"attachments": [
            {"name": "stored.pdf", "size": 150_000, "redirect": True},
            {"name": "stored button.pdf", "size": 2000, "redirect": True, "shape": "button",
             "no_length": True},
        ]},
        "41000011": {"attachments": [{"name": "endless.bin", "size": 200_000, "no_length": True},
                                     {"name": "fast.bin", "size": 200_000}]},
        "41000012": {"attachments": [{"name": "slow.bin", "size": 60_000, "bandwidth": 100_000},
                                     {"name": "fast.bin", "size": 60_000}]},
        "41000013": {"attachments": [{"name": "good.pdf"},
                                     {"name": "gone.pdf", "broken": "not_found"},
                                     {"name": "secret.pdf", "broken": "forbidden",
                                      "redirect": True}]},
        "41000014": {"attachments": [{"name": "gone.pdf", "broken": "not_found"}]},
        "41000015": {"attachments": [{"name": "Angebot.pdf"}, {"name": "Angebot.pdf"},
                                     {"name": "Überweisung März.pdf", "disposition": "rfc5987"}]},
        # Requisitions and the modes of requisition_attachments.
        "41000020": {"requisition": "5020"},
        "41000021": {"requisition": "5021", "attachments": files("own.pdf")},
        "41000022": {"requisition": "5022"},
    },
    "requisition": {
        "5020": {"page": {"arrival": "timer", "steps": [0.0, 0.5]},
                 "attachments": [{"name": "quote.pdf"}, {"name": "approval.msg", "step": 1}]},
        "5021": {"attachments": files("req.pdf")},
        "5022": {"attachments": [{"name": "req ok.pdf"},
                                 {"name": "req gone.pdf", "broken": "forbidden"}]},
    },
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with sim_server(scenario=SCENARIO) as handle:
        yield handle


@pytest.fixture
def browser(sim: SimHandle) -> requests.Session:
    """A client with the tenant's session cookie, scoped to the tenant's host as a browser
    scopes it."""
    session = requests.Session()
    cookie = sim.sign_in_cookie()
    session.cookies.set(cookie["name"], cookie["value"], domain="127.0.0.1", path="/")
    return session


def page(sim: SimHandle, browser: requests.Session, digits: str) -> str:
    response = browser.get(f"{sim.base_url}/order_headers/{digits}", timeout=10)
    assert response.status_code == 200
    return response.text


def served_html(html: str) -> str:
    """The HTML without its scripts: what a client sees before any script runs."""
    return re.sub(r"<script>.*?</script>", "", html, flags=re.S)


# ---- how the list arrives ------------------------------------------------------------------


def test_a_timer_page_embeds_its_list_in_a_script_and_renders_none_of_it(
    sim: SimHandle, browser: requests.Session
) -> None:
    html = page(sim, browser, "41000001")
    assert "timer a.pdf" in html and "setTimeout" in html
    assert "timer a.pdf" not in served_html(html)
    assert "attachment_file" not in served_html(html)


def test_an_inline_page_serves_its_list_in_the_html(
    sim: SimHandle, browser: requests.Session
) -> None:
    html = served_html(page(sim, browser, "41000002"))
    assert 'href="/attachment_file/41000002-1/download"' in html
    assert 'aria-label="inline button.pdf file attachment"' in html
    # The button's URL lives only in the script, as for every button.
    assert "/attachments/41000002-2/download" not in html


def test_a_growing_list_is_answered_slice_by_slice_when_due(
    sim: SimHandle, browser: requests.Session
) -> None:
    url = f"{sim.base_url}/order_headers/41000003/attachments.json"
    timings, names = [], []
    for part in ("", "?part=1", "?part=2"):
        started = time.monotonic()
        data = browser.get(url + part, timeout=10).json()
        timings.append(time.monotonic() - started)
        names.append([a["name"] for a in data["attachments"]])
    assert names == [["first.pdf"], ["second.pdf", "third.pdf"], ["fourth.pdf"]]
    # Each later part waits for its step after the one before: 0.2, 0.7, 0.3 s.
    assert [round(t, 1) >= due for t, due in zip(timings, (0.2, 0.7, 0.3), strict=True)] == [
        True
    ] * 3, timings
    for junk in ("?part=3", "?part=x", "?part=-1", "?part=" + "9" * 40):
        assert browser.get(url + junk, timeout=10).status_code == 404, junk


def test_varied_markup_has_no_fixed_ids_and_differs_per_page(
    sim: SimHandle, browser: requests.Session
) -> None:
    first, second = page(sim, browser, "41000004"), page(sim, browser, "41000005")
    for html in (served_html(first), served_html(second)):
        for fixed in ('id="attachments"', 'id="attachment-list"', "attachment-link",
                      "attachment-button", "aria-busy"):
            assert fixed not in html, fixed
    ids = [re.findall(r'<section id="([^"]+)"', html) for html in (first, second)]
    assert ids[0] and ids[1] and ids[0] != ids[1]


def test_noise_and_decoys_leave_the_truth_alone(sim: SimHandle, browser: requests.Session) -> None:
    html = page(sim, browser, "41000006")
    assert "setInterval" in html and "60000" in html
    hrefs = re.findall(r'href="([^"]+)"', served_html(html))
    labels = re.findall(r'aria-label="([^"]+)"', served_html(html))
    decoys = [h for h in hrefs if "/order_headers/41000006/" in h]
    assert {h.rsplit("/", 1)[1] for h in decoys} == {
        "print.pdf", "export.csv", "download_all.zip", "export.xlsx", "terms.pdf"
    }
    assert not [h for h in hrefs if "attachment_file" in h or "/attachments/" in h]
    assert "Print this order" in labels
    assert not [label for label in labels if "file attachment" in label]
    sim.reset_counters()
    for href in decoys:
        response = browser.get(sim.base_url + href, timeout=10)
        assert response.status_code == 200 and response.content, href
    assert sim.counters()["attachments"] == {}
    assert [a["name"] for a in sim.truth("41000006")["expected_files"]] == ["real.pdf"]


# ---- downloads ---------------------------------------------------------------------------


def test_a_redirected_download_comes_from_a_signed_url_on_another_host(
    sim: SimHandle, browser: requests.Session
) -> None:
    truth = sim.truth("41000010")
    assert [a["redirect"] for a in truth["attachments"]] == [True, True]
    sim.reset_counters()
    for attachment in truth["attachments"]:
        first = browser.get(attachment["url"], allow_redirects=False, timeout=10)
        assert first.status_code == 302
        location = first.headers["Location"]
        assert location.startswith(sim.storage_url + "/blobs/")
        assert urlsplit(location).hostname == "localhost" != urlsplit(sim.base_url).hostname
        query = parse_qs(urlsplit(location).query)
        assert set(query) == {"expires", "signature"} and int(query["expires"][0]) > time.time()
        followed = browser.get(attachment["url"], timeout=10)
        assert followed.status_code == 200
        assert hashlib.sha256(followed.content).hexdigest() == attachment["sha256"]
        assert followed.headers["Content-Disposition"] == (
            'attachment; filename="' + attachment["name"] + '"'
        )
    counters = sim.counters()
    # Bytes are counted where they are served: once each, by the storage origin.
    assert counters["attachments"] == {a["id"]: 1 for a in truth["attachments"]}
    log = sim.storage_requests()
    assert len(log) == 2 and {entry["status"] for entry in log} == {200}
    # The tenant's cookie stays with the tenant's host.
    assert {(e["cookie"], e["authorization"]) for e in log} == {(None, None)}


def test_storage_refuses_bad_or_missing_signatures_and_logs_what_came(
    sim: SimHandle, browser: requests.Session
) -> None:
    url = sim.truth("41000010")["attachments"][0]["url"]
    location = browser.get(url, allow_redirects=False, timeout=10).headers["Location"]
    sim.reset_counters()
    base, _, query = location.partition("?")
    expires = parse_qs(query)["expires"][0]
    forged = [
        base,
        location.replace("signature=", "signature=0"),
        f"{base}?expires={int(expires) + 1000}&signature={parse_qs(query)['signature'][0]}",
        location.replace("/blobs/41000010-1", "/blobs/41000010-2"),
        f"{sim.storage_url}/blobs/nope?expires=9999999999&signature=x",
    ]
    for target in forged:
        response = requests.get(
            target, headers={"Authorization": "Bearer leaked", "Referer": sim.base_url + "/x"},
            timeout=10,
        )
        assert response.status_code == 403, target
    log = sim.storage_requests()
    assert [e["status"] for e in log] == [403] * len(forged)
    assert {e["authorization"] for e in log} == {"Bearer leaked"}
    assert {e["referer"] for e in log} == {sim.base_url + "/x"}
    assert sim.counters()["attachments"] == {}
    sim.reset_counters()
    assert sim.storage_requests() == []


def test_signed_urls_expire() -> None:
    storage = Storage(lambda _id: None, None)  # type: ignore[arg-type]
    storage.url = "http://localhost:1"

    def parts(url: str) -> tuple[str, str]:
        query = parse_qs(urlsplit(url).query)
        return query["expires"][0], query["signature"][0]

    assert storage.verify("1-1", *parts(storage.signed_url("1-1")))
    assert not storage.verify("1-1", *parts(storage.signed_url("1-1", ttl=-5)))
    assert not storage.verify("1-2", *parts(storage.signed_url("1-1")))
    assert not storage.verify("1-1", "12ab", "x")


def _raw_get(sim: SimHandle, path: str, connection: str = "keep-alive") -> tuple[str, bytes]:
    cookie = sim.sign_in_cookie()
    host, port = urlsplit(sim.base_url).hostname, urlsplit(sim.base_url).port
    assert host and port
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n"
            f"Cookie: {cookie['name']}={cookie['value']}\r\n\r\n".encode()
        )
        data = b""
        while chunk := conn.recv(1 << 16):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1").lower(), body


def test_a_body_without_length_ends_when_the_connection_closes(sim: SimHandle) -> None:
    truth = {a["name"]: a for a in sim.truth("41000011")["attachments"]}
    endless = truth["endless.bin"]
    assert endless["no_length"] is True
    head, body = _raw_get(sim, urlsplit(endless["url"]).path)
    assert "content-length" not in head and "transfer-encoding" not in head
    assert "connection: close" in head
    assert len(body) == endless["size"]
    assert hashlib.sha256(body).hexdigest() == endless["sha256"]
    head, _ = _raw_get(sim, urlsplit(truth["fast.bin"]["url"]).path, "close")
    assert f"content-length: {truth['fast.bin']['size']}" in head


def test_a_redirected_body_can_lack_a_length_too(sim: SimHandle, browser: requests.Session) -> None:
    button = sim.truth("41000010")["attachments"][1]
    response = browser.get(button["url"], timeout=10)
    assert "Content-Length" not in response.headers
    assert hashlib.sha256(response.content).hexdigest() == button["sha256"]


def test_bandwidth_of_one_attachment_slows_that_file_only(
    sim: SimHandle, browser: requests.Session
) -> None:
    slow, fast = sim.truth("41000012")["attachments"]
    timings = []
    for attachment in (slow, fast):
        started = time.monotonic()
        body = browser.get(attachment["url"], timeout=10).content
        timings.append(time.monotonic() - started)
        assert hashlib.sha256(body).hexdigest() == attachment["sha256"]
    assert timings[0] >= 0.5 and timings[1] < 0.4, timings


def test_broken_files_fail_the_same_way_every_time(
    sim: SimHandle, browser: requests.Session
) -> None:
    truth = sim.truth("41000013")
    assert [a["broken"] for a in truth["attachments"]] == [None, "not_found", "forbidden"]
    good, gone, secret = truth["attachments"]
    sim.reset_counters()
    for _ in range(3):
        assert browser.get(gone["url"], timeout=10).status_code == 404
        # Broken wins over redirect: the tenant refuses before any storage is involved.
        assert browser.get(secret["url"], allow_redirects=False, timeout=10).status_code == 403
    assert browser.get(good["url"], timeout=10).status_code == 200
    assert sim.counters()["attachments"] == {good["id"]: 1}
    assert sim.storage_requests() == []
    assert truth["outcome"] == "COMPLETED"  # unchanged meaning: the page lists files
    assert truth["expected_status"] == "PARTIAL"
    assert [a["name"] for a in truth["expected_files"]] == ["good.pdf"]
    only_broken = sim.truth("41000014")
    assert only_broken["expected_status"] == "FAILED" and only_broken["expected_files"] == []


def test_duplicate_names_and_rfc5987_only_names(sim: SimHandle, browser: requests.Session) -> None:
    attachments = sim.truth("41000015")["attachments"]
    first, second, german = (browser.get(a["url"], timeout=10) for a in attachments)
    assert first.headers["Content-Disposition"] == second.headers["Content-Disposition"]
    assert first.content != second.content
    assert german.headers["Content-Disposition"] == (
        "attachment; filename*=UTF-8''%C3%9Cberweisung%20M%C3%A4rz.pdf"
    )


# ---- truth -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "mode", "status", "names"),
    [
        ("41000020", "when_po_has_none", "COMPLETED", ["quote.pdf", "approval.msg"]),
        ("41000020", "never", "NO_ATTACHMENTS", []),
        ("41000021", "when_po_has_none", "COMPLETED", ["own.pdf"]),
        ("41000021", "always", "COMPLETED", ["own.pdf", "req.pdf"]),
        ("41000022", "when_po_has_none", "PARTIAL", ["req ok.pdf"]),
        ("41000022", "never", "NO_ATTACHMENTS", []),
    ],
)
def test_expected_status_and_files_follow_the_requisition_mode(
    sim: SimHandle, digits: str, mode: str, status: str, names: list[str]
) -> None:
    truth = sim.truth(digits, requisition_attachments=mode)
    assert truth["requisition_mode"] == mode
    assert truth["expected_status"] == status
    assert [f["name"] for f in truth["expected_files"]] == names
    sources = {f["source"] for f in truth["expected_files"]}
    assert sources <= ({"requisition"} if truth["attachments"] == [] else {"po", "requisition"})


def test_truth_keeps_its_old_keys_and_refuses_unknown_modes(sim: SimHandle) -> None:
    truth = sim.truth("15262980")  # a default PO
    assert {"po", "digits", "outcome", "supplier", "requisition_id", "attachments",
            "requisition_attachments"} <= set(truth)
    assert truth["expected_status"] == truth["outcome"] == "COMPLETED"
    assert [f["sha256"] for f in truth["expected_files"]] == [
        a["sha256"] for a in truth["attachments"]
    ]
    assert {a["broken"] for a in truth["attachments"]} == {None}
    response = requests.get(
        sim.base_url + "/_sim/truth/15262980?requisition_attachments=sometimes", timeout=10
    )
    assert response.status_code == 400


def test_error_pages_expect_their_own_status() -> None:
    catalogue = from_mapping({"po": {"41000030": {"error": "access_denied_fr"}}}).catalogue()
    assert catalogue.expected("41000030") == (Outcome.ACCESS_DENIED, [])
    po = PurchaseOrder(digits="41000031", case="x", supplier="S",
                       attachments=(Attachment(id="41000031-1", name="a", size=1),))
    assert Catalogue({"41000031": po}).expected("41000031")[0] is Outcome.COMPLETED
    with pytest.raises(ValueError):
        Catalogue().expected("41000031", "sometimes")


def test_redirected_bytes_are_the_same_bytes() -> None:
    attachment = Attachment(id="9-1", name="x", size=70_000, redirect=True, no_length=True)
    assert attachment.sha256() == hashlib.sha256(content.content("9-1", 70_000)).hexdigest()


# ---- validation --------------------------------------------------------------------------


def _toml_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load(path)
    return str(caught.value)


PO = "[po.15262984]\n"
ATTACHMENT = "[[po.15262984.attachments]]\nname = 'a'\n"


@pytest.mark.parametrize(
    ("text", "key", "line", "words"),
    [
        (PO + "page = {colour = 'red'}\n", "po.15262984.page.colour", 2, "unknown key"),
        (PO + "page = 'fast'\n", "po.15262984.page", 2, "expected a table"),
        (PO + "page = {arrival = 'pigeon'}\n", "po.15262984.page.arrival", 2, "expected one of"),
        (PO + "page = {steps = 'soon'}\n", "po.15262984.page.steps", 2, "expected a list"),
        (PO + "page = {steps = []}\n", "po.15262984.page.steps", 2, "1 to 4 offsets"),
        (PO + "page = {steps = [0, 1, 2, 3, 4]}\n", "po.15262984.page.steps", 2, "1 to 4"),
        (PO + "page = {steps = [-0.5]}\n", "po.15262984.page.steps[0]", 2, "at least 0"),
        (PO + "page = {steps = [0, '1']}\n", "po.15262984.page.steps[1]", 2,
         "expected a number"),
        (PO + "page = {steps = [0, nan]}\n", "po.15262984.page.steps[1]", 2, "finite"),
        (PO + "page = {steps = [1, 1]}\n", "po.15262984.page.steps[1]", 2, "must increase"),
        (PO + "page = {steps = [0, 61]}\n", "po.15262984.page.steps[1]", 2, "at most 60"),
        (PO + "page = {arrival = 'inline', steps = [0.5]}\n", "po.15262984.page.steps[0]", 2,
         "first offset is 0"),
        (PO + "page = {grow_by = 'inline'}\n", "po.15262984.page.grow_by", 2,
         "timer or request"),
        (PO + "page = {grow_by = 'visible'}\n", "po.15262984.page.grow_by", 2,
         "timer or request"),
        (PO + "page = {noise = ['ticker', 'ticker']}\n", "po.15262984.page.noise[1]", 2,
         "listed twice"),
        (PO + "page = {noise = 'ticker'}\n", "po.15262984.page.noise", 2, "expected a list"),
        (PO + "page = {decoys = ['confetti']}\n", "po.15262984.page.decoys[0]", 2,
         "expected one of"),
        (PO + "page = {markup = 'fancy'}\n", "po.15262984.page.markup", 2, "expected one of"),
        (PO + "render_delay = -1\n", "po.15262984.render_delay", 2, "at least 0"),
        (PO + "render_delay = 1\npage = {steps = [0, 1]}\n", "po.15262984.render_delay", 2,
         "not both"),
        (PO + "render_delay = 1\npage = {arrival = 'inline'}\n", "po.15262984.render_delay", 2,
         "does not apply"),
        (PO + ATTACHMENT + "step = 1\n", "po.15262984.attachments[0].step", 4, "1 slice"),
        (PO + "page = {steps = [0, 1]}\n" + ATTACHMENT + "step = -1\n",
         "po.15262984.attachments[0].step", 5, "at least 0"),
        (PO + ATTACHMENT + "redirect = 'yes'\n", "po.15262984.attachments[0].redirect", 4,
         "expected true or false"),
        (PO + ATTACHMENT + "no_length = 1\n", "po.15262984.attachments[0].no_length", 4,
         "expected true or false"),
        (PO + ATTACHMENT + "bandwidth = 0\n", "po.15262984.attachments[0].bandwidth", 4,
         "at least 1"),
        (PO + ATTACHMENT + "bandwidth = 1.5\n", "po.15262984.attachments[0].bandwidth", 4,
         "expected an integer"),
        (PO + ATTACHMENT + "broken = 'sometimes'\n", "po.15262984.attachments[0].broken", 4,
         "expected one of not_found, forbidden"),
        (PO + ATTACHMENT + "mirror = true\n", "po.15262984.attachments[0].mirror", 4,
         "unknown key"),
        ("[requisition.4711]\ncolour = 1\n", "requisition.4711.colour", 2, "unknown key"),
        ("[requisition.4711]\npage = {steps = [0, 0.5, 1, 2, 3]}\n", "requisition.4711.page.steps",
         2, "1 to 4"),
    ],
)
def test_hostile_page_and_download_options_are_refused(
    tmp_path: Path, text: str, key: str, line: int, words: str
) -> None:
    message = _toml_error(tmp_path, text)
    assert f"line {line}:" in message and f" {key}: " in message and words in message, message


def test_a_mapping_with_new_options_is_validated_like_a_file() -> None:
    with pytest.raises(ScenarioError, match=r"po\.41000001\.page\.steps\[2\]: must be at least 0"):
        from_mapping({"po": {"41000001": {"page": {"steps": [0, 1, -1]}}}})
    with pytest.raises(ScenarioError, match="give a scenario or a catalogue"):
        with sim_server(scenario={}, catalogue=Catalogue()):
            pass
