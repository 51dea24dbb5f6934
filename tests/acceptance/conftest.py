"""Fixtures for acceptance tests: real `tether worker` processes on a real SQLite file. Every
process a test starts is killed at teardown, whatever the outcome."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from acceptance_support import WorkerProcess, Workers, copy_app, make_env

from tether import Tether


# -- fixtures -------------------------------------------------------------------------------------
# `db_url` comes from tests/conftest.py: each test runs on SQLite and on PostgreSQL.
@pytest.fixture
def tether_env(db_url: str) -> dict[str, str]:
    return make_env(db_url)


@pytest.fixture
def client(db_url: str) -> Iterator[Tether]:
    """An app in the test process on the same database: triggers by task id, reads runs."""
    app = Tether(db_url)
    yield app
    app.close()


@pytest.fixture
def workers(tmp_path: Path, tether_env: dict[str, str]) -> Iterator[Workers]:
    pool = Workers(tmp_path, tether_env)
    yield pool
    pool.close()


@pytest.fixture
def start_worker(workers: Workers) -> Callable[..., WorkerProcess]:
    """`start_worker(app_file, "--grace", "0.5")` starts `tether worker` and waits until it serves."""
    return workers.start


@pytest.fixture
def app_file(tmp_path: Path) -> Callable[[str], Path]:
    """`app_file("steps_app.py")` copies a test app into tmp_path and returns its path."""
    return lambda name: copy_app(name, tmp_path)
