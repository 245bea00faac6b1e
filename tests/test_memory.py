"""Which memory limit applies: the cgroup's (v1 or v2) when tighter than the host's."""


import pytest

from coupad import memory


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "CGROUP_ROOT", tmp_path)
    return tmp_path


def test_v2_cgroup_path_is_read_from_proc_self_cgroup(fake_root):
    assert memory._cgroup_dir("0::/system.slice/coupad.service\n") == (
        fake_root / "system.slice/coupad.service")
    assert memory._cgroup_dir("4:memory:/x\n") is None


def test_v1_memory_controller_path(fake_root):
    text = "5:devices:/\n4:memory:/process_api/abc\n0::/\n"
    assert memory._v1_memory_dir(text) == fake_root / "memory/process_api/abc"


@pytest.mark.parametrize("text, value", [("max\n", None), ("1048576\n", 1048576),
                                         ("garbage", None), ("", None)])
def test_limits_files_are_read_defensively(tmp_path, text, value):
    path = tmp_path / "memory.max"
    path.write_text(text)
    assert memory._read_int(path) == value
    assert memory._read_int(tmp_path / "missing") is None


def test_view_of_this_machine_is_sane():
    view = memory.view()
    assert 0 < view.used <= view.limit
    assert 0 < view.pressure <= 1
    assert view.source in ("host", "cgroup")


def test_a_process_groups_memory_is_its_pss_not_its_summed_rss():
    # README, "Under load and trouble": a browser's memory is its processes' PSS; summed RSS
    # would count the pages they share once per process.
    import os
    import shlex
    import subprocess
    import sys

    import psutil

    from coupad.processes import group_pss_mb
    from util import wait_until

    # Each waits for a signal (the killpg below), holding its memory meanwhile.
    sleeper = f"{shlex.quote(sys.executable)} -c 'import signal; signal.pause()'"
    group = subprocess.Popen(["sh", "-c", f"{sleeper} & {sleeper} & {sleeper} & wait"],
                             start_new_session=True)
    try:
        wait_until(lambda: len(m := psutil.Process(group.pid).children()) == 3
                   and all("signal.pause" in " ".join(p.cmdline()) for p in m),
                   20, what="three sleepers in the group")
        members = psutil.Process(group.pid).children()
        pss_mb = group_pss_mb(group.pid)  # first: memory that grows meanwhile only adds RSS
        rss_mb = sum(p.memory_info().rss for p in [psutil.Process(group.pid), *members]) / 2**20
        assert 0 < pss_mb < rss_mb * 0.9, (pss_mb, rss_mb)
    finally:
        os.killpg(group.pid, 9)
        group.wait(10)
