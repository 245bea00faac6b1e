"""Journal timings: 100,000-row create_batch, counts() with 1,000,000 tasks, claim+record.

Run: .venv/bin/python bench/bench_journal.py [--tasks 1000000] [--keep DIR]
Prints one line per measurement; targets (from the issue): ingest ≤ 5 s for the whole
100,000-row CSV (parsing included, so the journal's share should stay well under it) and a
status snapshot with 1,000,000 tasks ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from coupad.journal import Journal, RowIn, TaskOutcome

ROWS_PER_BATCH = 100_000


def rows(batch: int, n: int) -> list[RowIn]:
    """``n`` valid rows with distinct PO numbers and a few carried columns."""
    base = 10_000_000 + batch * n
    return [
        RowIn(row_no=i + 2, values=(f"PO{base + i}", f"supplier {i % 97}", f"note {i}"),
              po_digits=str(base + i))
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="folder for the journal (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        journal = Journal.open(folder / "journal.sqlite")
        now = time.time()
        batches = max(1, args.tasks // ROWS_PER_BATCH)
        ingest = []
        for b in range(batches):
            batch_rows = rows(b, ROWS_PER_BATCH)
            start = time.perf_counter()
            journal.create_batch(
                name=f"bench{b}", source=f"bench{b}.csv", content_sha256=f"sha{b}",
                priority=("high", "normal", "low")[b % 3], fmt="csv",
                columns=["PO_NUMBER", "SUPPLIER", "NOTE"], po_column="PO_NUMBER",
                rows=batch_rows, now=now, max_attempts=5,
            )
            ingest.append(time.perf_counter() - start)
        print(f"create_batch 100,000 rows: first {ingest[0]:.2f} s, "
              f"median {statistics.median(ingest):.2f} s over {batches} batches")

        snapshots = []
        for _ in range(20):
            start = time.perf_counter()
            journal.counts()
            journal.totals()
            snapshots.append(time.perf_counter() - start)
        total = sum(journal.totals().values())
        print(f"counts()+totals() with {total:,} tasks: median "
              f"{statistics.median(snapshots) * 1000:.2f} ms, max {max(snapshots) * 1000:.2f} ms")

        start = time.perf_counter()
        done = 0
        for _ in range(500):
            for task in journal.claim("bench", 4, now, 60.0):
                journal.record(task.id, "bench", TaskOutcome("COMPLETED", found=1, downloaded=1,
                                                             names=("a.pdf",)), now)
                done += 1
        elapsed = time.perf_counter() - start
        print(f"claim(4) + record per task: {elapsed / done * 1000:.3f} ms over {done:,} tasks")

        start = time.perf_counter()
        journal.report_rows(journal.batches()[0].id)
        print(f"report_rows of a 100,000-row batch: {time.perf_counter() - start:.2f} s")
        journal.close()
        size = (folder / "journal.sqlite").stat().st_size
        print(f"journal file: {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
