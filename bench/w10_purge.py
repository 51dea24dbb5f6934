"""W10 (issue 21's "W8"; this repository's W8 is the replay check): purging finished runs.

Fills the database with `--runs` (1,000,000) runs that finished 40 days ago, each with one
attempt, two steps and two events (written with SQL: executemany on SQLite, COPY on
PostgreSQL), then:
- the purge's rate (runs per second), alone, in a process of its own:
  `app.runs.purge(older_than="30d")`, the same batches the workers' retention runs;
- filled again: W1 single (`--w1-runs` runs) `--w1-rounds` times alone, then as many times as
  fit while the purge runs in another process, then alone again: the ratio of the medians
  (during / alone), and the purge's rate with W1 beside it.
The purge paces itself while runs execute or wait (W1's do); TETHER_PURGE_PAUSE_RATIO=0
purges without pausing between batches; BENCH_PURGE_DRY=1 makes the
purge a dry run (reads only: what W1 loses to a third busy process alone)."""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from typing import Any

from common import add_database_args, backend, database, database_url, emit, median, worker
from w1_throughput import measure

CHUNK = 20_000


def _rows(start: int, count: int, t0: float) -> tuple[list[tuple[Any, ...]], ...]:
    from tether.clock import _encode_id  # the ids a run made t0 + i ms would have

    runs, attempts, steps, events = [], [], [], []
    for i in range(start, start + count):
        made = t0 + i / 1000
        run_id = f"run_{_encode_id(int(made * 1000), random.getrandbits(80))}"
        done = made + 0.05
        runs.append((run_id, "bench-old", "bench-old", "COMPLETED", f'{{"i": {i}}}', "1", 1,
                     '{"max_attempts": 3}', made, made, done, made + 0.01, done, '["old"]'))
        attempts.append((f"attempt_{run_id[4:]}", run_id, 1, "worker_x", "COMPLETED",
                         made + 0.01, done, "COMPLETED", "completed"))
        for k in ("a", "b"):
            steps.append((run_id, k, k, "step", "COMPLETED", "1", 1, made + 0.02, made + 0.03, 1))
            events.append((run_id, made + 0.02, "log", 1, "INFO", '{"message": "hello"}'))
    return runs, attempts, steps, events


_COLUMNS = {
    "runs": "id, task_id, queue, status, payload, output, attempts, retry, available_at, "
            "created_at, updated_at, started_at, finished_at, tags",
    "attempts": "id, run_id, number, worker_id, status, started_at, finished_at, next_status, reason",
    "steps": "run_id, key, name, kind, status, output, attempt, started_at, finished_at, seq",
    "events": "run_id, at, kind, attempt, name, data",
}


def fill(url: str, runs: int) -> float:
    """Insert the old runs; returns the seconds it took."""
    from tether import Tether

    app = Tether(url)
    storage: Any = app.storage
    storage.migrate()
    started = time.perf_counter()
    t0 = time.time() - 40 * 86400
    for start in range(0, runs, CHUNK):
        tables = _rows(start, min(CHUNK, runs - start), t0)
        if backend(url) == "sqlite":
            with storage.db.write() as conn:
                for (name, cols), rows in zip(_COLUMNS.items(), tables, strict=True):
                    marks = ",".join("?" * len(rows[0]))
                    conn.executemany(f"INSERT INTO {name} ({cols}, max_attempts) VALUES "
                                     f"({marks}, 3)" if name == "runs" else
                                     f"INSERT INTO {name} ({cols}) VALUES ({marks})", rows)
        else:
            def copy(conn: Any, tables: Any = tables) -> None:
                for (name, cols), rows in zip(_COLUMNS.items(), tables, strict=True):
                    extra = ", max_attempts" if name == "runs" else ""
                    with conn.cursor().copy(f"COPY {name} ({cols}{extra}) FROM STDIN") as cp:
                        for row in rows:
                            cp.write_row((*row, 3) if extra else row)
            storage._tx(copy)
    if backend(url) == "sqlite":
        with storage.db.write() as conn:
            conn.execute("ANALYZE")
    else:
        storage._run(lambda conn: conn.execute("ANALYZE"))
    app.close()
    return time.perf_counter() - started


def purge_process() -> None:
    """The purge, in a process of its own (the child side of `--purge-child`)."""
    from tether import Tether

    app = Tether()
    started = time.perf_counter()
    count = app.runs.purge(older_than="30d", dry_run=os.environ.get("BENCH_PURGE_DRY") == "1")
    elapsed = time.perf_counter() - started
    print(f"{count} {elapsed:.3f}", flush=True)
    app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--w1-runs", type=int, default=2000)
    parser.add_argument("--w1-rounds", type=int, default=3)
    parser.add_argument("--purge-child", action="store_true", help=argparse.SUPPRESS)
    add_database_args(parser)
    args = parser.parse_args()
    if args.purge_child:
        purge_process()
        return
    with database(database_url(args), args.pg_history) as url:
        fill_s = fill(url, args.runs)
        count, purge_s = purge_in_child()  # alone: the purge's own rate
        fill(url, args.runs)
        alone, during = [], []
        with worker(concurrency=10):
            measure("single", 200)  # warm-up
            for _ in range(args.w1_rounds):
                alone.append(measure("single", args.w1_runs))
            purger = subprocess.Popen([sys.executable, __file__, "--purge-child"],
                                      env=dict(os.environ), stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)  # (the child's start-up)
            while purger.poll() is None and len(during) < args.w1_rounds * 3:  # bounded
                during.append(measure("single", args.w1_runs))
            out, _ = purger.communicate(timeout=3600)
            count_b, purge_b_s = (float(x) for x in out.split())
            for _ in range(args.w1_rounds):
                alone.append(measure("single", args.w1_runs))
    emit({"bench": "W10", "backend": backend(url), "runs": args.runs,
          "fill_s": round(fill_s, 1), "purged": int(count), "purge_s": round(purge_s, 2),
          "purge_runs_per_s": round(count / purge_s),
          "purge_with_w1_runs_per_s": round(count_b / purge_b_s),
          "w1_alone": [round(r) for r in alone], "w1_during_purge": [round(r) for r in during],
          "w1_ratio": round(median(during) / median(alone), 3) if alone and during else None})


def purge_in_child() -> tuple[float, float]:
    out = subprocess.run([sys.executable, __file__, "--purge-child"], env=dict(os.environ),
                         capture_output=True, text=True, timeout=3600, check=True).stdout
    count, seconds = (float(x) for x in out.split())
    return count, seconds


if __name__ == "__main__":
    main()
