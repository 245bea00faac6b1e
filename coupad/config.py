"""One typed configuration, loaded from TOML, environment and command line, validated once.

Precedence: command line > ``COUPAD_<SECTION>_<KEY>`` environment variables > the TOML file >
defaults. Search order for the file when ``-c`` is absent: ``$COUPAD_CONFIG``,
``/etc/coupad/coupad.toml``, ``./etc/coupad.toml``; with none found, defaults are used and
relative paths are relative to the working directory. Relative paths in a file are relative
to that file's folder — except under systemd, where ``$STATE_DIRECTORY`` (StateDirectory=)
is their base and the control socket defaults to ``$RUNTIME_DIRECTORY/coupad.sock``. Every
error message names the offending key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from coupad.errors import ConfigError

SEARCH_PATH = (Path("/etc/coupad/coupad.toml"), Path("etc/coupad.toml"))
UNSET_BASE_URL = ""


@dataclass(frozen=True)
class CoupaConfig:
    base_url: str = UNSET_BASE_URL
    sign_in: str = "profile"
    username: str = ""
    password_file: str = ""
    requisition_attachments: str = "when_po_has_none"
    page_timeout: float = 60.0
    settle_timeout: float = 15.0
    late_list_window: float = 4.0
    download_timeout: float = 900.0
    max_concurrent_pages: int = 8
    min_request_interval: float = 0.0

    def validate(self) -> None:
        _choice("coupa.sign_in", self.sign_in, ("profile", "form"))
        _choice(
            "coupa.requisition_attachments",
            self.requisition_attachments,
            ("when_po_has_none", "always", "never"),
        )
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"coupa.base_url must start with https:// (got {self.base_url!r})")
        if self.sign_in == "form" and self.base_url and not (self.username and self.password_file):
            raise ConfigError(
                "coupa.sign_in = \"form\" needs coupa.username and coupa.password_file"
            )
        _positive("coupa.page_timeout", self.page_timeout)
        _positive("coupa.settle_timeout", self.settle_timeout)
        _positive("coupa.late_list_window", self.late_list_window)
        if self.late_list_window > self.settle_timeout:
            raise ConfigError(
                f"coupa.late_list_window ({self.late_list_window!r}) must not be longer than "
                f"coupa.settle_timeout ({self.settle_timeout!r}), its upper bound"
            )
        _positive("coupa.download_timeout", self.download_timeout)
        _positive("coupa.max_concurrent_pages", self.max_concurrent_pages)
        _not_negative("coupa.min_request_interval", self.min_request_interval)

    @property
    def base(self) -> str:
        """The base URL without a trailing slash."""
        return self.base_url.rstrip("/")

    def require_base_url(self) -> str:
        if not self.base_url:
            raise ConfigError(
                "coupa.base_url is not set: put your tenant's address, such as "
                "https://yourcompany.coupahost.com, in the config file or COUPAD_COUPA_BASE_URL"
            )
        return self.base


@dataclass(frozen=True)
class PathsConfig:
    inbox: Path = Path("inbox")
    outbox: Path = Path("outbox")
    downloads: Path = Path("downloads")
    state: Path = Path("state")

    def validate(self) -> None:
        return None

    @property
    def journal(self) -> Path:
        return self.state / "journal.sqlite"

    @property
    def profiles(self) -> Path:
        """Root of every browser profile coupad owns; the start-up sweep looks only here."""
        return self.state / "profiles"

    @property
    def base_profile(self) -> Path:
        return self.profiles / "base"


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 2
    tabs_per_worker: int = 3
    # More tabs per browser, for POs that only watch their page for evidence (see the
    # engine's docstring): they hold no page load, request or download of the tenant's.
    # One: more helped a latency-bound tenant little and cost a CPU-bound machine (README).
    watching_tabs: int = 1
    recycle_after_pos: int = 250
    pos_per_tab: int = 10
    max_browser_mb: int = 2000
    memory_high_watermark: float = 0.75
    shutdown_timeout: float = 60.0
    heartbeat_seconds: float = 5.0
    lease_seconds: float = 60.0
    restart_backoff_max: float = 60.0
    max_fast_failures: int = 5

    def validate(self) -> None:
        _positive("pool.workers", self.workers)
        _positive("pool.tabs_per_worker", self.tabs_per_worker)
        _not_negative("pool.watching_tabs", self.watching_tabs)
        _positive("pool.recycle_after_pos", self.recycle_after_pos)
        _positive("pool.pos_per_tab", self.pos_per_tab)
        _positive("pool.max_browser_mb", self.max_browser_mb)
        if not 0.1 <= self.memory_high_watermark <= 1.0:
            raise ConfigError("pool.memory_high_watermark must be between 0.1 and 1.0")
        _positive("pool.shutdown_timeout", self.shutdown_timeout)
        _positive("pool.heartbeat_seconds", self.heartbeat_seconds)
        if self.lease_seconds <= 2 * self.heartbeat_seconds:
            raise ConfigError("pool.lease_seconds must be more than twice pool.heartbeat_seconds")
        _positive("pool.restart_backoff_max", self.restart_backoff_max)
        _positive("pool.max_fast_failures", self.max_fast_failures)


@dataclass(frozen=True)
class TasksConfig:
    max_attempts: int = 5
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 600.0
    po_timeout: float = 900.0
    skip_completed: bool = True

    def validate(self) -> None:
        _positive("tasks.max_attempts", self.max_attempts)
        _positive("tasks.retry_base_seconds", self.retry_base_seconds)
        _positive("tasks.retry_max_seconds", self.retry_max_seconds)
        _positive("tasks.po_timeout", self.po_timeout)


@dataclass(frozen=True)
class InboxConfig:
    quiet_seconds: float = 2.0
    polling: bool = False
    max_rows: int = 200_000
    default_priority: str = "normal"

    def validate(self) -> None:
        _not_negative("inbox.quiet_seconds", self.quiet_seconds)
        _positive("inbox.max_rows", self.max_rows)
        _choice("inbox.default_priority", self.default_priority, ("high", "normal", "low"))


@dataclass(frozen=True)
class DownloadsConfig:
    group_by: str = ""  # "" or "supplier"
    # A PDF beside each Outlook mail (.msg) once its PO's folder is final (coupad.pdfs).
    msg_to_pdf: bool = True

    def validate(self) -> None:
        _choice("downloads.group_by", self.group_by, ("", "supplier"))


@dataclass(frozen=True)
class BrowserConfig:
    chromium: Path = Path("/usr/bin/chromium")
    chromedriver: Path = Path("/usr/bin/chromedriver")
    headless: bool = True
    extra_args: tuple[str, ...] = ()
    # Selenium Grid 4's address (http://hub:4444); empty: browsers on this machine.
    grid_url: str = ""
    grid_timeout: float = 60.0  # seconds for any one HTTP call to the Grid

    def validate(self) -> None:
        _positive("browser.grid_timeout", self.grid_timeout)
        if not self.grid_url:
            return
        parts = urlsplit(self.grid_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("browser.grid_url must be the Grid's http:// or https:// address, "
                              f"such as http://grid.example:4444 (got {redact_url(self.grid_url)!r})")
        if parts.query or parts.fragment:
            raise ConfigError("browser.grid_url takes no query or fragment "
                              f"(got {redact_url(self.grid_url)!r})")


def redact_url(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``: fit for a log line."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return "(not a URL)"
    if "@" not in netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + netloc.rsplit("@", 1)[1]))


@dataclass(frozen=True)
class ControlConfig:
    socket: Path | None = None  # default: <state>/coupad.sock
    group: str = ""

    def validate(self) -> None:
        return None


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "text"

    def validate(self) -> None:
        _choice("log.level", self.level, ("debug", "info", "warning", "error"))
        _choice("log.format", self.format, ("text", "json"))


@dataclass(frozen=True)
class Config:
    coupa: CoupaConfig = field(default_factory=CoupaConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    inbox: InboxConfig = field(default_factory=InboxConfig)
    downloads: DownloadsConfig = field(default_factory=DownloadsConfig)
    browser: BrowserConfig = field(default_factory=BrowserConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: Path | None = None  # the file it was read from, if any
    runtime_dir: Path | None = None  # systemd's RuntimeDirectory=, when set

    @property
    def socket_path(self) -> Path:
        if self.control.socket:
            return self.control.socket
        if self.runtime_dir:
            return self.runtime_dir / "coupad.sock"
        return self.paths.state / "coupad.sock"

    def validate(self) -> Config:
        for section in SECTIONS:
            getattr(self, section).validate()
        return self

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some keys of one section changed (values are not re-validated)."""
        new_section = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, **{section: new_section})


SECTIONS: dict[str, type] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in fields(Config)
    if f.name not in ("source", "runtime_dir")
}


def write_toml(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a TOML file from ``{section: {key: value}}``: strings, numbers, booleans and lists
    of them (JSON's spelling of them is TOML's too), and lists of tables, written as
    ``[[section.key]]`` after the sections (as Selenium Grid's node configs have)."""
    lines: list[str] = []
    tables: list[str] = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                for table in value:
                    tables.append(f"[[{section}.{key}]]")
                    tables.extend(f"{k} = {json.dumps(v)}" for k, v in table.items())
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines + tables) + "\n", encoding="utf-8")
    return path


def find_config_file(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    """The config file to read, following the documented search order."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    if env.get("COUPAD_CONFIG"):
        path = Path(env["COUPAD_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"COUPAD_CONFIG names {path}, which does not exist")
        return path
    for candidate in SEARCH_PATH:
        if candidate.is_file():
            return candidate
    return None


def load(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load, merge and validate the configuration.

    ``overrides`` maps ``"section.key"`` to a value from the command line.
    """
    env = os.environ if env is None else env
    source = find_config_file(path, env)
    raw: dict[str, Any] = {}
    if source is not None:
        try:
            raw = tomllib.loads(source.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot be read: {exc}") from None
    config_dir = source.resolve().parent if source is not None else Path.cwd()
    base_dir = config_dir

    sections: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown section [{name}] in {source}")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] in {source} must be a table")
        sections[name] = {key: (val, f"{name}.{key}") for key, val in value.items()}

    prefix = "COUPAD_"
    for var, text in env.items():
        if not var.startswith(prefix) or var == "COUPAD_CONFIG":
            continue
        rest = var[len(prefix):].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue  # other COUPAD_* variables (tests, tools) are not config keys
        key = rest[len(section) + 1:]
        sections.setdefault(section, {})[key] = (_EnvText(text), var)

    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if value is not None:
            sections.setdefault(section, {})[key] = (value, f"--{key.replace('_', '-')}")

    # Under systemd, StateDirectory= and RuntimeDirectory= hold coupad's files: relative paths
    # resolve against the state directory instead of the config file's folder.
    if env.get("STATE_DIRECTORY"):
        base_dir = Path(env["STATE_DIRECTORY"].split(":")[0])
    runtime = Path(env["RUNTIME_DIRECTORY"].split(":")[0]) if env.get("RUNTIME_DIRECTORY") else None
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, (value, origin) in sections.get(name, {}).items():
            if key not in known:
                raise ConfigError(f"unknown key {name}.{key} (from {origin})")
            values[key] = _coerce(f"{name}.{key}", known[key].type, value, base_dir)
        built[name] = cls(**values)
    config = _absolute_paths(Config(**built, source=source, runtime_dir=runtime), base_dir)
    password_file = config.coupa.password_file
    if password_file and not Path(password_file).expanduser().is_absolute():
        # Beside the config file, wherever the data folders are (systemd included).
        config = config.replace("coupa", password_file=str(config_dir / password_file))
    return config.validate()


class _EnvText(str):
    """A value that came from the environment as text and still needs parsing."""


def _absolute_paths(config: Config, base_dir: Path) -> Config:
    paths = config.paths
    resolved = {
        f.name: (getattr(paths, f.name) if getattr(paths, f.name).is_absolute()
                 else base_dir / getattr(paths, f.name))
        for f in fields(paths)
    }
    return dataclasses.replace(config, paths=PathsConfig(**resolved))


def _coerce(key: str, kind: Any, value: Any, base_dir: Path) -> Any:
    kind = str(kind)
    from_env = isinstance(value, _EnvText)
    try:
        if kind == "bool":
            if from_env:
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError("expected true or false")
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("expected a whole number")
            if from_env:
                if not value.strip().lstrip("-").isdigit():
                    raise ValueError("expected a whole number")
                return int(value.strip())
            if not isinstance(value, int):
                raise ValueError("expected a whole number")
            return value
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError("expected a number")
            if from_env:
                try:
                    return float(value.strip())
                except ValueError:
                    raise ValueError("expected a number") from None
            if not isinstance(value, (int, float)):
                raise ValueError("expected a number")
            return float(value)
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return str(value)
        if kind in ("Path", "Path | None"):
            if not isinstance(value, (str, Path)):
                raise ValueError("expected a path")
            if str(value) == "":
                if kind == "Path | None":
                    return None
                raise ValueError("expected a path, got an empty string")
            path = Path(str(value)).expanduser()
            return path if path.is_absolute() else base_dir / path
        if kind == "tuple[str, ...]":
            if from_env:
                return tuple(value.split())
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected a list of strings")
            return tuple(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc} (got {str(value)!r})") from None
    raise ConfigError(f"{key}: unsupported type {kind}")  # a bug in this module, not user input


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(repr, allowed))} (got {value!r})")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key} must be greater than 0 (got {value!r})")


def _not_negative(key: str, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{key} must not be negative (got {value!r})")
