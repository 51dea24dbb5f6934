"""Shared fixtures. Each block below belongs to one group of tests; add new blocks, keep them small."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backends import BACKENDS, database_url
from tether.storage import open_storage
from tether.storage.base import Storage

# --- backends: every test that uses `db_url` (directly or through a fixture) runs on each ------
# `storage_factory()` opens a new handle on the SAME database (like a second process would);
# `storage` is one such handle, migrated.

@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database a test runs against: every test using it runs once per backend."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of the test's backend (a file, or a new PostgreSQL schema)."""
    with database_url(backend, tmp_path) as url:
        yield url


@pytest.fixture
def storage_factory(db_url: str) -> Iterator[Callable[[], Storage]]:
    opened: list[Storage] = []

    def make() -> Storage:
        handle = open_storage(db_url)
        opened.append(handle)
        return handle

    yield make
    for handle in opened:
        handle.close()


@pytest.fixture
def storage(storage_factory: Callable[[], Storage]) -> Storage:
    handle = storage_factory()
    handle.migrate()
    return handle
