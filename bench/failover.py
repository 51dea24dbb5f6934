"""Failover: a worker process dies (SIGKILL) while executing a ~3 s run of checkpointed steps;
measure the time from the kill until the run is EXECUTING again on the other worker process.

Both workers run before the trigger; the one that claims the run is killed at a random moment
within the first second of the run. Two paths, each in a fresh database:
- local: both workers record this machine's host name, so the survivor sees the dead pid at
  its next housekeeping tick (what users get with several workers on one machine);
- lease: one worker records another host name (TETHER_WORKER_HOSTNAME), so neither takes the
  other for local and the survivor can only notice that the lease expired (across machines).
The workers' lease is bench/app.py's, BENCH_LEASE seconds (set with --lease)."""

from __future__ import annotations

import argparse
import importlib
import os
import random
import signal
import time
from typing import Any

from common import (
    add_database_args,
    backend,
    database,
    database_url,
    emit,
    start_worker,
    stop_workers,
    wait_registered,
)

POLL = 0.01


def current_worker(app: Any, run_id: str) -> str | None:
    """The worker id of the run's latest attempt, from its trace."""
    attempts = [e for e in app.runs.trace(run_id) if e.kind == "attempt"]
    return attempts[-1].data.get("worker_id") if attempts else None


def poll_until(check: Any, timeout: float) -> Any:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = check()
        if value:
            return value
        time.sleep(POLL)
    raise SystemExit(f"gave up after {timeout:g} s")


def takeover(url: str | None, history: int, path: str, steps: int, pause: float, lease: float
             ) -> dict[str, Any]:
    from tether import RunStatus, Tether

    env_a = {"TETHER_WORKER_HOSTNAME": "bench-other-machine"} if path == "lease" else {}
    with database(url, history):
        app = Tether()
        procs = [start_worker(4, env_a), start_worker(4)]
        try:
            wait_registered(2)
            time.sleep(0.2)  # a worker registers before it listens; let both settle
            handle = app.trigger("slow-steps", {"n": steps, "pause": pause})
            poll_until(lambda: app.runs.retrieve(handle.id).started_at is not None, 30)
            workers = {w.id: w for w in app.storage.list_workers(time.time() - 60)}
            first = current_worker(app, handle.id)
            assert first is not None, "no attempt in the trace"
            victim = next(p for p in procs if p.pid == workers[first].pid)
            survivor = next(p for p in procs if p is not victim)
            # kill at a random phase of the heartbeat and housekeeping ticks (1 s apart)
            time.sleep(random.uniform(0.0, 1.0))
            run = app.runs.retrieve(handle.id)
            assert run.status == RunStatus.EXECUTING and run.attempts == 1, run.status
            victim.send_signal(signal.SIGKILL)
            killed = time.perf_counter()
            victim.wait(10)

            def again() -> bool:
                r = app.runs.retrieve(handle.id)
                return r.status == RunStatus.EXECUTING and r.attempts >= 2

            poll_until(again, 3 * lease + 10)
            seconds = time.perf_counter() - killed
            second = current_worker(app, handle.id)
            assert second is not None and workers[second].pid == survivor.pid, "not on the other"
            assert handle.result(timeout=steps * pause + 30) == steps
            hostnames = sorted({w.hostname for w in workers.values()})
        finally:
            stop_workers(procs)
            app.close()
    return {"takeover_s": round(seconds, 3), "hostnames": hostnames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lease", type=float, default=float(os.environ.get("BENCH_LEASE", "5")))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.1, help="seconds per step")
    parser.add_argument("--path", choices=["local", "lease", "both"], default="both")
    add_database_args(parser)
    args = parser.parse_args()
    os.environ["BENCH_LEASE"] = str(args.lease)  # for the worker processes, and read back below
    lease = importlib.import_module("app").app.lease_seconds
    url = database_url(args)
    result: dict[str, Any] = {"bench": "failover", "backend": backend(url or "sqlite:"),
                              "lease_seconds": lease, "run_seconds": args.steps * args.pause}
    for path in ("local", "lease") if args.path == "both" else (args.path,):
        measured = takeover(url, args.pg_history, path, args.steps, args.pause, lease)
        result[f"{path}_takeover_s"] = measured["takeover_s"]
        result[f"{path}_hostnames"] = measured["hostnames"]
    emit(result)


if __name__ == "__main__":
    main()
