"""The browser side: one Chromium, its DevTools connection, its tabs and its downloads.

- :mod:`coupad.browser.launch` — headless Chromium under Selenium: flags, isolated profiles,
  a process group per browser, and the start-up sweep of leftovers.
- :mod:`coupad.browser.cdp` (with :mod:`~coupad.browser.wire`, :mod:`~coupad.browser.targets`,
  :mod:`~coupad.browser.evaluation`) — the one DevTools connection per browser, with its tabs
  as flattened sessions; :mod:`~coupad.browser.reader` reads a tab over its session.
- :mod:`coupad.browser.downloads` (with :mod:`~coupad.browser.download_events`,
  :mod:`~coupad.browser.frames`) — click downloads attributed to their tab by the browser's
  download events.
- The engine's parts: :mod:`~coupad.browser.po` (one PO's record and result),
  :mod:`~coupad.browser.tabs` and :mod:`~coupad.browser.tabops` (the tab pool and what is
  done to tabs), :mod:`~coupad.browser.evidence`, :mod:`~coupad.browser.clicks`,
  :mod:`~coupad.browser.fetches`.
"""

from coupad.browser.launch import (
    CHROMIUM_FLAGS,
    PROFILE_SKIP,
    Browser,
    BrowserLike,
    BrowserSpec,
    chromium_prefs,
    copy_profile,
    keep_session_cookies,
    new_profile_dir,
    sweep_leftovers,
)

__all__ = [
    "CHROMIUM_FLAGS", "PROFILE_SKIP", "Browser", "BrowserLike", "BrowserSpec", "chromium_prefs",
    "copy_profile", "keep_session_cookies", "new_profile_dir", "sweep_leftovers",
]
