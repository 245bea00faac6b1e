import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from coupad import config as cfg
from coupad.errors import ConfigError

SAMPLE = Path(__file__).resolve().parent.parent / "etc" / "coupad.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "coupad.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = cfg.load(env={})
    assert config.source is None
    assert config.pool.workers == 2
    assert config.pool.tabs_per_worker == 3
    assert config.paths.inbox == tmp_path / "inbox"
    assert config.coupa.base_url == ""
    with pytest.raises(ConfigError, match="coupa.base_url is not set"):
        config.coupa.require_base_url()


def test_relative_paths_are_relative_to_the_file(tmp_path):
    path = write(tmp_path, '[paths]\ninbox = "drop"\nstate = "/var/lib/coupad"\n')
    config = cfg.load(path, env={})
    assert config.paths.inbox == tmp_path / "drop"
    assert config.paths.state == Path("/var/lib/coupad")
    assert config.paths.outbox == tmp_path / "outbox"


def test_precedence_cli_over_env_over_file(tmp_path):
    path = write(tmp_path, "[pool]\nworkers = 3\ntabs_per_worker = 5\n")
    env = {"COUPAD_POOL_WORKERS": "4"}
    assert cfg.load(path, env=env).pool.workers == 4
    assert cfg.load(path, env=env).pool.tabs_per_worker == 5
    assert cfg.load(path, env=env, overrides={"pool.workers": 6}).pool.workers == 6


def test_search_order_uses_coupad_config_variable(tmp_path):
    path = write(tmp_path, '[coupa]\nbase_url = "https://acme.coupahost.com/"\n')
    config = cfg.load(env={"COUPAD_CONFIG": str(path)})
    assert config.source == path
    assert config.coupa.base == "https://acme.coupahost.com"


def test_env_booleans_and_lists(tmp_path):
    env = {"COUPAD_INBOX_POLLING": "yes", "COUPAD_BROWSER_EXTRA_ARGS": "--a --b",
           "COUPAD_DOWNLOADS_MSG_TO_PDF": "off"}
    config = cfg.load(write(tmp_path, ""), env=env)
    assert config.inbox.polling is True
    assert config.downloads.msg_to_pdf is False
    assert cfg.load(write(tmp_path, ""), env={}).downloads.msg_to_pdf is True  # on by default
    assert config.browser.extra_args == ("--a", "--b")


@pytest.mark.parametrize(
    "text, env, words",
    [
        ("[pool]\nworkers = 'two'\n", {}, "pool.workers: expected a whole number"),
        ("[pool]\nworkers = 0\n", {}, "pool.workers must be greater than 0"),
        ("[pool]\npos_per_tab = 0\n", {}, "pool.pos_per_tab must be greater than 0"),
        ("[pool]\npos_per_tab = -3\n", {}, "pool.pos_per_tab must be greater than 0"),
        ("[pool]\nwatching_tabs = -1\n", {}, "pool.watching_tabs must not be negative"),
        ("[pool]\nwatching_tabs = \"many\"\n", {}, "pool.watching_tabs"),
        ("[pool]\nworkers = true\n", {}, "pool.workers: expected a whole number"),
        ("[pool]\nwrokers = 2\n", {}, "unknown key pool.wrokers"),
        ("[poool]\nworkers = 2\n", {}, r"unknown section \[poool\]"),
        ("pool = 3\n", {}, r"\[pool\] .* must be a table"),
        ("[coupa]\nsign_in = 'magic'\n", {}, "coupa.sign_in must be one of"),
        ("[coupa]\nbase_url = 'acme.coupahost.com'\n", {}, "coupa.base_url must start with"),
        ("[coupa]\nbase_url = 'https://a'\nsign_in = 'form'\n", {}, "needs coupa.username"),
        ("[pool]\nworkers = [1\n", {}, "not valid TOML"),
        ("", {"COUPAD_POOL_WORKERS": "many"}, "pool.workers: expected a whole number"),
        ("", {"COUPAD_INBOX_POLLING": "perhaps"}, "inbox.polling: expected true or false"),
        ("", {"COUPAD_POOL_NOPE": "1"}, "unknown key pool.nope .from COUPAD_POOL_NOPE"),
        ("[pool]\nheartbeat_seconds = 30\nlease_seconds = 40\n", {}, "lease_seconds"),
        ("[inbox]\ndefault_priority = 'urgent'\n", {}, "inbox.default_priority"),
        ("[browser]\nextra_args = '--x'\n", {}, "browser.extra_args: expected a list"),
        ("[paths]\ninbox = ''\n", {}, "paths.inbox: expected a path"),
        ("[log]\nlevel = 'loud'\n", {}, "log.level"),
        ("[downloads]\nmsg_to_pdf = 'yes'\n", {}, "downloads.msg_to_pdf: expected true or false"),
        ("[downloads]\nmsg_to_pdf = 1\n", {}, "downloads.msg_to_pdf: expected true or false"),
        ("", {"COUPAD_DOWNLOADS_MSG_TO_PDF": "perhaps"},
         "downloads.msg_to_pdf: expected true or false"),
    ],
)
def test_hostile_config_is_refused_naming_the_key(tmp_path, text, env, words):
    with pytest.raises(ConfigError, match=words):
        cfg.load(write(tmp_path, text), env=env)


def test_undecodable_file_is_refused(tmp_path):
    path = tmp_path / "coupad.toml"
    path.write_bytes(b"\xff\xfe[pool]\x00")
    with pytest.raises(ConfigError, match="cannot be read|not valid TOML"):
        cfg.load(path, env={})


def test_missing_explicit_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load(tmp_path / "nope.toml", env={})


def test_sample_config_documents_every_key_with_its_default():
    text = SAMPLE.read_text(encoding="utf-8")
    # Uncommenting every "# key = value" line must give a valid file equal to the defaults.
    uncommented = re.sub(r"^# (\w+ = .*)$", r"\1", text, flags=re.MULTILINE)
    parsed = tomllib.loads(uncommented)
    defaults = cfg.Config()
    for section, cls in cfg.SECTIONS.items():
        for field in dataclasses.fields(cls):
            assert field.name in parsed.get(section, {}), f"{section}.{field.name} not documented"
            documented = parsed[section][field.name]
            default = getattr(getattr(defaults, section), field.name)
            if isinstance(default, Path):
                assert Path(documented) == default
            elif isinstance(default, tuple):
                assert tuple(documented) == default
            elif default is None:
                assert documented == ""
            elif section == "coupa" and field.name == "base_url":
                assert documented.startswith("https://")  # an example, there is no default
            else:
                assert documented == default, f"{section}.{field.name}"


def test_systemd_directories_hold_relative_paths_and_the_socket(tmp_path):
    path = write(tmp_path, "[paths]\ninbox = \"/srv/coupad/inbox\"\noutbox = \"out\"\n")
    env = {"STATE_DIRECTORY": "/var/lib/coupad", "RUNTIME_DIRECTORY": "/run/coupad"}
    config = cfg.load(path, env=env)
    assert config.paths.state == Path("/var/lib/coupad/state")
    assert config.paths.inbox == Path("/srv/coupad/inbox")
    assert config.paths.outbox == Path("/var/lib/coupad/out")
    assert config.socket_path == Path("/run/coupad/coupad.sock")
    assert cfg.load(path, env={}).socket_path == tmp_path / "state" / "coupad.sock"


def test_password_file_is_relative_to_the_config_file(tmp_path):
    path = write(tmp_path, '[coupa]\npassword_file = "secret"\n')
    assert cfg.load(path, env={}).coupa.password_file == str(tmp_path / "secret")
    env = {"STATE_DIRECTORY": "/var/lib/coupad"}
    assert cfg.load(path, env=env).coupa.password_file == str(tmp_path / "secret")
