"""The shipped deploy files say what the daemon needs: systemd/coupad.service and
etc/supervisord.conf, each choice commented, stop budgets longer than the drain, the exit
statuses of an orderly stop counted as success; `systemd-analyze verify` accepts the unit."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from coupad import config as configuration
from coupad.config import PoolConfig
from coupad.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "coupad.service"
SUPERVISORD = REPO / "etc" / "supervisord.conf"
SHUTDOWN_TIMEOUT = PoolConfig().shutdown_timeout
SYSTEMD_ANALYZE = Path("/usr/bin/systemd-analyze")

# Keys whose value says all there is to say (a name, a link, the command itself): a comment
# would only repeat them. Every other directive is a choice and carries its reason.
SELF_DESCRIBING = {"Description", "Documentation", "command"}


@dataclass(frozen=True)
class Directive:
    """One ``key=value`` line of a deploy file, where it stands and whether a comment explains it."""

    line: int
    section: str
    key: str
    value: str
    commented: bool


def directives(text: str, comment: tuple[str, ...], inline: str | None) -> list[Directive]:
    """Every directive of an INI-like file; a directive is commented when the block of
    directives it belongs to is headed by a comment line, or it carries an ``inline`` one
    (supervisord reads `` ;`` as one; systemd has none: a ``#`` there is part of the value)."""
    lines = text.splitlines()
    found = []
    section = ""
    explained = False  # the current block of directives is headed by a comment
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            explained = False
        elif text.startswith(comment):
            explained = True
        elif text.startswith("["):
            section = text.strip("[]")
            explained = False
        else:
            key, sep, value = text.partition("=")
            assert sep, f"line {number}: not a key=value line: {raw!r}"
            remark = inline is not None and inline in value
            found.append(Directive(number, section, key.strip(), value.strip(),
                                   explained or remark))
    return found


def one(found: list[Directive], section: str, key: str) -> str:
    values = [d.value for d in found if d.section == section and d.key == key]
    assert len(values) == 1, f"[{section}] {key}= appears {len(values)} times"
    return values[0]


def seconds(text: str) -> float:
    """A systemd time span such as ``90``, ``90s``, ``1min 30s`` in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return total


UNIT_DIRECTIVES = directives(UNIT.read_text(encoding="utf-8"), ("#", ";"), None)
SUPERVISORD_DIRECTIVES = directives(SUPERVISORD.read_text(encoding="utf-8"), (";", "#"), " ;")


def test_the_comment_check_finds_a_silent_directive():
    text = ("[Service]\n# why\nType=notify\nUser=x\n\nKillMode=mixed\n"
            "[program:x]\nstopsignal=TERM ; why\nRestart=no # not a comment in systemd\n")
    found = {d.key: d.commented for d in directives(text, ("#", ";"), None)}
    assert found == {"Type": True, "User": True, "KillMode": False, "stopsignal": False,
                     "Restart": False}
    found = {d.key: d.commented for d in directives(text, (";", "#"), " ;")}
    assert found["stopsignal"] is True and found["KillMode"] is False


# -- systemd ---------------------------------------------------------------------------


def test_unit_is_type_notify_with_the_watchdog_and_only_the_main_process_speaking():
    assert one(UNIT_DIRECTIVES, "Service", "Type") == "notify"
    assert one(UNIT_DIRECTIVES, "Service", "NotifyAccess") == "main"
    assert seconds(one(UNIT_DIRECTIVES, "Service", "WatchdogSec")) > 0


def test_unit_stops_with_sigterm_to_the_daemon_and_waits_longer_than_the_drain():
    assert one(UNIT_DIRECTIVES, "Service", "KillSignal") in ("SIGTERM", "TERM")
    assert one(UNIT_DIRECTIVES, "Service", "KillMode") == "mixed"
    stop = seconds(one(UNIT_DIRECTIVES, "Service", "TimeoutStopSec"))
    assert stop > SHUTDOWN_TIMEOUT, (stop, SHUTDOWN_TIMEOUT)


def test_unit_counts_a_forced_orderly_stop_as_success_and_restarts_only_failures():
    statuses = one(UNIT_DIRECTIVES, "Service", "SuccessExitStatus").split()
    assert str(int(ExitCode.FORCED_STOP)) in statuses
    assert one(UNIT_DIRECTIVES, "Service", "Restart") == "on-failure"


def test_unit_runs_as_its_own_user_in_systemd_managed_folders():
    assert one(UNIT_DIRECTIVES, "Service", "User") not in ("", "root")
    assert one(UNIT_DIRECTIVES, "Service", "StateDirectory") == "coupad"
    assert one(UNIT_DIRECTIVES, "Service", "RuntimeDirectory") == "coupad"
    command = one(UNIT_DIRECTIVES, "Service", "ExecStart").split()
    assert command[0].endswith("/coupad") and command[1] == "run"


def test_unit_does_not_forbid_the_writable_executable_memory_chromium_needs():
    # V8's JIT writes its code: MemoryDenyWriteExecute=yes makes every renderer crash.
    assert not [d for d in UNIT_DIRECTIVES if d.key == "MemoryDenyWriteExecute"]


@pytest.mark.parametrize("section", ["Unit", "Service", "Install"])
def test_every_unit_directive_is_commented(section):
    silent = [f"{UNIT.name}:{d.line}: {d.key}={d.value}" for d in UNIT_DIRECTIVES
              if d.section == section and not d.commented and d.key not in SELF_DESCRIBING]
    assert not silent, "directives without a comment:\n" + "\n".join(silent)


def test_start_limit_keys_are_in_the_unit_section_where_systemd_reads_them():
    # systemd reads StartLimitIntervalSec= only in [Unit]; in [Service] it is ignored with a
    # warning, and then the default 10 s interval never sees 5 starts RestartSec=5 apart.
    in_service = [d.key for d in UNIT_DIRECTIVES
                  if d.section == "Service" and d.key.startswith("StartLimit")]
    assert not in_service, f"in [Service], ignored or deprecated there: {in_service}"
    interval = seconds(one(UNIT_DIRECTIVES, "Unit", "StartLimitIntervalSec"))
    burst = int(one(UNIT_DIRECTIVES, "Unit", "StartLimitBurst"))
    pause = seconds(one(UNIT_DIRECTIVES, "Service", "RestartSec"))
    assert interval > burst * pause, "the limit could never be reached"


def verify_unit(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on the shipped unit, its ExecStart pointed at this checkout's
    `coupad` (verify insists the binary exists); nothing else is changed."""
    coupad = Path(sys.executable).parent / "coupad"
    assert coupad.is_file(), coupad
    text = UNIT.read_text(encoding="utf-8")
    original = one(UNIT_DIRECTIVES, "Service", "ExecStart").split()[0]
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={original} ", f"ExecStart={coupad} "),
                    encoding="utf-8")
    return subprocess.run([str(SYSTEMD_ANALYZE), "verify", str(copy)],
                          capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_accepts_the_unit_without_a_word(tmp_path):
    if not SYSTEMD_ANALYZE.exists():
        # Not skipped: the static tests above ran; say loudly that this check did not.
        warnings.warn("systemd-analyze is not installed: only the static unit checks ran",
                      stacklevel=1)
        return
    out = verify_unit(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == ""


def test_coupactl_in_an_admin_shell_finds_the_daemon_the_unit_started(tmp_path, monkeypatch):
    # The unit gives the daemon $STATE_DIRECTORY and $RUNTIME_DIRECTORY; a person typing
    # `coupactl status` on the server has neither. Both read the same /etc/coupad/coupad.toml
    # (the shipped one here): coupactl falls back to the unit's RuntimeDirectory socket.
    import argparse

    from coupad import ctl

    etc = tmp_path / "etc" / "coupad"
    etc.mkdir(parents=True)
    shutil.copy(REPO / "etc" / "coupad.toml", etc / "coupad.toml")
    runtime = tmp_path / "run" / one(UNIT_DIRECTIVES, "Service", "RuntimeDirectory")
    service_env = {"RUNTIME_DIRECTORY": str(runtime)}
    service = configuration.load(etc / "coupad.toml", env=service_env)
    assert service.socket_path == runtime / "coupad.sock"
    runtime.mkdir(parents=True)
    service.socket_path.touch()
    monkeypatch.setattr(ctl, "SYSTEMD_SOCKET", service.socket_path)
    args = argparse.Namespace(socket=None, config=str(etc / "coupad.toml"))
    assert ctl._socket_path(args) == service.socket_path
    # An explicit --socket always wins; a socket where the config says is used first.
    assert ctl._socket_path(argparse.Namespace(socket="/x.sock", config=None)) == Path("/x.sock")
    local = configuration.load(etc / "coupad.toml", env={}).socket_path
    local.parent.mkdir(parents=True)
    local.touch()
    assert ctl._socket_path(args) == local


# -- supervisord -----------------------------------------------------------------------


def supervisord_program() -> configparser.SectionProxy:
    parser = configparser.RawConfigParser()
    parser.read(SUPERVISORD, encoding="utf-8")
    return parser["program:coupad"]


def test_supervisord_stops_with_term_and_waits_longer_than_the_drain():
    program = supervisord_program()
    assert program["stopsignal"] == "TERM"
    assert float(program["stopwaitsecs"]) > SHUTDOWN_TIMEOUT
    # The daemon closes its own browsers; signalling the group would hit the workers too.
    assert program["stopasgroup"] == "false" and program["killasgroup"] == "false"


def test_supervisord_restarts_only_unexpected_exits_and_expects_0_and_75():
    program = supervisord_program()
    assert program["autorestart"] == "unexpected"
    codes = {int(code) for code in program["exitcodes"].split(",")}
    assert {int(ExitCode.OK), int(ExitCode.FORCED_STOP)} <= codes
    assert int(program["startsecs"]) > 0 and int(program["startretries"]) > 0
    assert program["command"].split()[:2] == ["coupad", "run"]
    assert program["redirect_stderr"] == "true"


@pytest.mark.parametrize("section", ["supervisord", "program:coupad", "unix_http_server",
                                     "supervisorctl"])
def test_every_supervisord_option_is_commented(section):
    silent = [f"{SUPERVISORD.name}:{d.line}: {d.key}={d.value}" for d in SUPERVISORD_DIRECTIVES
              if d.section == section and not d.commented and d.key not in SELF_DESCRIBING]
    assert not silent, "options without a comment:\n" + "\n".join(silent)
