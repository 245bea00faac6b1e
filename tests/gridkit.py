"""A real Selenium Grid 4 on this machine for tests: a hub and nodes from etc/grid's samples.

The server jar is what `make grid` cached (the npm package's, pinned); Java is Debian's. Each
process runs in a session of its own, so killing a node's group kills its JVM, chromedriver
and Chromium at once, as a machine dying would. Ports are free ones, so tests never meet
another Grid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coupad.config import write_toml
from util import wait_until

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "etc" / "grid"


def server_jar() -> Path:
    jars = sorted((ROOT / ".cache" / "grid").glob("selenium-server-*.jar"))
    assert jars, "the Selenium server jar is missing: `make grid` fetches it (make test does)"
    return jars[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(url: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + "/status", timeout=5) as answer:
        return dict(json.loads(answer.read())["value"])


def sessions(url: str) -> list[dict[str, Any]]:
    """Every session the Grid holds, with its capabilities."""
    found = []
    for node in status(url).get("nodes", []):
        for slot in node.get("slots", []):
            if slot.get("session"):
                found.append(slot["session"])
    return found


@dataclass
class Grid:
    root: Path
    max_sessions: int
    session_timeout: int
    request_timeout: int = 50  # how long a new-session request may wait in the hub's queue
    hub_port: int = field(default_factory=free_port)
    publish: int = field(default_factory=free_port)
    subscribe: int = field(default_factory=free_port)
    hub: subprocess.Popen[bytes] | None = None
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    node_ports: list[int] = field(default_factory=list)  # beside ``nodes``
    started: int = 0  # nodes started so far (names their config files)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    def start_hub(self) -> None:
        config = tomllib.loads((SAMPLES / "hub.toml").read_text())
        config["server"].update(host="127.0.0.1", port=self.hub_port)
        config["events"].update(publish=f"tcp://127.0.0.1:{self.publish}",
                                subscribe=f"tcp://127.0.0.1:{self.subscribe}")
        config["sessionqueue"]["session-request-timeout"] = self.request_timeout
        path = write_toml(self.root / "hub.toml", config)
        self.hub = self._java("hub", path, self.root / "hub.log")

    def start_node(self) -> int:
        """Start one more node; its index."""
        index, self.started = self.started, self.started + 1
        port = free_port()
        config = tomllib.loads((SAMPLES / "node.toml").read_text())
        config["server"].update(host="127.0.0.1", port=port)
        config["events"].update(publish=f"tcp://127.0.0.1:{self.publish}",
                                subscribe=f"tcp://127.0.0.1:{self.subscribe}")
        config["node"].update({"grid-url": self.url, "max-sessions": self.max_sessions,
                               "session-timeout": self.session_timeout,
                               # a restarted hub learns of its nodes at their next heartbeat
                               "heartbeat-period": 3})
        for driver in config["node"]["driver-configuration"]:
            driver["max-sessions"] = self.max_sessions
        path = write_toml(self.root / f"node-{index}.toml", config)
        self.nodes.append(self._java("node", path, self.root / f"node-{index}.log"))
        self.node_ports.append(port)
        return len(self.nodes) - 1

    def node_of(self, session_id: str) -> int:
        """The index of the node that holds a session."""
        session = next(s for s in sessions(self.url) if s["sessionId"] == session_id)
        return next(i for i, port in enumerate(self.node_ports) if f":{port}" in session["uri"])

    def kill_node(self, index: int) -> None:
        """``kill -9`` a node's JVM with its chromedriver and Chromium; it leaves the list."""
        self.kill(self.nodes.pop(index))
        self.node_ports.pop(index)

    def _java(self, role: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                ["java", "-Xss512k", "-jar", str(server_jar()), role, "--config", str(config)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root)

    def wait_ready(self, nodes: int, timeout: float = 60, *, free: bool = True) -> None:
        """Wait for ``nodes`` nodes UP and, with ``free``, the Grid ready: Grid is "ready" only
        while a slot is free, which a Grid whose slots all hold sessions is not."""
        seen: list[Any] = []

        def up() -> bool:
            try:
                value = status(self.url)
            except OSError as exc:
                seen[:] = [str(exc)]
                return False
            seen[:] = [value.get("ready"), [(n.get("uri"), n.get("availability"))
                                            for n in value.get("nodes", [])]]
            return (bool(value.get("ready")) or not free) and sum(
                1 for n in value.get("nodes", []) if n.get("availability") == "UP") >= nodes
        try:
            wait_until(up, timeout, what=f"the Grid ready with {nodes} node(s)")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the Grid said last: {seen}") from None

    def kill(self, proc: subprocess.Popen[bytes] | None) -> None:
        """SIGKILL a Grid process with everything it started (JVM, chromedriver, Chromium)."""
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in [*self.nodes, self.hub]:
            self.kill(proc)


@contextmanager
def grid(root: Path, *, nodes: int = 2, max_sessions: int = 3, session_timeout: int = 300,
         request_timeout: int = 50) -> Iterator[Grid]:
    """A hub and ``nodes`` nodes, ready; everything of theirs killed after."""
    root.mkdir(parents=True, exist_ok=True)
    g = Grid(root=root, max_sessions=max_sessions, session_timeout=session_timeout,
             request_timeout=request_timeout)
    try:
        g.start_hub()
        for _ in range(nodes):
            g.start_node()
        try:
            g.wait_ready(nodes)
        except AssertionError:
            # Seen once on a loaded machine: the hub up, no node registered in 60 s (a port
            # taken between its choice and the node's bind, or a slow JVM). The nodes are
            # started once more, on new ports, before the tests are given up.
            for proc in g.nodes:
                g.kill(proc)
            g.nodes.clear()
            g.node_ports.clear()
            for _ in range(nodes):
                g.start_node()
            g.wait_ready(nodes, timeout=120)
        yield g
    finally:
        g.stop()
