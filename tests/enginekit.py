"""Helpers for the engine and fetch tests: configs, engines and checks against the sim's truth."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from coupad.browser import Browser, BrowserSpec
from coupad.config import Config, load
from coupad.engine import Engine, PoJob, PoResult
from coupad.names import safe_name, unique_name
from coupad.ponumber import PoNumber

NAME_VARIANT_LIMIT = 10


def write_config(
    root: Path,
    base_url: str,
    *,
    username: str = "",
    password: str = "",
    sign_in: str = "form",
    coupa: dict[str, Any] | None = None,
    tasks: dict[str, Any] | None = None,
    downloads: dict[str, Any] | None = None,
    pool: dict[str, Any] | None = None,
) -> Path:
    """Write a config file for a test under ``root`` and return its path."""
    root.mkdir(parents=True, exist_ok=True)
    secret = root / "password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    sections: dict[str, dict[str, Any]] = {
        "coupa": {
            "base_url": base_url,
            "sign_in": sign_in,
            "page_timeout": 20.0,
            "settle_timeout": 10.0,
            "download_timeout": 60.0,
            **({"username": username, "password_file": str(secret)} if sign_in == "form" else {}),
            **(coupa or {}),
        },
        "paths": {"downloads": str(root / "downloads"), "state": str(root / "state")},
        "tasks": {"po_timeout": 90.0, "retry_base_seconds": 0.2, "retry_max_seconds": 1.0,
                  **(tasks or {})},
        "downloads": dict(downloads or {}),
        "pool": dict(pool or {}),
    }
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml(value)}")
    path = root / "coupad.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def config_for(root: Path, base_url: str, **kw: Any) -> Config:
    return load(write_config(root, base_url, **kw), env={})


def engine_for(config: Config, root: Path, tabs: int) -> Engine:
    """An engine (not started) whose browser profile lives under ``root``."""
    spec = BrowserSpec(profile_dir=root / "profiles" / "engine", download_dir=root / "browser-dl")
    return Engine(config, browser_factory=lambda: Browser.start(spec), tabs=tabs)


def job(digits: str | int, key: str = "", **kw: Any) -> PoJob:
    return PoJob(po=PoNumber(str(digits)), key=key or str(digits), **kw)


def run_all(engine: Engine, jobs: Iterable[PoJob]) -> dict[str, PoResult]:
    """Run jobs to the end; results by PO digits."""
    return {r.job.po.digits: r for r in engine.run(list(jobs))}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(root: Path) -> list[Path]:
    """Every regular file below ``root`` (hidden ones included)."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found.extend(Path(dirpath) / f for f in files)
    return sorted(found)


def name_variants(name: str) -> set[str]:
    """The names a file may carry in a folder: its safe name, or that with " (n)"."""
    taken = [safe_name(name)]
    for _ in range(2, NAME_VARIANT_LIMIT):
        taken.append(unique_name(taken[0], taken))
    return set(taken)


def assert_folder_matches(folder: Path, expected: list[dict[str, Any]]) -> None:
    """The folder holds exactly the expected attachments (sha256, size, name) and a manifest."""
    assert folder.is_dir(), f"{folder} is missing"
    on_disk = {p.name: p for p in folder.iterdir() if p.name != "manifest.json"}
    assert not [p for p in folder.iterdir() if p.is_dir()], f"sub-folders left in {folder}"
    by_sha = {}
    for name, path in on_disk.items():
        by_sha.setdefault(sha256_of(path), []).append(name)
    assert sorted(h for h, names in by_sha.items() for _ in names) == sorted(
        a["sha256"] for a in expected
    ), f"files in {folder}: {sorted(on_disk)}; expected {[a['name'] for a in expected]}"
    for attachment in expected:
        names = by_sha[attachment["sha256"]]
        assert any(n in name_variants(attachment["name"]) for n in names), (
            f"{attachment['name']!r} stored as {names}"
        )
        assert on_disk[names[0]].stat().st_size == attachment["size"]
    if expected:
        manifest = json.loads((folder / "manifest.json").read_text())
        assert sorted(f["sha256"] for f in manifest["files"]) == sorted(a["sha256"] for a in expected)
        assert {f["name"] for f in manifest["files"]} == set(on_disk)
    else:
        assert not on_disk and not (folder / "manifest.json").exists()


def assert_fetched_once(counters: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    """The simulator served every expected attachment exactly once."""
    served = counters["attachments"]
    assert {a["id"]: served.get(a["id"], 0) for a in expected} == {a["id"]: 1 for a in expected}
