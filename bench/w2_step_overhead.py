"""W2 step overhead: one run of 1,000 trivial steps minus a run of 0 steps, in ms per step
(median of several repetitions, each trigger-to-result with a running worker)."""

from __future__ import annotations

import argparse
import time

from bench_tracing import add_tracing_arg, from_args
from common import add_database_args, backend, database, database_url, emit, median, worker


def duration(app: object, n: int) -> float:
    start = time.perf_counter()
    app.trigger("steps", {"n": n}).result(timeout=120)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    add_database_args(parser)
    add_tracing_arg(parser)
    args = parser.parse_args()
    traced = from_args(args)
    from tether import Tether

    with database(database_url(args), args.pg_history) as url, worker(concurrency=10):
        app = Tether()
        duration(app, 10)  # warm up
        per_step = []
        for _ in range(args.repeat):
            empty = duration(app, 0)
            full = duration(app, args.steps)
            per_step.append((full - empty) / args.steps * 1000)
        app.close()
    emit({"bench": "W2", "steps": args.steps, "repeat": args.repeat,
          "backend": backend(url), "tracing": traced, "ms_per_step_median": round(median(per_step), 4),
          "ms_per_step_all": [round(v, 4) for v in per_step]})


if __name__ == "__main__":
    main()
