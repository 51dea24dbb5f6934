"""Shared fixtures. Each block below belongs to one group of tests; add new blocks, keep them small."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tether.storage.base import Storage

# --- storage contract (tests/storage): one param per backend ----------------------------------
# Another backend (PostgreSQL) is one more entry in STORAGE_BACKENDS and one more branch in
# `_open_backend`. `storage_factory()` opens a new handle on the SAME database (like a second
# process would); `storage` is one such handle, migrated.

STORAGE_BACKENDS = ["sqlite"]


def _open_backend(name: str, tmp_path: Path) -> Storage:
    if name == "sqlite":
        from tether.storage.sqlite.store import SQLiteStorage

        return SQLiteStorage(tmp_path / "t.db")
    raise AssertionError(f"unknown storage backend {name!r}")


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Storage]]:
    opened: list[Storage] = []

    def make() -> Storage:
        handle = _open_backend(request.param, tmp_path)
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
