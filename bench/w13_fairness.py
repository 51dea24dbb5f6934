"""W13 fairness: one worker process with --concurrency 10, a queue limited to 10 runs per
concurrency key (bench/app.py's "fair", 5 ms of work). Tenant A enqueues --runs (10,000) runs
at once; once they are under way, tenant B triggers 10, one every 10 ms. Reports p50/p99 of B's
time from trigger to start (target: p99 under 50 ms; in claim order, FIFO, B would wait for all
of A's runs, about 5 s) and A's throughput."""

from __future__ import annotations

import argparse
import time

from common import add_database_args, backend, database, database_url, emit, percentile, worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000, help="tenant A's runs")
    parser.add_argument("--b-runs", type=int, default=10, help="tenant B's runs")
    add_database_args(parser)
    args = parser.parse_args()
    if args.runs < 100 or args.b_runs < 1:
        parser.error("--runs must be at least 100 and --b-runs at least 1")
    from tether import Tether

    with (database(database_url(args), args.pg_history) as url, worker(concurrency=10)):
        app = Tether()
        a = []
        for start in range(0, args.runs, 1000):
            a += app.batch_trigger("fair", list(range(start, min(args.runs, start + 1000))),
                                   concurrency_key="tenant-a")
        a[99].result(timeout=120)  # A's backlog is being worked through
        triggered, b = [], []
        for n in range(args.b_runs):
            triggered.append(time.time())
            b.append(app.trigger("fair", n, concurrency_key="tenant-b"))
            time.sleep(0.01)
        waits = [float(h.result(timeout=120)) - at for h, at in zip(b, triggered, strict=True)]
        a_starts = [float(h.result(timeout=300)) for h in a]
        app.close()
    span = max(a_starts) - min(a_starts)
    left = sum(1 for s in a_starts if s > max(t + w for t, w in zip(triggered, waits,
                                                                          strict=True)))
    emit({"bench": "W13", "a_runs": args.runs, "b_runs": args.b_runs, "backend": backend(url),
          "b_wait_ms_p50": round(percentile(waits, 50) * 1000, 1),
          "b_wait_ms_p99": round(percentile(waits, 99) * 1000, 1),
          "b_wait_ms_max": round(max(waits) * 1000, 1),
          "a_runs_per_s": round((len(a_starts) - 1) / span, 1) if span > 0 else None,
          "a_runs_after_b": left})


if __name__ == "__main__":
    main()
