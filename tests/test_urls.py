"""The one rule for each URL question (coupad.urls): origins, and when a page or a download's
redirect is a sign-in. These tables are the corpus both former rule sets were merged against:
the page rule (sign-in paths of Coupa, any other origin) and the download rule (Coupa's
sign-in paths; elsewhere sign-in words in host or folders, or a sign-in request's query)."""

from __future__ import annotations

import pytest

from coupad.urls import (
    Origin,
    is_sign_in_page,
    is_sign_in_path,
    is_sign_in_redirect,
    origin,
    show_url,
    without_query,
)

BASE = "https://acme.coupahost.com"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://acme.coupahost.com/order_headers/1", Origin("https", "acme.coupahost.com", 443)),
    ("HTTPS://ACME.coupahost.com:443/x", Origin("https", "acme.coupahost.com", 443)),
    ("http://127.0.0.1:8080/", Origin("http", "127.0.0.1", 8080)),
    ("https://user:pw@acme.coupahost.com/", None),  # user-info: never an origin
    ("https://acme.coupahost.com:99999/", None),  # a port out of range
    ("ftp://acme.coupahost.com/", None),
    ("about:blank", None),
    ("data:text/html,x", None),
    ("", None),
    ("https:///path", None),
    ("https://evil.com\\@acme.coupahost.com/", None),  # parsers disagree on the host
])
def test_the_origin_of_a_url(url: str, expected: Origin | None) -> None:
    assert origin(url) == expected


def test_an_origin_shows_its_port_only_when_it_is_not_the_default() -> None:
    assert str(Origin("https", "a.example", 443)) == "https://a.example"
    assert str(Origin("http", "a.example", 8080)) == "http://a.example:8080"
    assert show_url("https://a.example/f/x.pdf?token=SECRET") == "https://a.example/f/x.pdf"
    assert show_url("not a url") == "an invalid URL"
    assert without_query("https://a.example/f?sig=SECRET#top") == "https://a.example/f"


SIGN_IN_PATHS = [
    "/sessions/new", "/sessions", "/session", "/login", "/login/", "/logon", "/signin",
    "/sign_in", "/sign-in", "/sso", "/sso/saml", "/saml/acs", "/oauth/authorize",
    "/oauth2/callback", "/adfs/ls", "/auth/okta", "/users/sign_in", "/users/auth/saml",
    "/users/password/new", "/LOGIN", "/%6Cogin",
]
NOT_SIGN_IN_PATHS = [
    "/", "/order_headers/15262984", "/requisition_headers/9601", "/attachments/login-guide.pdf",
    "/attachments/12/sso-setup.docx", "/login-help", "/sessionsx", "/users/12/avatar.png",
    "/users", "/processor-exports/1", "/dashboard", "/user_home",
]


@pytest.mark.parametrize("path", SIGN_IN_PATHS)
def test_coupa_sign_in_paths(path: str) -> None:
    assert is_sign_in_path(path)
    assert is_sign_in_page(BASE + path, BASE)
    assert is_sign_in_redirect(BASE + path, same_site=True)


@pytest.mark.parametrize("path", NOT_SIGN_IN_PATHS)
def test_coupa_paths_that_are_not_sign_in(path: str) -> None:
    assert not is_sign_in_path(path)
    assert not is_sign_in_page(BASE + path, BASE)
    assert not is_sign_in_redirect(BASE + path, same_site=True)


@pytest.mark.parametrize("url", [
    "https://acme.okta.com/app/coupa/sso/saml",
    "https://login.microsoftonline.com/tenant/saml2",
    "https://files.example.com/order_headers/1",  # a PO page lives on Coupa, nowhere else
    "http://acme.coupahost.com/order_headers/1",  # another scheme is another origin
    "https://acme.coupahost.com:8443/order_headers/1",
])
def test_a_page_on_another_origin_is_a_sign_in(url: str) -> None:
    assert is_sign_in_page(url, BASE)


@pytest.mark.parametrize("url", ["about:blank", "data:text/html,<p>", "chrome-error://x/"])
def test_a_page_that_is_not_http_is_not_a_sign_in(url: str) -> None:
    assert not is_sign_in_page(url, BASE)


@pytest.mark.parametrize("url", [
    "https://login.microsoftonline.com/common/oauth2/authorize?client_id=1",
    "https://acme.okta.com/sso/saml?SAMLRequest=abc",
    "https://idp.example.com/adfs/ls/?wa=wsignin1.0",
    "https://idp.example.com/x/y?client_id=c&redirect_uri=https%3A%2F%2Facme",
    "https://idp.example.com/start?RelayState=1",
    "https://sso.example.com/file.pdf",
    "https://idp.example.com/saml2/idp/file.pdf",
])
def test_a_redirect_off_coupa_to_an_identity_provider_is_a_sign_in(url: str) -> None:
    assert is_sign_in_redirect(url, same_site=False)


@pytest.mark.parametrize("url", [
    "https://bucket.s3.amazonaws.com/po/123/login-guide.pdf?X-Amz-Signature=abc",
    "https://store.blob.core.windows.net/c/sso-setup.docx?sig=abc",
    "https://storage.googleapis.com/b/processor-exports/q.xlsx",
    "https://files.example.com/auth-free/quote.pdf",
    "https://files.example.com/download?id=5&client_id=1",
])
def test_a_redirect_off_coupa_to_a_file_store_is_not_a_sign_in(url: str) -> None:
    assert not is_sign_in_redirect(url, same_site=False)
