"""Run every benchmark several times and print the medians as one JSON line per workload."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from common import PG_HISTORY

HERE = Path(__file__).resolve().parent

W3_KEYS = ["p50_ms", "p90_ms", "p99_ms", "idle_worker_cpu_percent"]
WORKLOADS: dict[str, tuple[list[str], list[str]]] = {
    "W1-single": (["w1_throughput.py", "--mode", "single"], ["runs_per_s"]),
    "W1-batch": (["w1_throughput.py", "--mode", "batch"], ["runs_per_s"]),
    "W1-single-2p": (["w1_throughput.py", "--mode", "single", "--processes", "2"], ["runs_per_s"]),
    "W1-batch-2p": (["w1_throughput.py", "--mode", "batch", "--processes", "2"], ["runs_per_s"]),
    "W1-single-4p": (["w1_throughput.py", "--mode", "single", "--processes", "4"], ["runs_per_s"]),
    "W1-batch-4p": (["w1_throughput.py", "--mode", "batch", "--processes", "4"], ["runs_per_s"]),
    "W1-single-rated": (["w1_throughput.py", "--mode", "single", "--rate-limit", "1000000"],
                        ["runs_per_s"]),
    "W1-batch-rated": (["w1_throughput.py", "--mode", "batch", "--rate-limit", "1000000"],
                       ["runs_per_s"]),
    "W2": (["w2_step_overhead.py"], ["ms_per_step_median"]),
    "W3": (["w3_latency.py"], W3_KEYS),
    "W5": (["w5_queue_limit.py"], ["total_s", "ratio", "max_overlap"]),
    "failover": (["failover.py"], ["local_takeover_s", "lease_takeover_s", "lease_seconds"]),
    "W6": (["w6_sleep.py"], ["late_p50_ms", "late_p99_ms", "rss_mb_idle", "rss_mb_sleeping",
                             "rss_mb_after", "last_completed_after_due_s"]),
    "W7": (["w7_dashboard.py"], ["dashboard_ms", "dashboard_status_ms", "dashboard_task_ms",
                                 "dashboard_tag_ms", "api_ms", "api_status_ms", "api_task_tag_ms",
                                 "api_page_3_ms", "live_update_ms"]),
    "W8": (["w8_replay_check.py", "--repeat", "1"], ["histories_per_second_median"]),
    "W9": (["w9_metrics.py"], ["metrics_server_ms_median", "metrics_server_ms_p95",
                               "queue_depths_ms_median"]),
    "W12": (["w12_rate.py"], ["achieved_per_s", "deviation_pct", "max_in_1s"]),
    "W13": (["w13_fairness.py"], ["b_wait_ms_p50", "b_wait_ms_p99", "a_runs_per_s"]),
}


def selected(name: str, only: list[str]) -> bool:
    """No names: all workloads; a name selects itself and its variants (W1: W1-single-2p...)."""
    return not only or any(name == o or name.startswith(o + "-") for o in only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                        help="sqlite: a fresh file each run; postgres: a fresh schema each run")
    parser.add_argument("--database", help="a database URL (overrides --backend)")
    parser.add_argument("--pg-history", type=int, default=PG_HISTORY,
                        help="PostgreSQL: finished runs in each fresh schema before it is analyzed"
                             " (0: a never-analyzed schema)")
    parser.add_argument("only", nargs="*", help="workload names, e.g. W2 W3 (W1: all W1 variants)")
    args = parser.parse_args()
    extra = ["--database", args.database] if args.database else ["--backend", args.backend]
    extra += ["--pg-history", str(args.pg_history)]
    for name, (cmd, keys) in WORKLOADS.items():
        if not selected(name, args.only):
            continue
        results = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:], *extra],
                                 check=True, stdout=subprocess.PIPE, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        summary = {"workload": name, "backend": results[0]["backend"], "repeat": args.repeat,
                   "machine": results[0]["machine"]}
        if summary["backend"] == "postgres":
            summary["pg_history"] = args.pg_history
        for key in keys:
            values = [r[key] for r in results if r.get(key) is not None]
            summary[key] = statistics.median(values) if values else None
            summary[f"{key}_all"] = values
        if name == "W5":
            summary["within_limit_all"] = all(r["within_limit"] for r in results)
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
