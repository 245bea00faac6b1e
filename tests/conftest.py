import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Selenium Manager must never reach for the network, in tests as in production.
os.environ.setdefault("SE_OFFLINE", "true")

from coupad.journal import Journal  # noqa: E402  (after the environment is set)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A journal of its own in the test's folder, closed after it."""
    j = Journal.open(tmp_path / "state" / "journal.sqlite")
    try:
        yield j
    finally:
        j.close()
