"""Sign-in as the engine sees it: native form, wrong password, SSO tenants, profile mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from coupad.engine import Engine, Outcome
from coupad.signin import SignInFailed
from coupad.sim.testing import SimHandle, sim_server
from enginekit import assert_folder_matches, config_for, engine_for, job, run_all
from util import wait_until

pytestmark = [pytest.mark.browser]

PO = "32000001"
SCENARIO = {"po": {PO: {"attachments": [{"name": "signed.pdf", "size": 3000, "shape": "link"},
                                        {"name": "clicked.pdf", "size": 2000, "shape": "button"}]}}}


@pytest.fixture(scope="module")
def sso() -> Iterator[SimHandle]:
    with sim_server(sign_in="sso", scenario=SCENARIO) as handle:
        yield handle


@pytest.fixture(scope="module")
def form() -> Iterator[SimHandle]:
    with sim_server(scenario=SCENARIO) as handle:
        yield handle


def started(engine: Engine) -> Engine:
    try:
        engine.start()
    except BaseException:
        engine.close()
        raise
    return engine


@pytest.mark.timeout(60)
def test_wrong_password_is_a_distinct_error(form: SimHandle, tmp_path: Path) -> None:
    config = config_for(tmp_path, form.base_url, username=form.username, password="not-the-password")
    engine = engine_for(config, tmp_path, tabs=1)
    try:
        with pytest.raises(SignInFailed, match="refused the sign-in") as caught:
            engine.start()
        assert "not-the-password" not in str(caught.value)
    finally:
        engine.close()


@pytest.mark.timeout(60)
def test_form_sign_in_on_an_sso_tenant_says_to_use_the_profile(sso: SimHandle, tmp_path: Path) -> None:
    config = config_for(tmp_path, sso.base_url, username=sso.username, password=sso.password)
    engine = engine_for(config, tmp_path, tabs=1)
    try:
        with pytest.raises(SignInFailed, match="identity provider") as caught:
            engine.start()
        assert sso.idp_url in str(caught.value) and "coupad login" in str(caught.value)
    finally:
        engine.close()


@pytest.mark.timeout(90)
def test_profile_mode_waits_for_sign_in_then_downloads(sso: SimHandle, tmp_path: Path) -> None:
    config = config_for(tmp_path, sso.base_url, sign_in="profile")
    engine = started(engine_for(config, tmp_path, tabs=1))
    try:
        signed_out = run_all(engine, [job(PO)])[PO]
        assert signed_out.outcome is Outcome.SIGNED_OUT, signed_out.reason
        assert sso.idp_url in signed_out.reason
        assert signed_out.folder is None
        assert not list(config.paths.downloads.glob(f"PO{PO}*"))
        assert engine.sign_in() is False  # the profile is not signed in

        # What `coupad login` does by hand: sign in through the identity provider.
        driver = engine.browser.driver  # type: ignore[union-attr]
        driver.get(f"{sso.base_url}/user/home")
        wait_until(lambda: driver.find_elements(By.ID, "idp-username"), 20, what="the IdP form")
        driver.find_element(By.ID, "idp-username").send_keys(sso.username)
        driver.find_element(By.ID, "idp-password").send_keys(sso.password)
        driver.find_element(By.ID, "idp-submit").click()
        wait_until(lambda: "home" in driver.current_url and sso.base_url in driver.current_url, 20,
                   what="the landing page")

        assert engine.sign_in() is True
        result = run_all(engine, [job(PO)])[PO]
        assert result.outcome is Outcome.COMPLETED, result.reason
        assert_folder_matches(config.paths.downloads / f"PO{PO}_COMPLETED", sso.truth(PO)["attachments"])
    finally:
        engine.close()


CLICK_ONLY = "32000002"


@pytest.mark.timeout(90)
def test_a_click_after_expiry_saves_no_sign_in_page_as_the_file(tmp_path: Path) -> None:
    # The page is read while signed in; the session ends before the click-only attachment is
    # clicked, so the browser is sent to the sign-in page and saves that as "the download".
    scenario = {"po": {CLICK_ONLY: {"attachments": [
        {"name": "Contract, final.docx", "size": 4000, "shape": "button"}]}}}
    with sim_server(scenario=scenario) as sim:
        config = config_for(tmp_path, sim.base_url, username=sim.username, password=sim.password)
        engine = started(engine_for(config, tmp_path, tabs=1))
        try:
            click = engine._start_click

            def expire_then_click(*args: Any) -> None:
                sim.expire_sessions()  # the session ends between reading the page and the click
                click(*args)

            engine._start_click = expire_then_click  # type: ignore[method-assign]
            results = list(engine.run([job(CLICK_ONLY)]))
            engine._start_click = click  # type: ignore[method-assign]
            (result,) = results
            assert result.outcome is Outcome.SIGNED_OUT, result.reason
            assert "sign-in page" in result.reason
            assert result.downloaded == 0
            work = tmp_path / "downloads" / f"PO{CLICK_ONLY}__WORK"
            assert not [p for p in work.rglob("*") if p.is_file()], "a file was kept"
            # Signed in again, the retry downloads the real file.
            assert engine.sign_in()
            (again,) = run_all(engine, [job(CLICK_ONLY)]).values()
            assert again.outcome is Outcome.COMPLETED, again.reason
            assert_folder_matches(tmp_path / "downloads" / f"PO{CLICK_ONLY}_COMPLETED",
                                  list(sim.truth(CLICK_ONLY)["attachments"]))
        finally:
            engine.close()
