"""W3's shape on Celery with Redis, the peer the issue compares Tether with: an idle Celery worker
in another process, runs triggered one after another from this process, each waited for; p50/p90/
p99 ms from `delay()` to `get()`. Redis is broker and result backend (nothing is durable: Redis
keeps it in memory). Needs `pip install -e '.[bench]'` and Redis at BENCH_REDIS_URL
(default redis://127.0.0.1:6379/15, a database this script empties first)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from common import emit, percentile

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
HERE = Path(__file__).resolve().parent


def make_app(url: str) -> object:
    from celery import Celery

    app = Celery("peer_celery", broker=url, backend=url)
    app.conf.update(task_acks_late=False, worker_prefetch_multiplier=1, result_expires=600,
                    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)

    @app.task(name="noop")  # type: ignore[misc]
    def noop(x: int) -> int:
        return x

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"],
                        help="the Celery worker's pool of 10 (default prefork, Celery's own default)")
    args = parser.parse_args()
    try:
        import redis
    except ImportError:
        sys.exit("peer_celery needs Celery and redis-py: pip install -e '.[bench]'")
    redis.Redis.from_url(REDIS_URL).flushdb()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "peer_celery_app", "worker", "--pool", args.pool,
         "--concurrency", "10", "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=HERE, env={**os.environ, "BENCH_REDIS_URL": REDIS_URL},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        app = make_app(REDIS_URL)
        task = app.tasks["noop"]  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # bounded: the worker's start
            try:
                task.delay(0).get(timeout=2)
                break
            except Exception:  # not up yet
                continue
        for i in range(20):  # warm up
            task.delay(i).get(timeout=30)
        latencies = []
        for i in range(args.runs):
            start = time.perf_counter()
            task.delay(i).get(timeout=30)
            latencies.append((time.perf_counter() - start) * 1000)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    emit({"bench": "W3", "peer": "celery+redis", "pool": args.pool, "runs": args.runs,
          "p50_ms": round(percentile(latencies, 50), 3), "p90_ms": round(percentile(latencies, 90), 3),
          "p99_ms": round(percentile(latencies, 99), 3)})


if __name__ == "__main__":
    main()
