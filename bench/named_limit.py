"""Named limits: `--processes` worker processes (default 4, --concurrency 20 each) run runs whose
one step takes a unit of the named limit "bench-named" (`--rate` per second, `--burst`). Reports
the rate achieved between the first and the last step, its error against the limit, and the
most steps in any 1 s window (the limit allows rate + burst). Bounded: `--seconds` (default 10)
of work, every result waited for at most 60 s past that.

    python bench/named_limit.py --backend postgres --rate 100 --seconds 60
"""

from __future__ import annotations

import argparse

from common import add_database_args, backend, database, database_url, emit, worker


def most_in_a_window(times: list[float], window: float = 1.0) -> int:
    """The largest number of times within any `window` seconds."""
    ordered, most, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="the limit, units per second")
    parser.add_argument("--burst", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the work lasts")
    parser.add_argument("--processes", type=int, default=4)
    add_database_args(parser)
    args = parser.parse_args()
    runs = max(2, int(args.rate * args.seconds))
    with database(database_url(args)) as url, worker(concurrency=20, processes=args.processes):
        from tether import Tether

        app = Tether()
        app.rate_limits.set("bench-named", args.rate, 1, burst=args.burst)
        handles = app.batch_trigger("named-limited", [None] * runs)
        times = [float(h.result(timeout=args.seconds + 60)) for h in handles]
        app.close()
    span = max(times) - min(times)
    achieved = (len(times) - args.burst) / span if span > 0 else float("inf")
    emit({"bench": "named_limit", "backend": backend(url), "processes": args.processes,
          "limit_per_s": args.rate, "burst": args.burst, "runs": runs,
          "achieved_per_s": round(achieved, 2),
          "error_pct": round(100 * (achieved - args.rate) / args.rate, 2),
          "most_in_1s": most_in_a_window(times), "allowed_in_1s": args.rate + args.burst})


if __name__ == "__main__":
    main()
