"""In-process engine tests: a real SQLite file, a ManualClock, and `Worker.run_until_idle`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import ManualClock, Tether

START = 1_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[Tether]:
    app = Tether("sqlite:///" + str(tmp_path / "t.db"), clock=clock)
    yield app
    app.close()
