"""`coupad check` and `coupad login` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coupad.sim.testing import sim_server

pytestmark = pytest.mark.timeout(120)


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    full = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "coupad", *args], capture_output=True,
                          text=True, timeout=100, env=full, cwd=cwd)


def config(tmp_path: Path, base_url: str, *, sign_in: str = "form", mode: int = 0o600,
           password: str = "coupa-sim") -> Path:
    secret = tmp_path / "password"
    secret.write_text(password)
    secret.chmod(mode)
    path = tmp_path / "coupad.toml"
    path.write_text(
        f'[coupa]\nbase_url = "{base_url}"\nsign_in = "{sign_in}"\n'
        f'username = "buyer@example.com"\npassword_file = "password"\n'
    )
    return path


@pytest.mark.browser
def test_check_passes_against_a_tenant_with_working_form_sign_in(tmp_path):
    with sim_server() as sim:
        out = run("check", "-c", str(config(tmp_path, sim.base_url)))
    assert out.returncode == 0, out.stdout + out.stderr
    names = [line.split()[1] for line in out.stdout.splitlines()]
    assert names == ["config", "folders", "password", "browser", "tenant", "sign-in"]
    assert all(line.startswith("ok") for line in out.stdout.splitlines())


@pytest.mark.browser
def test_check_fails_on_a_wrong_password_and_an_open_password_file(tmp_path):
    with sim_server() as sim:
        out = run("check", "-c", str(config(tmp_path, sim.base_url, mode=0o644,
                                                password="wrong")))
    assert out.returncode == 1
    assert "FAIL password file" in out.stdout and "chmod 600" in out.stdout
    assert "FAIL sign-in" in out.stdout


def test_check_without_a_tenant_says_what_is_missing(tmp_path):
    path = tmp_path / "coupad.toml"
    path.write_text("[pool]\nworkers = 1\n")
    out = run("check", "-c", str(path), "--no-browser")
    assert out.returncode == 1
    assert "FAIL tenant         coupa.base_url is not set" in out.stdout


def test_check_reports_a_tenant_that_does_not_answer(tmp_path):
    out = run("check", "-c", str(config(tmp_path, "http://127.0.0.1:9")), "--no-browser")
    assert out.returncode == 1
    assert "FAIL tenant" in out.stdout and "does not answer" in out.stdout


def test_check_with_a_bad_config_names_the_key(tmp_path):
    path = tmp_path / "coupad.toml"
    path.write_text("[pool]\nworkers = -1\n")
    out = run("check", "-c", str(path))
    assert out.returncode == 78
    assert "pool.workers must be greater than 0" in out.stdout


def test_login_without_a_display_explains_the_headless_ways(tmp_path):
    out = run("login", "-c", str(config(tmp_path, "http://127.0.0.1:9", sign_in="profile")))
    assert out.returncode == 1
    assert 'sign_in = "form"' in out.stdout
    assert "copy the profile" in out.stdout
    assert not (tmp_path / "state" / "profiles" / "base").exists()


def test_run_without_a_tenant_refuses_to_start(tmp_path):
    path = tmp_path / "coupad.toml"
    path.write_text("[pool]\nworkers = 1\n")
    out = run("run", "-c", str(path))
    assert out.returncode == 78
    assert "coupa.base_url is not set" in out.stderr
