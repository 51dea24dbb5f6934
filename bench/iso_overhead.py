"""Isolation overhead: a no-op task run in the worker's process (async, or sync in a thread)
and with isolation="process" (sync, in a warm child process), one real worker process
(--concurrency 10). Two measures per mode: ms per run one at a time (trigger, then wait for
the result; median and p90), and runs/s for a batch. Target: a process-isolated no-op costs at
most 2 ms more per run than an in-process one.

    python bench/iso_overhead.py [--runs 300] [--batch 2000] [--backend postgres]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from common import (
    HERE,
    add_database_args,
    backend,
    database,
    database_url,
    emit,
    median,
    percentile,
    stop_workers,
    wait_registered,
)

MODES = ("noop-async", "noop-thread", "noop-process")
WARMUP = 20


def one_at_a_time(task: str, runs: int) -> list[float]:
    """Seconds from trigger to result, for `runs` runs started one after the other."""
    from tether import Tether

    app = Tether()
    try:
        for i in range(WARMUP):
            app.trigger(task, i).result(timeout=60)
        took = []
        for i in range(runs):
            start = time.perf_counter()
            app.trigger(task, i).result(timeout=60)
            took.append(time.perf_counter() - start)
        return took
    finally:
        app.close()


def batch(task: str, runs: int) -> float:
    """Runs per second for one batch of `runs`."""
    from tether import Tether

    app = Tether()
    try:
        start = time.perf_counter()
        handles = app.batch_trigger(task, list(range(runs)))
        for handle in handles:
            handle.result(timeout=300)
        return runs / (time.perf_counter() - start)
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="runs one at a time, per mode")
    parser.add_argument("--batch", type=int, default=2000, help="runs in the batch, per mode")
    add_database_args(parser)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with database(database_url(args), args.pg_history) as url:
        cmd = [sys.executable, "-m", "tether.cli", "worker", str(HERE / "iso_app.py"),
               "--concurrency", "10", "--log-level", "WARNING"]
        proc = subprocess.Popen(cmd)
        try:
            wait_registered(1)
            for task in MODES:
                took = one_at_a_time(task, args.runs)
                batch(task, args.batch) if args.batch > 0 else None  # warm
                rate = batch(task, args.batch) if args.batch > 0 else None
                results[task] = {"ms_per_run": round(median(took) * 1000, 3),
                                 "p90_ms": round(percentile(took, 90) * 1000, 3),
                                 "batch_runs_per_s": None if rate is None else round(rate, 1)}
        finally:
            stop_workers([proc])
    process, thread = results["noop-process"], results["noop-thread"]
    emit({"bench": "iso_overhead", "backend": backend(url), "runs": args.runs,
          "batch": args.batch, "modes": results,
          "overhead_ms_vs_thread": round(process["ms_per_run"] - thread["ms_per_run"], 3),
          "overhead_ms_vs_async": round(process["ms_per_run"]
                                        - results["noop-async"]["ms_per_run"], 3),
          "target_ms": 2.0})


if __name__ == "__main__":
    main()
