"""The floor under W1: the same durable work without any framework, to report Tether as a
fraction of what the database allows on this machine.

W1's shape: a producer commits each run on its own (one durable commit per trigger, on one
connection), while a consumer on another connection claims up to 100 ready runs at a time in one
transaction and completes them in another, as a worker that batches its claims and ends does.
The consumer polls without sleeping (the best case: no wake-up latency). The result is the time
from the first trigger to the last completion. No payload validation, no leases, no attempts,
no events: only the rows a durable queue must write.

SQLite is given what Tether gives itself, or the floor would measure SQLite's defaults rather
than the database: the consumer in a process of its own (as a worker is), a write lock retried at
once instead of SQLite's sleeping busy handler, no checkpoint inside a commit
(wal_autocheckpoint=20000), and the lock taken only when a read found work.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import POSTGRES_URL, emit

BATCH = 100


def _sqlite(runs: int) -> float:
    path = Path(tempfile.mkdtemp(prefix="tether-floor-")) / "floor.db"

    def connect() -> sqlite3.Connection:
        # no built-in busy handler (it sleeps 1, 2, 5, ... ms between tries): `_locked` retries
        # at once, as Tether does, so a collision costs microseconds, not milliseconds
        conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # as Tether's default
        conn.execute("PRAGMA wal_autocheckpoint=20000")  # as Tether: no checkpoint in a commit
        return conn

    setup = connect()
    setup.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT NOT NULL, "
                  "payload TEXT NOT NULL, output TEXT, worker TEXT)")
    setup.execute("CREATE INDEX jobs_ready ON jobs (id) WHERE status = 'queued'")
    producer, consumer = connect(), connect()

    def produce(i: int) -> None:
        _locked(lambda: producer.execute("INSERT INTO jobs (status, payload) VALUES ('queued', ?)",
                                         (f'{{"n":{i}}}',)))

    def consume() -> int:
        # read first: the write lock is taken only when there is work (an idle consumer that
        # took it on every poll would stall the producer)
        if consumer.execute("SELECT 1 FROM jobs WHERE status = 'queued' LIMIT 1").fetchone() is None:
            os.sched_yield()
            return 0
        _locked(lambda: consumer.execute("BEGIN IMMEDIATE"))
        rows = consumer.execute(
            "UPDATE jobs SET status = 'running', worker = 'w' WHERE id IN (SELECT id FROM jobs "
            "WHERE status = 'queued' ORDER BY id LIMIT ?) RETURNING id", (BATCH,)).fetchall()
        consumer.execute("COMMIT")
        if rows:
            _locked(lambda: consumer.execute("BEGIN IMMEDIATE"))
            consumer.executemany("UPDATE jobs SET status = 'done', output = '1' WHERE id = ?", rows)
            consumer.execute("COMMIT")
        return len(rows)

    return _race(runs, produce, consume, process=True)


def _locked(statement: Callable[[], Any]) -> Any:
    """Run a statement that needs SQLite's write lock, retrying (yielding the CPU) while another
    connection holds it; bounded like every loop of a benchmark."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            os.sched_yield()


def _postgres(runs: int) -> float:
    import psycopg

    schema = f"floor_{secrets.token_hex(6)}"
    admin = psycopg.connect(POSTGRES_URL, autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        admin.execute(f'CREATE TABLE "{schema}".jobs (id bigserial PRIMARY KEY, status text NOT NULL,'
                      ' payload text NOT NULL, output text, worker text)')
        admin.execute(f'CREATE INDEX ON "{schema}".jobs (id) WHERE status = \'queued\'')
        producer = psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}")
        consumer = psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}")

        def produce(i: int) -> None:
            producer.execute("INSERT INTO jobs (status, payload) VALUES ('queued', %s)",
                             (f'{{"n":{i}}}',))

        def consume() -> int:
            rows = consumer.execute(
                "UPDATE jobs SET status = 'running', worker = 'w' WHERE id IN (SELECT id FROM jobs"
                " WHERE status = 'queued' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
                (BATCH,)).fetchall()
            if rows:
                consumer.execute("UPDATE jobs SET status = 'done', output = '1' WHERE id = ANY (%s)",
                                 ([r[0] for r in rows],))
            return len(rows)

        try:
            return _race(runs, produce, consume)
        finally:
            producer.close()
            consumer.close()
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


def _race(runs: int, produce: Callable[[int], Any], consume: Callable[[], int],
          process: bool = False) -> float:
    """Seconds from the first trigger to the last completion, producer and consumer in parallel:
    the consumer in a thread, or with `process` in a process of its own (as a Tether worker is:
    two threads of one process would take turns at the GIL, in slices of up to 5 ms)."""
    done = [0]

    def consumer_loop() -> None:
        deadline = time.monotonic() + 120  # bounded, like every loop of a benchmark
        while done[0] < runs and time.monotonic() < deadline:
            done[0] += consume()
        if process:
            os._exit(0 if done[0] >= runs else 1)

    if process:
        child = multiprocessing.get_context("fork").Process(target=consumer_loop)
        start = time.perf_counter()
        child.start()
        for i in range(runs):
            produce(i)
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"the consumer did not complete {runs} runs in 120 s")
        return time.perf_counter() - start
    thread = threading.Thread(target=consumer_loop)
    start = time.perf_counter()
    thread.start()
    for i in range(runs):
        produce(i)
    thread.join()
    if done[0] < runs:
        raise SystemExit(f"the consumer completed only {done[0]} of {runs} runs in 120 s")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    measure = _sqlite if args.backend == "sqlite" else _postgres
    rates = sorted(args.runs / measure(args.runs) for _ in range(args.repeat))
    emit({"bench": "floor-W1", "backend": args.backend, "runs": args.runs,
          "runs_per_s": round(rates[len(rates) // 2], 1),
          "runs_per_s_all": [round(r, 1) for r in rates]})


if __name__ == "__main__":
    main()
