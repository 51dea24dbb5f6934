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


@pytest.fixture
def pg_url(db_url: str, backend: str) -> str:
    """The test's PostgreSQL database; on SQLite the test is skipped (for what exists only
    there: a claim that is a round trip, offers)."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only")
    return db_url
