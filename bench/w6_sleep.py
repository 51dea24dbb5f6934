"""W6 durable sleeps, two measurements with one real worker process (--concurrency 10):

- many: `--runs` (10,000) runs that all sleep until the same time, due `--lead` seconds after
  the last trigger. The worker parks them all (WAITING, nothing held in memory); its RSS is read
  before, while they sleep, and after; then how late the last of them completed.
- latency: `--latency-runs` runs that each sleep 2 s, triggered 0.25 s apart; how late each woke
  (p50/p99 ms after its due time).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from common import add_database_args, backend, database, database_url, emit, percentile, worker


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")


def scalar(app: object, sql: str) -> float:
    """One number from the database (SQL without parameters; same text for both backends)."""
    storage = app.storage  # type: ignore[attr-defined]
    if backend(storage.url) == "sqlite":
        return float(storage.db.read(sql, ()).fetchone()[0] or 0)
    return float(next(iter(storage._one(sql).values())) or 0)


def count(app: object, status: str) -> int:
    return int(scalar(app, f"SELECT count(*) FROM runs WHERE task_id = 'sleep-until'"
                           f" AND status = '{status}'"))


def many(app: object, runs: int, lead: float, pid: int) -> dict[str, object]:
    rss_idle = rss_mb(pid)
    due = time.time() + lead + runs / 2000  # time to trigger them all, plus the lead
    until = datetime.fromtimestamp(due, UTC).isoformat()
    for start in range(0, runs, 1000):
        app.batch_trigger("sleep-until", [{"until": until}] * min(1000, runs - start))  # type: ignore[attr-defined]
    wait_for(lambda: count(app, "WAITING") >= runs, max(60.0, due - time.time()),
             "every run to park")
    parked_at = time.time()
    rss_sleeping = rss_mb(pid)
    wait_for(lambda: count(app, "COMPLETED") >= runs, due - time.time() + 120, "every run to end")
    last_finished = scalar(app, "SELECT max(finished_at) FROM runs WHERE task_id = 'sleep-until'")
    return {"runs": runs, "parked_before_due_s": round(due - parked_at, 2),
            "rss_mb_idle": rss_idle, "rss_mb_sleeping": rss_sleeping,
            "rss_mb_after": rss_mb(pid),
            "last_completed_after_due_s": round(last_finished - due, 2)}


def latency(app: object, runs: int) -> dict[str, object]:
    handles = []
    for _ in range(runs):
        handles.append(app.trigger("sleep-for", {"seconds": 2.0}))  # type: ignore[attr-defined]
        time.sleep(0.25)
    late_ms = [h.result(timeout=60) * 1000 for h in handles]
    return {"latency_runs": runs, "late_p50_ms": round(percentile(late_ms, 50), 1),
            "late_p99_ms": round(percentile(late_ms, 99), 1),
            "late_max_ms": round(max(late_ms), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--lead", type=float, default=15.0,
                        help="seconds between the last trigger and the due time")
    parser.add_argument("--latency-runs", type=int, default=20)
    add_database_args(parser)
    args = parser.parse_args()
    from tether import Tether

    with database(database_url(args), args.pg_history) as url, worker(concurrency=10) as procs:
        app = Tether()
        result: dict[str, object] = {"bench": "W6", "backend": backend(url)}
        result.update(latency(app, args.latency_runs))
        if args.runs:
            result.update(many(app, args.runs, args.lead, procs[0].pid))
        app.close()
    emit(result)


if __name__ == "__main__":
    main()
