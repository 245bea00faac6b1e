"""Scripts run in a tab by ``Runtime.evaluate``: the expression sent, and the value read back.

A script is a WebDriver-style function body (``arguments[i]``, ``return``); the tab's session
runs it through :meth:`coupad.browser.cdp.Connection.evaluate`.
"""

from __future__ import annotations

import json
from typing import Any

from coupad.browser.wire import CdpError


def script_expression(script: str, args: tuple[Any, ...]) -> str:
    """The expression that runs ``script`` with ``args`` as its ``arguments``."""
    return f"(function() {{\n{script}\n}}).apply(null, {json.dumps(list(args))})"


def evaluation_value(result: Any) -> Any:
    """The value of a ``Runtime.evaluate`` result; CdpError when the script threw."""
    if not isinstance(result, dict):
        raise CdpError("DevTools answered the evaluation without a result")
    details = result.get("exceptionDetails")
    if details is not None:
        text = None
        if isinstance(details, dict):
            exception = details.get("exception")
            if isinstance(exception, dict):
                text = exception.get("description")
            text = text or details.get("text")
        raise CdpError(f"the page's script failed: {str(text)[:200]}")
    inner = result.get("result")
    return inner.get("value") if isinstance(inner, dict) else None
