"""SIGHUP: live keys apply at once, the others wait for a restart and are named."""

from __future__ import annotations

import signal

import pytest

from coupad import config as cfg
from coupad import reload
from daemonkit import daemon, write_config
from util import wait_until


def test_plan_applies_live_keys_and_keeps_restart_only_ones(tmp_path):
    path = tmp_path / "coupad.toml"
    path.write_text('[coupa]\nbase_url = "https://a.example"\n[pool]\nworkers = 1\n')
    running = cfg.load(path, env={})
    path.write_text('[coupa]\nbase_url = "https://b.example"\n[pool]\nworkers = 3\n'
                    '[paths]\ninbox = "elsewhere"\n[log]\nlevel = "debug"\n')
    change = reload.plan(running, cfg.load(path, env={}))
    assert change.config.pool.workers == 3
    assert change.config.log.level == "debug"
    assert change.config.coupa.base_url == "https://a.example"
    assert change.config.paths.inbox == running.paths.inbox
    assert set(change.applied) == {"pool.workers", "log.level"}
    assert set(change.needs_restart) == {"coupa.base_url", "paths.inbox"}


def test_plan_with_nothing_changed_changes_nothing(tmp_path):
    running = cfg.load(env={})
    change = reload.plan(running, running)
    assert change.applied == () and change.needs_restart == ()
    assert change.config == running


@pytest.mark.timeout(120)
def test_sighup_grows_the_pool_and_names_what_needs_a_restart(tmp_path):
    with daemon(tmp_path, "http://127.0.0.1:9", engine="fakeengine:FakeEngine",
                pool={"workers": 1}) as d:
        wait_until(lambda: d.status()["workers"][0]["state"] == "READY", 60)
        write_config(tmp_path, "http://127.0.0.1:10", pool={"workers": 2},
                     tasks={"max_attempts": 7})
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(d.status()["workers"]) == 2
                   and all(w["state"] == "READY" for w in d.status()["workers"]), 60,
                   what="a second worker after SIGHUP")
        log = d.log()
        assert "applied: pool.workers, tasks.max_attempts" in log
        assert "after a restart: coupa.base_url" in log
        assert d.status()["daemon"]["base_url"] == "http://127.0.0.1:9"
        # A broken file is refused as a whole; the daemon keeps running as it was.
        (tmp_path / "coupad.toml").write_text("[pool]\nworkers = 'many'\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "was not reloaded: pool.workers" in d.log(), 30)
        d.check_alive()
        assert len(d.status()["workers"]) == 2
        write_config(tmp_path, "http://127.0.0.1:9", pool={"workers": 1})
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(d.status()["workers"]) == 1, 60, what="the extra worker retired")
