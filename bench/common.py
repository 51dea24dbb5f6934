"""Shared helpers for the benchmarks: a fresh database, a real worker process, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PG_HISTORY = 5000
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
KEEP_SCHEMA = "BENCH_KEEP_SCHEMA"  # set by --pg-schema: database() uses the schema as it is


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True)}


def add_database_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                        help="sqlite: a fresh file; postgres: a fresh schema in BENCH_POSTGRES_URL"
                             f" (default {POSTGRES_URL})")
    parser.add_argument("--database", help="a database URL (overrides --backend)")
    parser.add_argument("--pg-schema", metavar="NAME",
                        help="PostgreSQL: use this existing schema as it is (not created, seeded"
                             " or dropped), e.g. the one bench/w11_scale.py filled")
    parser.add_argument("--pg-history", type=int, default=PG_HISTORY,
                        help="PostgreSQL: finished runs to seed the fresh schema with before it is"
                             " analyzed, as in a database in use; 0: a never-analyzed schema"
                             f" (default {PG_HISTORY})")


def database_url(args: argparse.Namespace) -> str | None:
    """The URL given with --database, else PostgreSQL's for --backend postgres, else None.
    With --pg-schema, PostgreSQL's URL for that schema, used as it is (KEEP_SCHEMA)."""
    if getattr(args, "pg_schema", None):
        os.environ[KEEP_SCHEMA] = "1"
        return _with_schema(str(args.database or POSTGRES_URL), str(args.pg_schema))[0]
    if args.database:
        return str(args.database)
    return POSTGRES_URL if args.backend == "postgres" else None


def backend(url: str) -> str:
    return "postgres" if url.startswith(("postgresql:", "postgres:")) else url.split(":", 1)[0]


def _with_schema(url: str, schema: str) -> tuple[str, str]:
    """(URL with `schema=` replaced, plain libpq URL without it)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    plain = urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(query=urlencode([*query, ("schema", schema)]))), plain


def _schema_ddl(conninfo: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(sql)


def _seed_history(url: str, conninfo: str, schema: str, runs: int) -> None:
    """Give a new schema what a database in use has: finished runs, and the statistics that
    autovacuum's ANALYZE keeps on them. Without statistics (a schema less than about a minute
    old) the planner guesses that almost no run is ready, and each claim then reads and sorts
    every queued run instead of walking the ready index."""
    from tether import Tether

    seed = Tether(url)

    @seed.task(id="bench-history")
    async def history(payload: Any) -> None:
        return None

    for start in range(0, runs, 1000):
        seed.batch_trigger("bench-history", [None] * min(1000, runs - start))
    seed.close()
    _schema_ddl(conninfo, f'UPDATE "{schema}".runs SET status = \'COMPLETED\', output = \'null\','
                          " attempts = 1, started_at = created_at, finished_at = created_at")
    _schema_ddl(conninfo, f'VACUUM ANALYZE "{schema}".runs')


@contextmanager
def database(url: str | None = None, history: int = 0) -> Iterator[str]:
    """A fresh database, set as TETHER_DATABASE_URL for this process (and the workers it starts):
    for a PostgreSQL URL a new schema `bench_<random>` (seeded with `history` finished runs and
    analyzed), dropped afterwards; for another URL that URL as it is; without one a SQLite file
    in a temporary directory."""
    if url and backend(url) == "postgres" and os.environ.get(KEEP_SCHEMA) == "1":
        os.environ["TETHER_DATABASE_URL"] = url
        yield url
        return
    if url and backend(url) == "postgres":
        schema = f"bench_{secrets.token_hex(6)}"
        url, conninfo = _with_schema(url, schema)
        # created here, not by the worker processes that start at once (and would race on it)
        _schema_ddl(conninfo, f'CREATE SCHEMA "{schema}"')
        os.environ["TETHER_DATABASE_URL"] = url
        try:
            if history > 0:
                _seed_history(url, conninfo, schema, history)
            yield url
        finally:
            try:
                _schema_ddl(conninfo, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except Exception as exc:
                print(f"warning: could not drop schema {schema}: {exc}", file=sys.stderr)
        return
    if url:
        os.environ["TETHER_DATABASE_URL"] = url
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="tether-bench-", dir=ROOT / ".tether-bench"
                                     if (ROOT / ".tether-bench").is_dir() else None) as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        os.environ["TETHER_DATABASE_URL"] = url
        yield url


def start_worker(concurrency: int = 10, env: dict[str, str] | None = None
                 ) -> subprocess.Popen[bytes]:
    """One real `tether worker` process on bench/app.py (not waited for)."""
    cmd = [sys.executable, "-m", "tether.cli", "worker", str(HERE / "app.py"),
           "--concurrency", str(concurrency), "--log-level", "WARNING"]
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})})


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


@contextmanager
def worker(concurrency: int = 10, processes: int = 1) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start real `tether worker` processes on bench/app.py and wait until they registered."""
    procs = [start_worker(concurrency) for _ in range(processes)]
    try:
        wait_registered(len(procs))
        yield procs
    finally:
        stop_workers(procs)


def wait_registered(count: int, timeout: float = 30.0) -> None:
    """Wait until `count` workers are registered in TETHER_DATABASE_URL."""
    from tether import Tether

    probe = Tether()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                if len(probe.storage.list_workers(time.time() - 60)) >= count:
                    return
            except Exception:
                pass
            time.sleep(0.05)
    finally:
        probe.close()
    raise SystemExit(f"workers did not start within {timeout:g} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps({**result, "machine": machine()}), flush=True)
