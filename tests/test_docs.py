"""The README and --help document every command, each help with an example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from coupad import cli, ctl

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_readme_documents_every_coupad_command(command):
    assert re.search(rf"`coupad {command}\b", README), f"coupad {command} missing from README"


@pytest.mark.parametrize("command", sorted(ctl.COMMANDS))
def test_readme_documents_every_coupactl_command(command):
    assert re.search(rf"`coupactl {command}\b", README), f"coupactl {command} missing"


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_coupad_command_has_help_with_an_example(command):
    out = subprocess.run([sys.executable, "-m", "coupad", command, "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"example: coupad {command}" in out.stdout


@pytest.mark.parametrize("command", sorted(ctl.COMMANDS))
def test_every_coupactl_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as done:
        ctl.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert f"example: coupactl {command}" in text
    assert "--json" in text


def test_readme_shows_the_two_commands():
    assert "make demo" in README and "make test" in README


def test_the_readme_performance_figures_are_those_make_bench_measured():
    # coupa-domain.md, "What earlier tools got wrong" 7: claimed speed-ups were never measured
    # against a real browser. Every figure in the README's Performance tables is the one the
    # last `make bench` run recorded in bench/results/bench.json, with real Chromium.
    import importlib.util
    import json

    bench = Path(__file__).resolve().parent.parent / "bench"
    spec = importlib.util.spec_from_file_location("bench_record", bench / "record.py")
    assert spec is not None and spec.loader is not None
    record = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(record)
    data = json.loads((bench / "results" / "bench.json").read_text(encoding="utf-8"))
    machine = data["machine"]
    assert "Chromium" in machine["chromium"] and not machine["quick"] and not machine["failures"]
    assert record.START in README and record.END in README
    shown = README.split(record.START, 1)[1].split(record.END, 1)[0].strip("\n")
    measured = record.readme_block(machine, data["targets"], data["figures"])
    assert shown == "\n".join(measured).strip("\n"), "README figures differ from bench.json"


def _module_table() -> set[str]:
    """The names in the first column of the README's module table ("| `a`, `b` | role |")."""
    start = README.index("| module | role |")
    names: set[str] = set()
    for line in README[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        names.update(re.findall(r"`([\w/]+)`", line.split("|")[1]))
    return names


def test_the_readme_module_table_matches_the_tree() -> None:
    """Every module of the package is in the table (a subpackage's modules may share its
    row, as `sim` and `msg` do), and every name in the table is a module or package."""
    package = Path(cli.__file__).parent
    modules = {str(p.relative_to(package).with_suffix("")) for p in package.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    packages = {str(p.parent.relative_to(package)) for p in package.rglob("__init__.py")} - {"."}
    table = _module_table()
    missing = sorted(m for m in modules if m not in table and m.split("/")[0] not in table)
    assert missing == [], "modules the README's table does not describe"
    assert sorted(table - modules - packages) == [], "names in the table that are not modules"
