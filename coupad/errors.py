"""The one exception tree of coupad, and the process exit codes."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes shared by every coupad command (LSB-style where one exists)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_RUNNING = 3  # LSB: `coupactl status` when the daemon is not running
    JOURNAL = 65  # EX_DATAERR: the journal is from a newer coupad or not one this one can use
    ALREADY_RUNNING = 73  # EX_CANTCREAT: another daemon holds the state folder's lock
    CONFIG = 78  # EX_CONFIG
    FORCED_STOP = 75  # a second signal or the drain deadline cut shutdown short (EX_TEMPFAIL)


class CoupadError(Exception):
    """Base of every error coupad raises on purpose."""

    exit_code = ExitCode.FAILURE


class ConfigError(CoupadError):
    """The configuration is invalid; the message names the key."""

    exit_code = ExitCode.CONFIG


class BrowserError(CoupadError):
    """Chromium or chromedriver could not be started or stopped working."""


class StartStopped(CoupadError):
    """The worker was asked to stop while its browser was starting: the browser is closed
    before it signs in (nothing was in flight, nothing is lost)."""


class SignInRequired(CoupadError):
    """Coupa redirected to its sign-in page or an identity provider."""


class InputError(CoupadError):
    """An input file cannot become a batch; the message says why in plain words."""


class ControlError(CoupadError):
    """The control socket refused a request or could not be reached."""


class AlreadyRunning(CoupadError):
    """Another daemon holds the lock on the state folder; the message names it."""

    exit_code = ExitCode.ALREADY_RUNNING


class DaemonNotRunning(ControlError):
    """No daemon answers on the control socket."""

    exit_code = ExitCode.NOT_RUNNING
