"""The floor under W1: the same durable work without any framework, to report Tether as a
fraction of what the database allows on this machine.

W1's shape: a producer commits each run on its own (one durable commit per trigger, on one
connection), while a consumer on another connection claims up to 100 ready runs at a time in one
transaction and completes them in another, as a worker that batches its claims and ends does.
The consumer polls without sleeping (the best case: no wake-up latency). The result is the time
from the first trigger to the last completion. No payload validation, no leases, no attempts,
no events: only the rows a durable queue must write.
"""

from __future__ import annotations

import argparse
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
        conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # as Tether's default
        return conn

    setup = connect()
    setup.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT NOT NULL, "
                  "payload TEXT NOT NULL, output TEXT, worker TEXT)")
    setup.execute("CREATE INDEX jobs_ready ON jobs (id) WHERE status = 'queued'")
    producer, consumer = connect(), connect()

    def produce(i: int) -> None:
        producer.execute("INSERT INTO jobs (status, payload) VALUES ('queued', ?)", (f'{{"n":{i}}}',))

    def consume() -> int:
        consumer.execute("BEGIN IMMEDIATE")
        rows = consumer.execute(
            "UPDATE jobs SET status = 'running', worker = 'w' WHERE id IN (SELECT id FROM jobs "
            "WHERE status = 'queued' ORDER BY id LIMIT ?) RETURNING id", (BATCH,)).fetchall()
        consumer.execute("COMMIT")
        if rows:
            consumer.execute("BEGIN IMMEDIATE")
            consumer.executemany("UPDATE jobs SET status = 'done', output = '1' WHERE id = ?", rows)
            consumer.execute("COMMIT")
        return len(rows)

    return _race(runs, produce, consume)


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


def _race(runs: int, produce: Callable[[int], Any], consume: Callable[[], int]) -> float:
    """Seconds from the first trigger to the last completion, producer and consumer in parallel."""
    done = [0]

    def consumer_loop() -> None:
        deadline = time.monotonic() + 120  # bounded, like every loop of a benchmark
        while done[0] < runs and time.monotonic() < deadline:
            done[0] += consume()

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
