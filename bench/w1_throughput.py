"""W1 throughput: trigger N no-op runs (one call at a time, or in one batch), one worker process
with --concurrency 10; time from the first trigger to the last result. --rate-limit N gives the
no-op's queue a limit of N runs per second (burst 100): far above the load, it shows what the
rate check costs the claim."""

from __future__ import annotations

import argparse
import os
import time

from common import add_database_args, backend, database, database_url, emit, worker


def measure(mode: str, runs: int) -> float:
    from tether import Tether

    app = Tether()
    start = time.perf_counter()
    if mode == "single":
        handles = [app.trigger("noop", i) for i in range(runs)]
    else:
        handles = app.batch_trigger("noop", list(range(runs)))
    for h in handles:
        h.result(timeout=120)
    elapsed = time.perf_counter() - start
    app.close()
    return runs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--mode", choices=["single", "batch"], default="single")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--rate-limit", type=float, metavar="N",
                        help="a rate limit of N runs/s on the no-op's queue (e.g. 1000000)")
    add_database_args(parser)
    args = parser.parse_args()
    if args.rate_limit:
        os.environ["BENCH_RATE_LIMIT"] = str(args.rate_limit)  # (read by the workers' bench/app.py)
    with (database(database_url(args), args.pg_history) as url,
          worker(concurrency=10, processes=args.processes)):
        rate = measure(args.mode, args.runs)
    emit({"bench": "W1", "mode": args.mode, "runs": args.runs, "processes": args.processes,
          "backend": backend(url), "runs_per_s": round(rate, 1),
          "rate_limit": args.rate_limit})


if __name__ == "__main__":
    main()
