"""The PO engine against the simulator with real Chromium: one test per outcome and mode.

One simulator (with a scenario that defines every PO used here) and one signed-in engine
with three tabs are shared by the module; each test gets its own download root.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from coupad.browser.reader import TabReader
from coupad.engine import COMMIT_PROBE_JS, Engine, Outcome, PoResult
from coupad.folders import group_folder_name
from coupad.sim.testing import SimHandle, sim_server
from util import wait_until
from enginekit import (
    assert_fetched_once,
    assert_folder_matches,
    config_for,
    engine_for,
    files_under,
    job,
    run_all,
)

pytestmark = [pytest.mark.browser]


def attachments(*specs: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [{"name": n, "size": 1500 + 97 * i, "shape": shape, "disposition": disp}
            for i, (n, shape, disp) in enumerate(specs)]


BOTH = attachments(
    ("quote.pdf", "link", "plain"),
    ("terms & conditions.docx", "button", "rfc5987"),
    ("prices.xlsx", "link", "rfc5987"),
    ("approval.msg", "button", "plain"),
)
SLOW = {"bandwidth": 150_000}
SCENARIO: dict[str, Any] = {
    "po": {
        "31000001": {"supplier": "ACME Corp", "attachments": BOTH, "banner": "Revised: not found"},
        "31000002": {"supplier": "Empty Ltd"},
        "31000003": {"error": "not_found"},
        "31000004": {"error": "access_denied"},
        "31000014": {"error": "access_denied_fr"},
        "31000005": {"attachments": attachments(("a.pdf", "link", "plain"), ("b.pdf", "button", "plain")),
                     "trouble": {"throttle_first": 1}},
        "31000015": {"attachments": attachments(("t.pdf", "link", "plain")),
                     "trouble": {"throttle_page_first": 1}},
        "31000006": {"attachments": attachments(("c.pdf", "link", "plain"), ("d.pdf", "button", "plain")),
                     "trouble": {"server_error_first": 1}},
        "31000007": {"attachments": attachments(
            ("report.pdf", "link", "plain"), ("report.pdf", "button", "plain"),
            ("REPORT.pdf", "link", "rfc5987"))},
        "31000008": {"attachments": attachments(("e.pdf", "link", "plain"), ("f.pdf", "button", "plain"))},
        "31000009": {"supplier": "Müller & Söhne GmbH / Berlin",
                     "attachments": attachments(("g.pdf", "link", "plain"))},
        "31000010": {"requisition": "9010"},
        "31000011": {"requisition": "9011", "attachments": attachments(("po-own.msg", "button", "plain"))},
        "31000012": {"requisition": "9012"},
        "31000013": {"requisition": "9013", "attachments": attachments(("own.zip", "link", "plain"))},
        "31000020": {"attachments": [{"name": "slow-a.bin", "size": 150_000, "shape": "link"},
                                     {"name": "slow-b.bin", "size": 150_000, "shape": "button"}],
                     "trouble": SLOW},
        "31000021": {"attachments": [{"name": "slow-a.bin", "size": 160_000, "shape": "button"},
                                     {"name": "slow-b.bin", "size": 160_000, "shape": "link"}],
                     "trouble": SLOW},
        "31000022": {"attachments": [{"name": "slow-a.bin", "size": 170_000, "shape": "link"},
                                     {"name": "slow-b.bin", "size": 170_000, "shape": "button"}],
                     "trouble": SLOW},
        "31000030": {"page_delay": 1.5},
        "31000031": {"page_delay": 1.5},
        "31000032": {"page_delay": 1.5},
        "31000040": {"trouble": {"hang": True}},
        "31000041": {"attachments": attachments(("h.pdf", "link", "plain"), ("i.pdf", "button", "plain"))},
        "31000042": {"attachments": [{"name": "big.bin", "size": 400_000, "shape": "button"}],
                     "trouble": {"bandwidth": 100_000}},
        "31000043": {"attachments": attachments(("j.pdf", "link", "plain"))},
        "31000050": {"supplier": "First Supplier", "attachments": attachments(("k.pdf", "link", "plain"))},
        "31000051": {"supplier": "Second Supplier", "page_delay": 1.0,
                     "attachments": attachments(("l.pdf", "button", "plain"))},
        "31000060": {"render_delay": 8.0, "attachments": attachments(("n.pdf", "link", "plain"))},
        "31000053": {"page_delay": 0.8, "attachments": attachments(("m.pdf", "link", "plain")),
                     "trouble": {"throttle_page_first": 1}},
    },
    "requisition": {
        "9010": {"attachments": attachments(("req-quote.pdf", "link", "plain"),
                                            ("req-approval.msg", "button", "rfc5987"))},
        "9011": {"attachments": attachments(("req-extra.pdf", "link", "plain"))},
        "9012": {"attachments": attachments(("only-req.pdf", "button", "plain"))},
        "9013": {"attachments": attachments(("req-more.pdf", "link", "plain"))},
    },
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with sim_server(scenario=SCENARIO, render_delay=0.3) as handle:
        yield handle


@pytest.fixture(scope="module")
def engine(sim: SimHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    root = tmp_path_factory.mktemp("engine")
    config = config_for(root, sim.base_url, username=sim.username, password=sim.password)
    eng = engine_for(config, root, tabs=3)
    try:
        eng.start()
        yield eng
    finally:
        eng.close()


@pytest.fixture
def downloads(engine: Engine, tmp_path: Path) -> Iterator[Path]:
    """A download root of the test's own (the shared engine's config points there)."""
    original = engine.config
    root = tmp_path / "downloads"
    engine.config = original.replace("paths", downloads=root)
    try:
        yield root
    finally:
        engine.config = original
        assert engine.busy == 0
        assert engine.browser is not None
        # Tabs are kept for the next PO: none beyond the engine's tabs, and once idle for a
        # moment (while the engine is polled, as a worker always does) none on a page.
        wait_until(lambda: engine.poll(0.1) == [] and spare_tabs_blank(engine), 10,
                   what="every spare tab blank")


@contextmanager
def started_engine(sim: SimHandle, root: Path, tabs: int, **pool: Any) -> Iterator[Engine]:
    """A signed-in engine of the test's own (``pool`` overrides pool keys), closed after."""
    config = config_for(root, sim.base_url, username=sim.username, password=sim.password)
    eng = engine_for(config.replace("pool", **pool) if pool else config, root, tabs=tabs)
    try:
        eng.start()
        assert eng.browser is not None
        yield eng
    finally:
        eng.close()


def spare_tabs_blank(engine: Engine) -> bool:
    """At most the engine's tabs (K working, and pool.watching_tabs more that only watched)
    beside the first one, and all of those blank."""
    assert engine.browser is not None
    infos = engine.browser.driver.execute_cdp_cmd("Target.getTargets", {})["targetInfos"]
    pages = [i for i in infos if i["type"] == "page"]
    assert len(pages) <= 1 + engine.max_tabs, f"{len(pages)} tabs for {engine.max_tabs} POs at most"
    return len([i for i in pages if i["url"] != "about:blank"]) <= 1


def one(engine: Engine, digits: str, **kw: Any) -> PoResult:
    results = run_all(engine, [job(digits, **kw)])
    return results[digits]


def expect(sim: SimHandle, digits: str, *, requisition: bool = False) -> list[dict[str, Any]]:
    truth = sim.truth(digits)
    return list(truth["attachments"]) + (list(truth["requisition_attachments"]) if requisition else [])


# ---- final outcomes ------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_completed_with_both_shapes_under_the_toolbar(engine: Engine, sim: SimHandle, downloads: Path) -> None:
    result = one(engine, "31000001")
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert (result.found, result.downloaded) == (4, 4)
    assert result.supplier == "ACME Corp"
    assert result.folder == downloads / "PO31000001_COMPLETED"
    assert result.final_url == f"{sim.base_url}/order_headers/31000001"
    expected = expect(sim, "31000001")
    assert {a["shape"] for a in expected} == {"link", "button"}
    assert_folder_matches(result.folder, expected)
    counters = sim.counters()
    assert_fetched_once(counters, expected)
    decoys = [p for p in counters["paths"] if p.startswith("/order_headers/31000001/")
              and not p.endswith("attachments.json")]
    assert decoys == [], "an export/download link was fetched as if it were an attachment"
    assert sorted(result.names) == sorted(p.name for p in result.folder.iterdir() if p.name != "manifest.json")
    assert set(result.timings) >= {"page", "settle", "discovery", "downloads", "finalize", "total"}
    assert files_under(downloads) == sorted(result.folder.iterdir())


@pytest.mark.timeout(60)
def test_no_attachments_finishes_with_an_empty_folder(engine: Engine, sim: SimHandle, downloads: Path) -> None:
    started = time.monotonic()
    result = one(engine, "31000002")
    assert result.outcome is Outcome.NO_ATTACHMENTS, result.reason
    assert (result.found, result.downloaded, result.names) == (0, 0, ())
    assert result.folder == downloads / "PO31000002_NO_ATTACHMENTS"
    assert list(result.folder.iterdir()) == []
    # No fixed wait: the page settles right after its (0.3 s) attachment request returns.
    assert time.monotonic() - started < 5


@pytest.mark.timeout(60)
@pytest.mark.parametrize("digits, outcome", [
    ("31000003", Outcome.NOT_FOUND),
    ("31000004", Outcome.ACCESS_DENIED),
    ("31000014", Outcome.ACCESS_DENIED),
])
def test_error_pages_are_final_and_visited_once(
    engine: Engine, sim: SimHandle, downloads: Path, digits: str, outcome: Outcome
) -> None:
    result = one(engine, digits)
    assert result.outcome is outcome, result.reason
    assert result.outcome.final and not result.outcome.retryable
    assert result.reason.startswith("Coupa says")
    assert result.folder == downloads / f"PO{digits}_{outcome.value}"
    assert list(result.folder.iterdir()) == []
    assert sim.counters()["paths"][f"/order_headers/{digits}"] == 1


# ---- retryable outcomes, then success ------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("digits, first", [
    ("31000005", Outcome.THROTTLED),
    ("31000015", Outcome.THROTTLED),
    ("31000006", Outcome.SERVER_ERROR),
])
def test_transient_trouble_then_success_on_retry(
    engine: Engine, sim: SimHandle, downloads: Path, digits: str, first: Outcome
) -> None:
    failed = one(engine, digits)
    assert failed.outcome is first, failed.reason
    assert failed.outcome.retryable and not failed.outcome.final
    assert not list(downloads.glob(f"*/PO{digits}_*")) and not list(downloads.glob(f"PO{digits}_*"))
    retried = one(engine, digits)
    assert retried.outcome is Outcome.COMPLETED, retried.reason
    expected = expect(sim, digits)
    assert_folder_matches(downloads / f"PO{digits}_COMPLETED", expected)
    assert_fetched_once(sim.counters(), expected)


@pytest.mark.timeout(60)
def test_signed_out_after_expiry_writes_no_final_folder(engine: Engine, sim: SimHandle, downloads: Path) -> None:
    sim.expire_sessions()
    try:
        result = one(engine, "31000008")
        assert result.outcome is Outcome.SIGNED_OUT, result.reason
        assert not result.outcome.final and not result.outcome.retryable
        assert "sign-in" in result.reason
        assert not [p for p in downloads.rglob("PO31000008_*")]
        assert sim.counters()["attachments"].get("31000008-1", 0) == 0
    finally:
        assert engine.sign_in()
    result = one(engine, "31000008")
    assert result.outcome is Outcome.COMPLETED, result.reason
    expected = expect(sim, "31000008")
    assert_folder_matches(downloads / "PO31000008_COMPLETED", expected)
    assert_fetched_once(sim.counters(), expected)


# ---- requisition modes ----------------------------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode, without_own, with_own", [
    # (PO 31000010/12 have no files of their own; 31000011/13 have one each)
    ("when_po_has_none", True, False),
    ("always", True, True),
    ("never", False, False),
])
def test_requisition_files_by_mode(
    engine: Engine, sim: SimHandle, downloads: Path, mode: str, without_own: bool, with_own: bool
) -> None:
    engine.config = engine.config.replace("coupa", requisition_attachments=mode)
    pos = {"when_po_has_none": ("31000010", "31000011"), "always": ("31000012", "31000013"),
           "never": ("31000010", "31000011")}[mode]
    results = run_all(engine, [job(d, key=f"{mode}-{d}") for d in pos])
    bare, own = results[pos[0]], results[pos[1]]
    if without_own:
        assert bare.outcome is Outcome.COMPLETED, bare.reason
        assert_folder_matches(bare.folder, expect(sim, pos[0], requisition=True))  # type: ignore[arg-type]
        assert "requisition" in bare.timings
    else:
        assert bare.outcome is Outcome.NO_ATTACHMENTS, bare.reason
        assert list(bare.folder.iterdir()) == []  # type: ignore[union-attr]
    assert own.outcome is Outcome.COMPLETED, own.reason
    assert_folder_matches(own.folder, expect(sim, pos[1], requisition=with_own))  # type: ignore[arg-type]
    manifest_sources = {
        f["source"] for f in __import__("json").loads((own.folder / "manifest.json").read_text())["files"]  # type: ignore[operator]
    }
    assert manifest_sources == ({"po", "requisition"} if with_own else {"po"})


# ---- names ---------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_duplicate_names_are_kept_apart(engine: Engine, sim: SimHandle, downloads: Path) -> None:
    result = one(engine, "31000007")
    assert result.outcome is Outcome.COMPLETED, result.reason
    expected = expect(sim, "31000007")
    assert_folder_matches(result.folder, expected)  # type: ignore[arg-type]
    names = sorted(n.lower() for n in result.names)
    assert names == ["report (2).pdf", "report (3).pdf", "report.pdf"]
    assert_fetched_once(sim.counters(), expected)


@pytest.mark.timeout(90)
def test_every_awkward_name_of_the_catalogue(engine: Engine, sim: SimHandle, downloads: Path) -> None:
    examples = sim.examples()
    chosen = examples["awkward_names"][:2] + examples["rfc5987_names"][:1] + examples["inline_pdf"][:1]
    results = run_all(engine, [job(d) for d in chosen])
    for digits in chosen:
        result = results[digits]
        assert result.outcome is Outcome.COMPLETED, (digits, result.reason)
        expected = expect(sim, digits)
        assert result.found == len(expected) == result.downloaded
        assert_folder_matches(result.folder, expected)  # type: ignore[arg-type]
        assert_fetched_once(sim.counters(), expected)
    # Nothing escaped the PO folders, whatever the names said.
    folders = {results[d].folder for d in chosen}
    assert all(p.parent in folders for p in files_under(downloads))


# ---- tabs ----------------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_three_tabs_with_slow_downloads_keep_every_file_in_its_own_folder(
    engine: Engine, sim: SimHandle, downloads: Path
) -> None:
    pos = ["31000020", "31000021", "31000022"]
    started = time.monotonic()
    results = run_all(engine, [job(d) for d in pos])
    elapsed = time.monotonic() - started
    for digits in pos:
        assert results[digits].outcome is Outcome.COMPLETED, results[digits].reason
        expected = expect(sim, digits)
        assert_folder_matches(downloads / f"PO{digits}_COMPLETED", expected)
        assert_fetched_once(sim.counters(), expected)
    # Each PO downloads ~300 KB at 150 KB/s per file; one after another would take over 6 s.
    serial = sum(results[d].timings["downloads"] for d in pos)
    assert elapsed < serial, (elapsed, serial)


@pytest.mark.timeout(60)
def test_page_loads_overlap_across_tabs(engine: Engine, downloads: Path) -> None:
    pos = ["31000030", "31000031", "31000032"]
    started = time.monotonic()
    results = run_all(engine, [job(d) for d in pos])
    elapsed = time.monotonic() - started
    assert all(r.outcome is Outcome.NO_ATTACHMENTS for r in results.values())
    assert all(r.timings["page"] >= 1.4 for r in results.values()), [r.timings for r in results.values()]
    # One after another they would take at least the sum of their page times.
    serial = sum(r.timings["page"] for r in results.values())
    assert elapsed < serial, f"three pages took {elapsed:.1f} s of {serial:.1f} s: no overlap"


# ---- grouping, deadlines, shutdown ---------------------------------------------------------

@pytest.mark.timeout(60)
def test_grouped_by_supplier(engine: Engine, sim: SimHandle, downloads: Path) -> None:
    engine.config = engine.config.replace("downloads", group_by="supplier")
    result = one(engine, "31000009")
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.supplier == "Müller & Söhne GmbH / Berlin"
    group = downloads / group_folder_name("Müller & Söhne GmbH / Berlin")
    assert result.folder == group / "PO31000009_COMPLETED"
    assert group.parent == downloads
    assert_folder_matches(result.folder, expect(sim, "31000009"))


@pytest.mark.timeout(60)
def test_a_hanging_page_ends_at_the_deadline(engine: Engine, downloads: Path) -> None:
    started = time.monotonic()
    result = one(engine, "31000040", deadline_s=2.0)
    assert result.outcome is Outcome.TIMEOUT, result.reason
    assert result.outcome.retryable
    assert 2.0 <= time.monotonic() - started < 6.0
    assert not list(downloads.rglob("PO31000040*"))


@pytest.mark.timeout(60)
def test_a_hanging_page_does_not_stall_the_other_tabs(engine: Engine, sim: SimHandle, downloads: Path) -> None:
    """Regression: Chromium holds back every command to a tab whose navigation is pending, so
    looking at the hanging tab used to freeze the whole engine until that page answered."""
    started = time.monotonic()
    engine.submit(job("31000040", deadline_s=8.0))
    engine.submit(job("31000041"))
    done: dict[str, tuple[PoResult, float]] = {}
    while len(done) < 2 and time.monotonic() - started < 30:
        for result in engine.poll(0.1):
            done[result.job.po.digits] = (result, time.monotonic() - started)
    normal, normal_at = done["31000041"]
    hung, hung_at = done["31000040"]
    assert normal.outcome is Outcome.COMPLETED, normal.reason
    assert normal_at < 4.0, f"the normal PO waited {normal_at:.1f} s behind the hanging one"
    assert_folder_matches(downloads / "PO31000041_COMPLETED", expect(sim, "31000041"))
    assert hung.outcome is Outcome.TIMEOUT and hung_at >= 8.0


@pytest.mark.timeout(60)
def test_abort_all_leaves_work_folders_for_the_retry(engine: Engine, sim: SimHandle, downloads: Path) -> None:
    engine.submit(job("31000042"))
    engine.submit(job("31000043"))
    done: list[PoResult] = []
    deadline = time.monotonic() + 20
    while not done and time.monotonic() < deadline:
        done += engine.poll(0.1)
    assert [r.job.po.digits for r in done] == ["31000043"]  # the small PO finished first
    assert done[0].outcome is Outcome.COMPLETED
    # The slow PO's page may be read a moment later; its 400 KB take 4 s to arrive.
    work = downloads / "PO31000042__WORK"
    wait_until(lambda: done.extend(engine.poll(0.05)) or work.is_dir(), 10,
               what="the slow PO downloading")
    assert len(done) == 1, "the slow PO ended before it could be aborted"
    aborted = engine.abort_all("test shutdown")
    assert [r.outcome for r in aborted] == [Outcome.ERROR]
    assert aborted[0].outcome.retryable and "test shutdown" in aborted[0].reason
    assert aborted[0].folder == work and work.is_dir()
    assert engine.busy == 0 and engine.room == 3


@pytest.mark.timeout(90)
def test_one_tab_serves_po_after_po_each_reading_its_own_page(sim: SimHandle, tmp_path: Path) -> None:
    with started_engine(sim, tmp_path, tabs=1) as eng:
        # The slow page follows a fast one in the same tab: what is read must be its own page,
        # not the one before it, and so on through a not-found page and an empty one.
        # The same slow URL twice in a row (a throttled attempt, then its retry) must not
        # read the first attempt's page for the second.
        order = ["31000050", "31000051", "31000003", "31000002", "31000009", "31000053", "31000053"]
        results = [next(iter(eng.run([job(d)]))) for d in order]
        assert [r.outcome for r in results] == [
            Outcome.COMPLETED, Outcome.COMPLETED, Outcome.NOT_FOUND, Outcome.NO_ATTACHMENTS,
            Outcome.COMPLETED, Outcome.THROTTLED, Outcome.COMPLETED,
        ]
        assert [r.supplier for r in results[:2]] == ["First Supplier", "Second Supplier"]
        assert [r.names for r in results[:2]] == [("k.pdf",), ("l.pdf",)]
        assert all(r.final_url.endswith(d) for r, d in zip(results, order, strict=True))
        assert eng.browser is not None
        assert len(eng.browser.driver.window_handles) == 2  # the first tab and one reused tab
        # The tab still shows the last PO's page, retired: a commit probe that reached it
        # before the next navigation began would answer null, never its URL.
        (spare,) = eng._tab_pool.spare()
        assert eng._conn is not None
        channel = TabReader(eng._conn, spare, hold=5)
        try:
            assert channel.evaluate("return location.pathname;", wait=5) == (True, "/order_headers/31000053")
            assert channel.evaluate(COMMIT_PROBE_JS, wait=5) == (True, None)
        finally:
            channel.close()
        for digits in ("31000050", "31000051", "31000009", "31000053"):
            assert_folder_matches(tmp_path / "downloads" / f"PO{digits}_COMPLETED", expect(sim, digits))


@pytest.mark.timeout(120)
def test_a_crashed_tab_ends_its_po_at_once_and_the_engine_goes_on(sim: SimHandle, tmp_path: Path) -> None:
    with started_engine(sim, tmp_path, tabs=2) as eng:
        assert eng.browser is not None
        eng.submit(job("31000060", deadline_s=60))  # its attachment list takes 8 s to render
        results: list[PoResult] = []
        wait_until(lambda: results.extend(eng.poll(0.05)) or any(t.committed for t in eng._runs),
                   30, what="the page loading")
        renderers = [p for p in map(psutil.Process, eng.browser.pids())
                     if "--type=renderer" in " ".join(p.cmdline())]
        assert renderers and eng._conn is not None
        targets = eng._conn.targets
        tabs = set(targets.pages())  # the PO's, the spare and the first tab: all killed below
        for proc in renderers:
            proc.kill()
        wait_until(lambda: results.extend(eng.poll(0.05)) or results, 60, what="the PO's end")
        (crashed,) = results
        # Not left to run into its 60 s deadline (that would read "took longer than 60 s").
        assert crashed.outcome is Outcome.ERROR and "crashed" in crashed.reason, crashed.reason
        # The browser reports each crash a moment later on a loaded machine; once it has, the
        # engine opens no PO in a crashed tab, and a crashed first tab is replaced.
        wait_until(lambda: eng.poll(0.05) == [] and all(
            targets.crashed(t) or t not in targets.pages() for t in tabs), 30,
            what="the browser reporting the killed tabs")
        after = next(iter(eng.run([job("31000043")])))
        assert after.outcome is Outcome.COMPLETED, after.reason


@pytest.mark.timeout(90)
def test_a_tab_is_replaced_after_serving_pos_per_tab_pos(sim: SimHandle, tmp_path: Path) -> None:
    with started_engine(sim, tmp_path, tabs=1, pos_per_tab=2) as eng:
        spares = []
        expected = {"31000050": Outcome.COMPLETED, "31000002": Outcome.NO_ATTACHMENTS,
                    "31000009": Outcome.COMPLETED, "31000043": Outcome.COMPLETED,
                    "31000003": Outcome.NOT_FOUND}
        for digits, outcome in expected.items():
            result = next(iter(eng.run([job(digits)])))
            assert result.outcome is outcome, (digits, result.reason)
            assert eng.browser is not None and len(eng.browser.driver.window_handles) <= 2
            spares.append(tuple(eng._tab_pool.spare()))
        # Kept after its first PO, closed after its second; then the same with a new tab.
        assert [len(s) for s in spares] == [1, 0, 1, 0, 1]
        assert len({spares[0], spares[2], spares[4]}) == 3


@pytest.mark.timeout(90)
def test_a_tab_that_does_not_turn_blank_is_replaced(sim: SimHandle, tmp_path: Path) -> None:
    with started_engine(sim, tmp_path, tabs=1) as eng:
        first = next(iter(eng.run([job("31000050")])))
        assert first.outcome is Outcome.COMPLETED
        assert eng.browser is not None
        handles = set(eng.browser.driver.window_handles)
        # A tab read over WebDriver (no DevTools socket) that stays on its page (as a page
        # refusing to unload would): the next PO must not read that page, nor wait forever.
        eng._retire = lambda handle: False  # type: ignore[method-assign]
        eng._blank_tab = lambda handle: None  # type: ignore[method-assign]
        second = next(iter(eng.run([job("31000043")])))
        assert second.outcome is Outcome.COMPLETED
        eng.reset_timeout = 0.5
        third = next(iter(eng.run([job("31000041")])))
        assert third.outcome is Outcome.COMPLETED, third.reason
        assert sorted(third.names) == ["h.pdf", "i.pdf"]
        now = set(eng.browser.driver.window_handles)
        assert len(now) == 2 and now != handles  # the stuck tab was closed, a new one opened


@pytest.mark.timeout(60)
def test_close_leaves_no_process(sim: SimHandle, tmp_path: Path) -> None:
    with started_engine(sim, tmp_path, tabs=2) as eng:
        assert eng.browser is not None
        pids = eng.browser.pids()
        assert len(pids) >= 3  # chromedriver, chromium and its helpers
        result = one(eng, "31000002")
        assert result.outcome is Outcome.NO_ATTACHMENTS
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert eng.room == 0


def test_an_idle_engine_waits_on_the_callers_news_and_returns_when_it_comes(tmp_path: Path) -> None:
    config = config_for(tmp_path, "http://127.0.0.1:9", username="u", password="p")
    eng = Engine(config, browser_factory=lambda: None, tabs=1)  # type: ignore[arg-type,return-value]
    news, sender = socket.socketpair()
    try:
        started = time.monotonic()
        assert eng.poll(0.3, wake=news) == []
        assert time.monotonic() - started >= 0.3  # it waited the whole time: no news, no spin
        sender.send(b"!")
        started = time.monotonic()
        assert eng.poll(60.0, wake=news) == []  # news is there: back at once, not in 60 s
        assert time.monotonic() - started < 30
    finally:
        news.close()
        sender.close()
        eng.close()
