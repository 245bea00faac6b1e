"""SIGHUP: which configuration keys change live, and which need a restart.

Live: pool sizes and limits, task retry settings, politeness, inbox timing and row limit,
log level. Everything that names a place or an identity (paths, the control socket, the
browser binaries, the tenant and how to sign in to it, the log format, inbox polling) keeps
its running value until the next start; the log says which of those changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from coupad.config import SECTIONS, Config

RESTART_ONLY: frozenset[str] = frozenset({
    "paths.inbox", "paths.outbox", "paths.downloads", "paths.state",
    "control.socket", "control.group",
    "browser.chromium", "browser.chromedriver", "browser.headless", "browser.extra_args",
    "coupa.base_url", "coupa.sign_in", "coupa.username", "coupa.password_file",
    "log.format", "inbox.polling",
})


@dataclass(frozen=True)
class ReloadPlan:
    config: Config  # the new configuration, restart-only keys kept at their running values
    applied: tuple[str, ...]  # keys that changed and take effect now
    needs_restart: tuple[str, ...]  # keys that changed but wait for the next start


def plan(running: Config, loaded: Config) -> ReloadPlan:
    """Merge a freshly loaded configuration into the running one."""
    applied: list[str] = []
    needs_restart: list[str] = []
    sections = {}
    for name in SECTIONS:
        old, new = getattr(running, name), getattr(loaded, name)
        values = {}
        for f in dataclasses.fields(old):
            key = f"{name}.{f.name}"
            before, after = getattr(old, f.name), getattr(new, f.name)
            if before == after:
                values[f.name] = before
            elif key in RESTART_ONLY:
                needs_restart.append(key)
                values[f.name] = before
            else:
                applied.append(key)
                values[f.name] = after
        sections[name] = type(old)(**values)
    merged = dataclasses.replace(running, **sections)
    return ReloadPlan(config=merged.validate(), applied=tuple(applied),
                      needs_restart=tuple(needs_restart))
