"""Direct fetches that Coupa answers with a redirect: to a file store, to sign-in, or hostile.

Coupa is served on http://127.0.0.1:<port>; the file store binds 127.0.0.1 too but is
addressed as http://localhost:<port>, another origin, as a cloud store would be.
"""

import logging
import shutil
import time
import ssl
import subprocess
from urllib.parse import quote

import pytest
from aiohttp import web
from test_download import (
    PAYLOAD,
    SHA,
    RawServer,
    Server,
    cookies_for,
    coupa_routes,
    no_files,
    raw_answer,
)

from coupad.download import DirectFetcher, DownloadError, DownloadProblem
from coupad.errors import SignInRequired

SIGNATURE = "X-Amz-Signature=5ecre7516n47ure"
SIGNED = f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20240101&{SIGNATURE}"
LOGIN_PAGE = ('<!doctype html><html><body><form method="post"><input name="username">'
              '<input type="password" name="password"></form></body></html>')


def store_routes(server: Server) -> list[web.RouteDef]:
    async def file(request: web.Request) -> web.Response:
        if request.query.get("X-Amz-Signature") != "5ecre7516n47ure":
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")
        return web.Response(
            body=PAYLOAD,
            headers={"Content-Type": "application/pdf",
                     "Content-Disposition": f'attachment; filename="{request.path.rsplit("/", 1)[1]}"'},
        )

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/loop?{SIGNED}")

    async def welcome(request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_PAGE, content_type="text/html")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no")

    async def anything(request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_PAGE, content_type="text/html")

    return [
        web.get("/hop", hop),
        web.get("/loop", loop),
        web.get("/p/welcome", welcome),
        web.get("/status/{code}", status),
        web.get("/{tail:.*\\.pdf}", file),
        web.get("/{tail:.*}", anything),
    ]


@pytest.fixture(scope="module")
def coupa():
    with Server(coupa_routes) as server:
        yield server


@pytest.fixture(scope="module")
def store():
    with Server(store_routes) as server:
        yield server


@pytest.fixture
def fetcher(coupa, store):
    coupa.clear()
    store.clear()
    with DirectFetcher(coupa.base, cookies_for(coupa.base), timeout=10) as fetcher:
        yield fetcher


def at(server: Server) -> str:
    """The file store's base URL: the same socket, another origin."""
    return f"http://localhost:{server.port}"


def via_coupa(target: str) -> str:
    """A Coupa attachment URL that redirects to ``target``."""
    return f"/attachments/redirect?to={quote(target, safe='')}"


def assert_no_credentials(server: Server) -> None:
    assert server.headers, "the server got requests"
    for headers in server.headers:
        assert "cookie" not in headers and "authorization" not in headers
        assert "referer" not in headers


def test_a_signed_store_redirect_is_followed_not_refused_as_another_site(
    fetcher, coupa, store, tmp_path
):
    listed = via_coupa(f"{at(store)}/po/123/Quote.pdf?{SIGNED}")
    got = fetcher.fetch(listed, tmp_path)
    assert got.sha256 == SHA and got.size == len(PAYLOAD)
    assert got.path.read_bytes() == PAYLOAD and got.filename == "Quote.pdf"
    assert got.url == f"{coupa.base}{listed}", "the manifest records the Coupa URL"
    assert got.served_from == f"{at(store)}/po/123/Quote.pdf", "no signed query kept"
    assert [cookie for _, cookie in coupa.seen] == ["_coupa_session=s3cr3t"]
    assert_no_credentials(store)


def test_a_chain_coupa_store_store(fetcher, coupa, store, tmp_path):
    second = f"/files/x.pdf?{SIGNED}"
    got = fetcher.fetch(via_coupa(f"{at(store)}/hop?to={quote(second, safe='')}"), tmp_path)
    assert got.sha256 == SHA
    assert got.served_from == f"{at(store)}/files/x.pdf"
    assert [path.split("?")[0] for path, _ in store.seen] == ["/hop", "/files/x.pdf"]
    assert_no_credentials(store)
    assert [cookie for _, cookie in coupa.seen] == ["_coupa_session=s3cr3t"]


def test_a_redirect_back_to_coupa_gets_its_cookies_again(fetcher, coupa, store, tmp_path):
    back = f"{coupa.base}/attachments/normal"
    got = fetcher.fetch(via_coupa(f"{at(store)}/hop?to={quote(back, safe='')}"), tmp_path)
    assert got.sha256 == SHA and got.served_from == back
    assert [cookie for _, cookie in coupa.seen] == ["_coupa_session=s3cr3t"] * 2
    assert_no_credentials(store)


def test_no_credentials_from_netrc_reach_either_site(coupa, store, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login storeuser password storepass\n"
                     "machine 127.0.0.1 login coupauser password coupapass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    coupa.clear()
    store.clear()
    with DirectFetcher(coupa.base, cookies_for(coupa.base), timeout=10) as fetcher:
        got = fetcher.fetch(via_coupa(f"{at(store)}/files/x.pdf?{SIGNED}"), tmp_path / "in")
    assert got.sha256 == SHA
    assert_no_credentials(store)
    assert all("authorization" not in headers for headers in coupa.headers)


def test_a_chain_longer_than_the_limit_stops(coupa, store, tmp_path):
    store.clear()
    with DirectFetcher(coupa.base, cookies_for(coupa.base), max_redirects=3) as fetcher:
        with pytest.raises(DownloadError) as caught:
            fetcher.fetch(via_coupa(f"{at(store)}/loop"), tmp_path / "in")
    assert caught.value.problem is DownloadProblem.TOO_MANY_REDIRECTS and caught.value.permanent
    assert "more than 3 redirects" in str(caught.value)
    assert len(store.seen) == 3, "Coupa's redirect, then the store's until the fourth"
    assert no_files(tmp_path / "in")


@pytest.mark.parametrize(
    "target",
    [
        "https://idp.example/app/sso/saml?SAMLRequest=fVJdb9sgFP0r5c2",
        "{store}/login/authorize?client_id=coupa&redirect_uri=https%3A%2F%2Fcoupa.example",
        "{store}/authorize?client_id=coupa&redirect_uri=https%3A%2F%2Fcoupa.example",
        "{store}/connect?response_type=code&scope=openid",
        "{store}/acs?SAMLResponse=PHNhbWw&RelayState=fVJdb9sgFP0r5c2",
        "{store}/federation?wa=wsignin1.0&wtrealm=urn%3Acoupa",
        "https://login.microsoftonline.example/common/reprocess",
        "https://corp-sso.example/start",
        "https://corp.okta.example/app/coupa/exk1/sso/saml",
        "https://accounts.example/o/oauth2/v2/auth",
        "https://adfs.corp.example/adfs/ls/",
    ],
)
def test_a_redirect_to_an_identity_provider_means_sign_in(fetcher, store, tmp_path, target):
    with pytest.raises(SignInRequired) as caught:
        fetcher.fetch(via_coupa(target.format(store=at(store))), tmp_path / "in")
    assert "sign in" in str(caught.value)
    for secret in ("fVJdb9", "client_id", "response_type", "wsignin", "PHNhbWw"):
        assert secret not in str(caught.value), "no query in messages"
    assert store.seen == [], "an identity provider recognised by its URL is not even asked"
    assert no_files(tmp_path / "in")


@pytest.mark.parametrize(
    "path",
    [
        "/po/123/login-guide.pdf",
        "/processor-exports/po/123/quote.pdf",  # "sso" inside a word is no sign-in
        "/bucket/sessionless/SAML%20contract.pdf",
        "/po/123/sso.pdf",
    ],
)
def test_a_store_path_that_merely_contains_a_sign_in_word_is_fetched(fetcher, store, tmp_path, path):
    got = fetcher.fetch(via_coupa(f"{at(store)}{path}?{SIGNED}"), tmp_path)
    assert got.sha256 == SHA
    assert got.served_from == f"{at(store)}{path}"


def test_a_store_answering_with_a_login_page_means_sign_in(fetcher, store, tmp_path):
    with pytest.raises(SignInRequired) as caught:
        fetcher.fetch(via_coupa(f"{at(store)}/p/welcome?{SIGNED}"), tmp_path / "in")
    assert "identity provider" in str(caught.value) and "5ecre7" not in str(caught.value)
    assert_no_credentials(store)
    assert no_files(tmp_path / "in")


@pytest.mark.parametrize(
    "path, status, problem",
    [
        (f"/files/x.pdf?X-Amz-Signature=old{SIGNATURE[-8:]}", 403, DownloadProblem.STORE_REFUSED),
        ("/status/404", 404, DownloadProblem.STORE_REFUSED),
        ("/status/400", 400, DownloadProblem.STORE_REFUSED),
        ("/status/429", 429, DownloadProblem.THROTTLED),
        ("/status/503", 503, DownloadProblem.SERVER_ERROR),
    ],
)
def test_a_store_refusal_is_retryable(fetcher, store, tmp_path, path, status, problem):
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch(via_coupa(f"{at(store)}{path}"), tmp_path / "in")
    error = caught.value
    assert error.problem is problem and error.status == status
    assert error.retryable and not error.permanent
    assert "Amz" not in str(error)
    assert no_files(tmp_path / "in")


@pytest.mark.parametrize("code", [404, 410, 403])
def test_coupa_refusing_the_file_is_permanent_even_after_a_store_hop(fetcher, coupa, store, tmp_path, code):
    back = f"{coupa.base}/attachments/status/{code}"
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch(via_coupa(f"{at(store)}/hop?to={quote(back, safe='')}"), tmp_path / "in")
    assert caught.value.permanent and caught.value.status == code
    assert caught.value.problem in (DownloadProblem.NOT_FOUND, DownloadProblem.ACCESS_DENIED)


def test_an_unreachable_store_is_retryable_and_its_query_is_not_shown(fetcher, tmp_path):
    with pytest.raises(DownloadError) as caught:
        fetcher.fetch(via_coupa(f"http://localhost:9/files/x.pdf?{SIGNED}"), tmp_path / "in")
    assert caught.value.problem is DownloadProblem.NETWORK and caught.value.retryable
    assert "5ecre7" not in str(caught.value) and "Amz" not in str(caught.value)


def test_no_query_of_the_store_is_logged_or_kept(fetcher, store, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="coupad.download")
    got = fetcher.fetch(via_coupa(f"{at(store)}/hop?to={quote(f'/files/x.pdf?{SIGNED}', safe='')}"),
                        tmp_path)
    with pytest.raises(SignInRequired):
        fetcher.fetch(via_coupa(f"{at(store)}/p/welcome?{SIGNED}"), tmp_path / "in")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "following a redirect" in logged
    assert "5ecre7" not in logged and "Amz" not in logged
    assert "5ecre7" not in got.served_from and "5ecre7" not in str(got.path)



@pytest.mark.timeout(30)
def test_a_redirect_whose_body_never_comes_is_followed_at_once(store, tmp_path):
    # requests reads a redirect's body even when told not to follow it; DirectFetcher must not.
    def routes(server: Server) -> list[web.RouteDef]:
        async def stalled_redirect(request: web.Request) -> web.Response:
            location = f"{at(store)}/files/x.pdf?{SIGNED}".encode()
            head = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 100000\r\n\r\n"
            return await raw_answer(request, server, head + b"<html>", close=False)

        return [web.get("/attachments/x", stalled_redirect)]

    with Server(routes) as coupa:
        with DirectFetcher(coupa.base, [], timeout=10) as fetcher:
            started = time.monotonic()
            got = fetcher.fetch("/attachments/x", tmp_path)
    assert got.sha256 == SHA
    assert time.monotonic() - started < 3


# --- hostile Location headers --------------------------------------------------------------


def redirect_to(location: bytes) -> bytes:
    return b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    "location, message",
    [
        (b"", "a redirect without a target"),
        (b"   ", "a redirect without a target"),
        (b"/files/a\x01b.pdf", "control characters"),
        (b"{store}/files/x.pdf\x7f", "control characters"),
        (b"/files/a\tb.pdf", "control characters"),
        (b"http://storeuser:storepass@{host}/files/x.pdf", "user name or password"),
        (b"http://{host}@evil.example/files/x.pdf", "user name or password"),
        (b"http://{host}\\@evil.example/files/x.pdf", "backslash"),
        (b"javascript:alert(document.cookie)", "a javascript: URL; only http and https"),
        (b"data:text/html,<script>alert(1)</script>", "a data: URL; only http and https"),
        (b"file:///etc/passwd", "a file: URL"),
        (b"ftp://{host}/files/x.pdf", "a ftp: URL"),
        (b"http://[::1/files/x.pdf", "malformed"),
        (b"http://{host}:99999/files/x.pdf", "malformed"),
        (b"/" + b"a" * 10240, "10241-character location"),
    ],
)
def test_a_hostile_location_is_refused(store, tmp_path, location, message):
    host = f"localhost:{store.port}".encode()
    location = location.replace(b"{store}", at(store).encode()).replace(b"{host}", host)
    store.clear()
    with RawServer({"/attachments/x": redirect_to(location)}) as coupa:
        with DirectFetcher(coupa.base, cookies_for(coupa.base), timeout=10) as fetcher:
            with pytest.raises(DownloadError) as caught:
                fetcher.fetch("/attachments/x", tmp_path / "in")
        assert len(coupa.seen) == 1, "nothing followed"
    error = caught.value
    assert error.problem is DownloadProblem.BAD_REDIRECT and error.permanent
    assert message in str(error)
    assert "storepass" not in str(error) and "aaaa" not in str(error)
    assert store.seen == []
    assert no_files(tmp_path / "in")


def test_a_redirect_without_location_header_is_refused(tmp_path):
    answer = b"HTTP/1.1 307 Temporary Redirect\r\nContent-Length: 0\r\n\r\n"
    with RawServer({"/attachments/x": answer}) as coupa:
        with DirectFetcher(coupa.base, [], timeout=10) as fetcher:
            with pytest.raises(DownloadError) as caught:
                fetcher.fetch("/attachments/x", tmp_path / "in")
    assert caught.value.problem is DownloadProblem.BAD_REDIRECT and caught.value.permanent


def test_a_utf8_location_is_followed_as_the_browser_would(store, tmp_path):
    location = f"{at(store)}/po/1/Angebot Müller.pdf?{SIGNED}".encode()
    with RawServer({"/attachments/x": redirect_to(location)}) as coupa:
        with DirectFetcher(coupa.base, [], timeout=10) as fetcher:
            got = fetcher.fetch("/attachments/x", tmp_path)
    assert got.sha256 == SHA and got.filename == "Angebot Müller.pdf"


# --- https ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost, trusted through REQUESTS_CA_BUNDLE."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is missing: `make test` installs it (Debian's openssl)"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


@pytest.fixture(scope="module")
def https_coupa(tls):
    with Server(coupa_routes, ssl_context=tls[1]) as server:
        yield server


@pytest.fixture(scope="module")
def https_store(tls):
    with Server(store_routes, ssl_context=tls[1]) as server:
        yield server


@pytest.fixture
def https_fetcher(https_coupa, tls, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls[0]))
    with DirectFetcher(https_coupa.base, [], timeout=10) as fetcher:
        yield fetcher


def test_https_to_plain_http_is_never_followed(https_fetcher, store, tmp_path):
    store.clear()
    with pytest.raises(DownloadError) as caught:
        https_fetcher.fetch(via_coupa(f"{at(store)}/files/x.pdf?{SIGNED}"), tmp_path / "in")
    error = caught.value
    assert error.problem is DownloadProblem.INSECURE_REDIRECT and error.permanent
    assert "to plain http" in str(error) and "never continued unencrypted" in str(error)
    assert store.seen == []
    assert no_files(tmp_path / "in")


def test_https_to_an_https_store_is_followed(https_fetcher, https_store, tmp_path):
    https_store.clear()
    store_base = f"https://localhost:{https_store.port}"
    got = https_fetcher.fetch(via_coupa(f"{store_base}/files/x.pdf?{SIGNED}"), tmp_path)
    assert got.sha256 == SHA and got.served_from == f"{store_base}/files/x.pdf"
    assert_no_credentials(https_store)

