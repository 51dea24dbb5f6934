"""In-process engine tests on each backend: a ManualClock and `Worker.run_until_idle`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tether import ManualClock, Tether

START = 1_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def app(db_url: str, clock: ManualClock) -> Iterator[Tether]:
    app = Tether(db_url, clock=clock)
    yield app
    app.close()
