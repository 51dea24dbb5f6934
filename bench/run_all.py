"""Run every benchmark several times and print the medians as one JSON line per workload."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKLOADS = {
    "W1-single": (["w1_throughput.py", "--mode", "single"], ["runs_per_s"]),
    "W1-batch": (["w1_throughput.py", "--mode", "batch"], ["runs_per_s"]),
    "W2": (["w2_step_overhead.py"], ["ms_per_step_median"]),
    "W3": (["w3_latency.py"], ["p50_ms", "p90_ms", "p99_ms", "idle_worker_cpu_percent"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", help="a database URL (default: a fresh SQLite file each run)")
    parser.add_argument("only", nargs="*", help="workload names, e.g. W2 W3")
    args = parser.parse_args()
    for name, (cmd, keys) in WORKLOADS.items():
        if args.only and name not in args.only:
            continue
        extra = ["--database", args.database] if args.database else []
        results = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:], *extra],
                                 check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        summary = {"workload": name, "repeat": args.repeat, "machine": results[0]["machine"]}
        for key in keys:
            values = [r[key] for r in results if r.get(key) is not None]
            summary[key] = statistics.median(values) if values else None
            summary[f"{key}_all"] = values
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
