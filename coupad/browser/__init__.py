"""The browser side: one Chromium, its DevTools connection, its tabs and its downloads.

- :mod:`coupad.browser.launch` — headless Chromium under Selenium: flags, isolated profiles,
  a process group per browser, and the start-up sweep of leftovers.
- :mod:`coupad.browser.cdp` — the one DevTools connection per browser, with its tabs as
  flattened sessions.
- :mod:`coupad.browser.downloads` — click downloads attributed to their tab by the browser's
  download events.
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
