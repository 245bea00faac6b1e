"""The package's shape: every error a coupad error, and an import graph without cycles."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import coupad
from coupad.errors import CoupadError

PACKAGE = Path(coupad.__file__).parent


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], "coupad.")
                  if not m.name.endswith("__main__"))  # importing it runs the CLI


def test_every_public_exception_is_a_coupad_error() -> None:
    """One root: a caller can catch what coupad raises as CoupadError (private exceptions that
    never leave their module are exempt)."""
    outside = []
    for name in modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == name and not attr.startswith("_")
                    and not issubclass(value, CoupadError)):
                outside.append(f"{name}.{attr}")
    assert outside == []


def _imports(name: str) -> set[str]:
    """The coupad modules ``name`` imports, at module level or inside functions."""
    path = PACKAGE.joinpath(*name.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_package_has_no_import_cycle() -> None:
    """Imports inside functions count too: deferring an import hides a cycle, it does not
    remove it. (A package's __init__ re-exporting its own modules is not a cycle.)"""
    names = set(modules())
    graph = {n: {m for m in _imports(n) if m in names and m != n
                 and not n.startswith(m + ".") and not m.startswith(n + ".")} for n in names}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(names):
        if node not in state:
            visit(node)
    assert cycles == []
