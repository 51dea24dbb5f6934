"""W5 queue limit: 2,000 runs of a 5 ms task in a queue limited to 8 at once, triggered with one
batch_trigger, 4 worker processes with --concurrency 8 each. Reports the time from the trigger
to the last result against the ideal (2000 * 5 ms / 8), and the most runs that overlapped,
computed from the start and end times each run returns (never more than 8 if the limit holds)."""

from __future__ import annotations

import argparse
import time

from common import add_database_args, backend, database, database_url, emit, worker

LIMIT, WORK_SECONDS = 8, 0.005  # bench/app.py: Queue("limited8", concurrency=8), sleep(0.005)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end sorts before a start at the same time)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def breakdown(outputs: list[dict[str, float]], wall_start: float, wall_end: float
              ) -> dict[str, float]:
    """Where the total went: until the first run started (storing the batch), the runs' own
    median length, how full the 8 places were between the first start and the last end, and
    from the last end until the last result was read."""
    first = min(o["start"] for o in outputs)
    last = max(o["end"] for o in outputs)
    lengths = sorted(o["end"] - o["start"] for o in outputs)
    return {"first_start_s": round(first - wall_start, 3),
            "run_ms_p50": round(lengths[len(lengths) // 2] * 1000, 2),
            "occupancy": round(sum(lengths) / (LIMIT * (last - first)), 3),
            "tail_s": round(wall_end - last, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="per worker process")
    add_database_args(parser)
    args = parser.parse_args()
    from tether import Tether

    with (database(database_url(args), args.pg_history) as url,
          worker(args.concurrency, args.processes)):
        app = Tether()
        wall_start, start = time.time(), time.perf_counter()
        handles = app.batch_trigger("limited", list(range(args.runs)))
        outputs = [h.result(timeout=120) for h in handles]
        total = time.perf_counter() - start
        wall_end = time.time()
        app.close()
    ideal = args.runs * WORK_SECONDS / LIMIT
    overlap = max_overlap([(o["start"], o["end"]) for o in outputs])
    emit({"bench": "W5", "runs": args.runs, "processes": args.processes,
          "concurrency": args.concurrency, "limit": LIMIT, "backend": backend(url),
          "total_s": round(total, 3), "ideal_s": ideal, "ratio": round(total / ideal, 3),
          "max_overlap": overlap, "within_limit": overlap <= LIMIT,
          **breakdown(outputs, wall_start, wall_end)})


if __name__ == "__main__":
    main()
