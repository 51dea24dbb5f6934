"""W3 latency: with an idle worker in another process, trigger runs one after another, each
waited for; p50/p90/p99 ms from trigger to result. Also the idle worker's CPU use."""

from __future__ import annotations

import argparse
import os
import time

from bench_tracing import add_tracing_arg, from_args
from common import add_database_args, backend, database, database_url, emit, percentile, worker


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    add_database_args(parser)
    add_tracing_arg(parser)
    args = parser.parse_args()
    traced = from_args(args)
    from tether import Tether

    with database(database_url(args), args.pg_history) as url, worker(concurrency=10) as procs:
        app = Tether()
        for i in range(20):  # warm up
            app.trigger("noop", i).result(timeout=30)
        latencies = []
        for i in range(args.runs):
            start = time.perf_counter()
            app.trigger("noop", i).result(timeout=30)
            latencies.append((time.perf_counter() - start) * 1000)
        idle_cpu = None
        if os.path.exists(f"/proc/{procs[0].pid}/stat"):
            before = cpu_seconds(procs[0].pid)
            time.sleep(args.idle_seconds)
            idle_cpu = (cpu_seconds(procs[0].pid) - before) / args.idle_seconds * 100
        app.close()
    emit({"bench": "W3", "runs": args.runs, "backend": backend(url), "tracing": traced,
          "p50_ms": round(percentile(latencies, 50), 3), "p90_ms": round(percentile(latencies, 90), 3),
          "p99_ms": round(percentile(latencies, 99), 3),
          "idle_worker_cpu_percent": None if idle_cpu is None else round(idle_cpu, 2)})


if __name__ == "__main__":
    main()
