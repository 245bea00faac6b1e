"""The POs every benchmark runs: one simulator scenario holding three ranges of PO numbers.

- ``MIX`` (from 50,000,000): the engine benchmark's fixed mix — most POs with 1-3
  attachments of 100 KB-1.5 MB in both shapes (links fetched directly, buttons downloaded by
  the browser), one in ten with its files on the requisition only, one in ten without
  attachments, one in ten not found.
- ``FIXED`` (from 60,000,000): pages that cost only server latency — a fixed page delay, the
  attachment list rendered at once, no attachments — so the best possible time is known.
- ``LIGHT`` (from 70,000,000): the soak's POs — one small attachment each, alternating shapes,
  so 2,000 of them fit the time budget while every PO still downloads a file.
- ``LATENCY`` (from 80,000,000): the latency-bound mix — 1-3 small attachments (1-100 KB) per
  PO, every third attachment click-only (``shape = "button"``), one PO in ten without any.
  These POs carry no latency of their own: on the zero-latency simulator they cost nothing but
  the client, and :func:`latency_scenario` gives a simulator of their own the latency-bound
  preset (0.8 s of server time per page, the list rendered 0.4 s later) through the scenario's
  ``[latency]`` table, so both latencies serve the very same POs.

Each range's per-PO settings override the latency preset of the simulator they are loaded
into, so one scenario file serves both the realistic and the zero-latency simulator.
"""

from __future__ import annotations

import random
from typing import Any

MIX = 50_000_000
FIXED = 60_000_000
LIGHT = 70_000_000
LATENCY = 80_000_000
FIXED_PAGE_DELAY = 1.0  # seconds of server time per FIXED page
# The latency-bound preset: server time per page, and how much later its attachment list
# arrives (the page's script asks for it; the answer comes this long after).
LATENCY_PAGE_DELAY = 0.8
LATENCY_RENDER_DELAY = 0.4
LATENCY_BANDWIDTH = 4_000_000  # bytes/s, as the realistic preset


def mix(count: int, seed: int = 7) -> tuple[dict[str, Any], dict[str, Any]]:
    """``count`` MIX POs and their requisitions, as scenario tables."""
    rng = random.Random(seed)
    pos: dict[str, Any] = {}
    requisitions: dict[str, Any] = {}
    for n in range(count):
        digits = str(MIX + n)
        kind = n % 10
        if kind == 7:
            pos[digits] = {"error": "not_found"}
            continue
        if kind == 8:
            pos[digits] = {"supplier": "Empty Ltd"}
            continue
        attachments = [
            {
                "name": f"doc-{n}-{i}.{rng.choice(['pdf', 'xlsx', 'msg', 'docx'])}",
                "size": rng.randint(100_000, 1_500_000),
                "shape": "button" if i % 2 else "link",
            }
            for i in range(rng.randint(1, 3))
        ]
        pos[digits] = {"supplier": f"Supplier {n % 5}", "attachments": attachments}
        if kind == 9:
            req = str(9_000 + n)
            pos[digits] = {"supplier": "Req Only", "requisition": req}
            requisitions[req] = {"attachments": attachments[:1]}
    return pos, requisitions


def fixed(count: int) -> dict[str, Any]:
    """``count`` FIXED POs: server time only, nothing to download."""
    return {
        str(FIXED + n): {"supplier": "Latency Only", "page_delay": FIXED_PAGE_DELAY,
                         "render_delay": 0.0}
        for n in range(count)
    }


def light(count: int) -> dict[str, Any]:
    """``count`` LIGHT POs: one 20 KB attachment each, links and buttons in turn."""
    return {
        str(LIGHT + n): {
            "supplier": f"Soak {n % 7}",
            "attachments": [{"name": f"soak-{n}.pdf", "size": 20_000,
                             "shape": "button" if n % 2 else "link"}],
        }
        for n in range(count)
    }


def latency_bound(count: int, seed: int = 11) -> dict[str, Any]:
    """``count`` LATENCY POs: 1-3 attachments of 1-100 KB, every third one click-only, one
    PO in ten without attachments; no latency of their own (the simulator's preset decides)."""
    rng = random.Random(seed)
    pos: dict[str, Any] = {}
    files = 0
    for n in range(count):
        digits = str(LATENCY + n)
        if n % 10 == 4:
            pos[digits] = {"supplier": "Nothing Attached"}
            continue
        attachments = []
        for i in range(rng.randint(1, 3)):
            attachments.append({
                "name": f"lat-{n}-{i}.{rng.choice(['pdf', 'xlsx', 'msg', 'docx'])}",
                "size": rng.randint(1_000, 100_000),
                "shape": "button" if files % 3 == 2 else "link",
            })
            files += 1
        pos[digits] = {"supplier": f"Supplier {n % 5}", "attachments": attachments}
    return pos


def latency_scenario(count: int) -> dict[str, Any]:
    """A scenario for a simulator of its own: the first ``count`` LATENCY POs under the
    latency-bound preset (run it with ``--preset realistic``: the table overrides its page
    and render delays, and keeps its bandwidth)."""
    return {
        "po": latency_bound(count),
        "latency": {"page_delay": LATENCY_PAGE_DELAY, "render_delay": LATENCY_RENDER_DELAY,
                    "bandwidth": LATENCY_BANDWIDTH},
    }


def scenario(mix_count: int, fixed_count: int, light_count: int,
             latency_count: int = 0) -> dict[str, Any]:
    """The whole scenario file's content."""
    pos, requisitions = mix(mix_count)
    pos.update(fixed(fixed_count))
    pos.update(light(light_count))
    pos.update(latency_bound(latency_count))
    return {"po": pos, "requisition": requisitions}


def numbers(first: int, count: int) -> list[str]:
    """PO numbers as a CSV would hold them."""
    return [f"PO{first + n}" for n in range(count)]


def expected_mix(count: int) -> dict[str, int]:
    """Final statuses the first ``count`` MIX POs must end with."""
    pos, _ = mix(count)
    found: dict[str, int] = {}
    for table in pos.values():
        if "error" in table:
            status = "NOT_FOUND"
        elif table.get("attachments") or table.get("requisition"):
            status = "COMPLETED"
        else:
            status = "NO_ATTACHMENTS"
        found[status] = found.get(status, 0) + 1
    return found


def expected_latency_bound(count: int) -> dict[str, int]:
    """Final statuses the first ``count`` LATENCY POs must end with."""
    found: dict[str, int] = {}
    for table in latency_bound(count).values():
        status = "COMPLETED" if table.get("attachments") else "NO_ATTACHMENTS"
        found[status] = found.get(status, 0) + 1
    return found
