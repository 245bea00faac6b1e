"""Which tab a frame belongs to: each tab's frames, cross-site iframes and popups.

A download's ``frameId`` is the tab's target id (= its WebDriver window handle); or a child
frame's id, mapped to its tab from ``Page.getFrameTree`` and ``Page.frameAttached`` on each
tab's session (and, for a cross-site iframe in its own process, from its ``iframe`` target's
``parentFrameId``); or a popup's id (a ``target=_blank`` link), mapped to the tab that opened
it. :class:`Frames` keeps that map from the events it is shown.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from coupad.browser.cdp import Connection


class Frames:
    """The child frames of one connection's tabs, and the page target each belongs to."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._frames: dict[str, str] = {}  # child frame id → the page target that holds it

    def learn_tree(self, target_id: str, result: Any) -> None:
        """Map every child frame in a tab's ``Page.getFrameTree`` answer to the tab."""
        tree = result.get("frameTree") if isinstance(result, dict) else None
        stack = [tree]
        while stack:
            node = stack.pop()
            if not isinstance(node, dict):
                continue
            frame = node.get("frame")
            frame_id = frame.get("id") if isinstance(frame, dict) else None
            if isinstance(frame_id, str) and frame_id != target_id:
                self._frames[frame_id] = target_id
            children = node.get("childFrames")
            if isinstance(children, list):
                stack.extend(children)

    def on_frame_attached(self, params: dict[str, Any], session: str | None) -> None:
        """``Page.frameAttached`` on a tab's session: a new child frame of that tab."""
        frame_id = params.get("frameId")
        target_id = self.connection.targets.target_of(session) if session is not None else None
        if isinstance(frame_id, str) and target_id is not None and frame_id != target_id:
            self._frames[frame_id] = target_id

    def on_target_created(self, params: dict[str, Any], session: str | None) -> None:
        """``Target.targetCreated``: a cross-site iframe, mapped to the page of its parent."""
        # A cross-site iframe runs in a process of its own, as an "iframe" target whose id is
        # its frame id; its parent frame says which page holds it.
        info = params.get("targetInfo")
        if not isinstance(info, dict) or info.get("type") != "iframe":
            return
        frame_id, parent = info.get("targetId"), info.get("parentFrameId")
        if isinstance(frame_id, str) and isinstance(parent, str):
            page = self._frames.get(parent, parent)
            self._frames[frame_id] = page

    def on_target_destroyed(self, params: dict[str, Any], session: str | None) -> None:
        """``Target.targetDestroyed``: a page that closed takes its frames with it."""
        target_id = params.get("targetId")
        if isinstance(target_id, str) and target_id in self._frames.values():
            self._frames = {f: t for f, t in self._frames.items() if t != target_id}

    def page_of(self, frame_id: str, tabs: Container[str]) -> str | None:
        """The page target a frame belongs to, or None when no known page holds it.

        ``tabs`` are the tabs awaiting downloads: a frame that is one of them is its own page.
        """
        if frame_id in self._frames:
            return self._frames[frame_id]
        known = (frame_id in tabs or self.connection.targets.session_for(frame_id) is not None
                 or self.connection.targets.opener_of(frame_id) is not None)
        return frame_id if known else None

    def tab_of(self, page: str, tabs: Container[str]) -> str:
        """The tab a page belongs to: itself, or for a popup the tab that opened it.

        The openers are followed until one of ``tabs`` (those awaiting downloads) is reached.
        """
        seen = {page}
        while page not in tabs:
            opener = self.connection.targets.opener_of(page)
            if opener is None or opener in seen:
                break
            page = self._frames.get(opener, opener)  # a popup opened from an iframe
            seen.add(page)
        return page
