"""Logging for every coupad process: one line per event on stderr, component and PID in each."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators, as they may
# come in file names, cells and peers' words: printed raw they would split or forge lines.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7f, 0xa0)]}
_ESCAPES |= {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
             0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    """The text on one line: every control character written as a backslash escape."""
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """One line per event: the message's control characters escaped (a traceback after it
    keeps its lines, which are the program's own words)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s[%(process)d] %(message)s"


def setup(level: str = "info", fmt: str = "text") -> None:
    """Send every coupad logger to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("coupad").setLevel(level.upper())


def set_level(level: str) -> None:
    """Change the level of every coupad logger in this process."""
    logging.getLogger("coupad").setLevel(level.upper())
