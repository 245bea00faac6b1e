"""How much memory coupad may use, and how much is used: the host's, or its cgroup's.

Under systemd (``MemoryMax=``) or in a container, the cgroup limit is the one that counts;
without one, the machine's memory is. "Used" is then the cgroup's own charge, or the drop in
MemAvailable for the machine (both count page cache that the kernel can reclaim only in part,
which is the cautious side).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryView:
    limit: int  # bytes
    used: int  # bytes
    source: str  # "cgroup" or "host"

    @property
    def pressure(self) -> float:
        return self.used / self.limit if self.limit else 0.0


def _meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) * 1024
    return values


def _cgroup_dir(proc_cgroup: str) -> Path | None:
    """The unified (v2) cgroup folder of this process, from /proc/self/cgroup's text."""
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0" and parts[1] == "":
            return CGROUP_ROOT / parts[2].lstrip("/")
    return None


def _v1_memory_dir(proc_cgroup: str) -> Path | None:
    """The cgroup v1 memory controller folder of this process, if the host uses v1."""
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            return CGROUP_ROOT / "memory" / parts[2].lstrip("/")
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" or not text.isdigit() else int(text)


def view() -> MemoryView:
    """The memory limit that applies to this process and what is used of it now."""
    info = _meminfo()
    host_limit = info["MemTotal"]
    host_used = host_limit - info.get("MemAvailable", info.get("MemFree", 0))
    try:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        proc_cgroup = ""
    v1 = _v1_memory_dir(proc_cgroup)
    if v1 is not None:
        limit_v1 = _read_int(v1 / "memory.limit_in_bytes")
        used_v1 = _read_int(v1 / "memory.usage_in_bytes")
        if limit_v1 is not None and used_v1 is not None and limit_v1 < host_limit:
            return MemoryView(limit=limit_v1, used=used_v1, source="cgroup")
    folder = _cgroup_dir(proc_cgroup)
    # The tightest memory.max on the way up the tree is the one that applies.
    limit = None
    used = None
    while folder is not None and (folder == CGROUP_ROOT or CGROUP_ROOT in folder.parents):
        value = _read_int(folder / "memory.max")
        if value is not None and (limit is None or value < limit):
            limit = value
            used = _read_int(folder / "memory.current")
        if folder == CGROUP_ROOT:
            break
        folder = folder.parent
    if limit is not None and used is not None and limit < host_limit:
        return MemoryView(limit=limit, used=used, source="cgroup")
    return MemoryView(limit=host_limit, used=host_used, source="host")
