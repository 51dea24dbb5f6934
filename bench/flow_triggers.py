"""Flow control's cost at trigger time (issue 22, part 3): single triggers into a queue with no
settings, one with max_queued (a count of its waiting runs under the queue's lock) and one with
cancel_newest (a key's count), each already holding `--waiting` runs not started. No worker:
only the triggers are timed. Prints p50/p99 microseconds per trigger and the ratios to the
plain queue."""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import add_database_args, backend, database, database_url, emit, percentile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--triggers", type=int, default=2000, help="timed triggers per queue")
    parser.add_argument("--waiting", type=int, default=5000,
                        help="runs already waiting in each queue before the timed triggers")
    add_database_args(parser)
    args = parser.parse_args()
    from tether import Queue, Tether

    with database(database_url(args), args.pg_history) as url:
        app = Tether(url)
        room = args.waiting + args.triggers + 1000
        queues = {"plain": Queue("bench-plain"),
                  "max_queued": Queue("bench-capped", max_queued=room),
                  "cancel_newest": Queue("bench-newest", concurrency=room,
                                         on_key_limit="cancel_newest")}
        tasks: dict[str, Any] = {}
        for name, queue in queues.items():
            def noop(payload: Any) -> None: ...
            tasks[name] = app.task(noop, id=f"flow-{name}", queue=queue)
        for task in tasks.values():  # the backlog, in batches of 500
            for start in range(0, args.waiting, 500):
                task.batch_trigger(range(start, min(args.waiting, start + 500)))
        result: dict[str, Any] = {"bench": "flow_triggers", "backend": backend(url),
                                  "triggers": args.triggers, "waiting": args.waiting}
        for name, task in tasks.items():
            for i in range(50):  # warm up
                task.trigger(i, concurrency_key="k")
            times = []
            for i in range(args.triggers):
                began = time.perf_counter()
                task.trigger(i, concurrency_key="k")
                times.append((time.perf_counter() - began) * 1e6)
            result[f"{name}_p50_us"] = round(percentile(times, 50), 1)
            result[f"{name}_p99_us"] = round(percentile(times, 99), 1)
        for name in ("max_queued", "cancel_newest"):
            result[f"{name}_ratio_p50"] = round(result[f"{name}_p50_us"]
                                                / result["plain_p50_us"], 2)
        app.close()
        emit(result)


if __name__ == "__main__":
    main()
