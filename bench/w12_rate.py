"""W12 rate limit: a queue limited to --limit runs per second (bench/app.py's "rated",
RateLimit(limit, "1s"), burst 1), 4 worker processes with --concurrency 10 each, enough runs
queued at once to keep the limit busy for --seconds (default 60). Each run returns when it
started by its own clock. Reports the achieved rate (target: within 2 % of the limit) and the
most starts in any 1 s window (never more than limit + burst)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from common import add_database_args, backend, database, database_url, emit, worker

BURST = 1  # bench/app.py's RateLimit default


def most_in_window(times: list[float], width: float = 1.0) -> int:
    """The most of `times` in any half-open window [t, t + width)."""
    ordered, best, low = sorted(times), 0, 0
    for high, at in enumerate(ordered):
        while ordered[low] <= at - width:
            low += 1
        best = max(best, high - low + 1)
    return best


def _claimed(app: Any, handles: list[Any]) -> list[float]:
    """The start times stored by the claims (runs.started_at), a thousand runs per read."""
    found: list[float] = []
    ids = [h.id for h in handles]
    for i in range(0, len(ids), 1000):
        found += [r.started_at for r in app.storage.get_runs(ids[i:i + 1000])
                  if r.started_at is not None]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long the queued runs keep the limit busy (a few for a smoke run)")
    parser.add_argument("--limit", type=int, default=100, help="runs per second")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=10, help="per worker process")
    add_database_args(parser)
    args = parser.parse_args()
    if args.seconds <= 0 or args.limit <= 0:
        parser.error("--seconds and --limit must be positive")
    os.environ["BENCH_W12_LIMIT"] = str(args.limit)  # (read by the workers' bench/app.py)
    from tether import Tether

    runs = int(args.limit * args.seconds) + 1
    with (database(database_url(args), args.pg_history) as url,
          worker(args.concurrency, args.processes)):
        app = Tether()
        handles = []
        for start in range(0, runs, 1000):
            handles += app.batch_trigger("rated", list(range(start, min(runs, start + 1000))))
        deadline = time.monotonic() + args.seconds * 2 + 60
        starts = [float(h.result(timeout=max(1.0, deadline - time.monotonic()))) for h in handles]
        # the start times the claims stored (the rate check's own moment; the tasks' clocks add
        # the claim-to-start delay of each worker process, a few ms that differ run to run)
        claimed = _claimed(app, handles)
        app.close()
    span = max(starts) - min(starts)
    achieved = (len(starts) - 1) / span if span > 0 else float("inf")
    most = most_in_window(starts)
    emit({"bench": "W12", "limit": args.limit, "burst": BURST, "seconds": args.seconds,
          "runs": runs, "processes": args.processes, "backend": backend(url),
          "achieved_per_s": round(achieved, 2),
          "deviation_pct": round((achieved - args.limit) / args.limit * 100, 2),
          "within_2pct": abs(achieved - args.limit) <= 0.02 * args.limit,
          "max_in_1s": most, "max_in_1s_claimed": most_in_window(claimed),
          "bound_1s": args.limit + BURST,
          "bound_held": most <= args.limit + BURST,
          "bound_held_claimed": most_in_window(claimed) <= args.limit + BURST})


if __name__ == "__main__":
    main()
