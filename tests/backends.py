"""Which databases the suite runs against, and a fresh, isolated database for each test.

SQLite: a file in the test's tmp_path. PostgreSQL: a new schema in the server at
TETHER_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test), dropped afterwards.
Without a reachable server the PostgreSQL half skips with a message, except under CI=true, where
it fails: CI must not pass with half the suite silently missing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BACKENDS = ["sqlite", "postgres"]
POSTGRES = os.environ.get("TETHER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

_reachable: bool | None = None


def postgres_reachable() -> bool:
    global _reachable
    if _reachable is None:
        try:
            import psycopg

            psycopg.connect(POSTGRES, connect_timeout=3).close()
            _reachable = True
        except Exception:
            _reachable = False
    return _reachable


def require_postgres() -> None:
    if postgres_reachable():
        return
    message = f"PostgreSQL is not reachable at {POSTGRES} (set TETHER_TEST_POSTGRES)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI requires it")
    pytest.skip(message)


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{(tmp_path / 'tether.db').resolve()}"
        return
    require_postgres()
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        yield f"{POSTGRES}?schema={schema}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
