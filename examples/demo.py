"""Tether demo on the embedded SQLite default: a worker process runs three tasks; the demo kills
it with SIGKILL in the middle of a run, starts another, and shows that the run resumes at the
interrupted step. Run it with `scripts/demo`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE = HERE.parent / ".tether" / "demo"


def banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def start_worker() -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tether.cli", "worker", str(HERE / "demo_tasks.py"),
           "--log-level", "WARNING"]
    return subprocess.Popen(cmd, env=os.environ.copy())


def wait_for_step(app: object, run_id: str, count: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        done = [e for e in app.runs.trace(run_id)  # type: ignore[attr-defined]
                if e.kind == "step" and e.outcome == "COMPLETED"]
        if len(done) >= count:
            return
        time.sleep(0.05)
    raise SystemExit("the demo run did not progress; is the worker running?")


def main() -> None:
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    os.environ["TETHER_DATABASE_URL"] = f"sqlite:///{STATE / 'demo.db'}"
    os.environ["DEMO_STATE"] = str(STATE)
    sys.path.insert(0, str(HERE))
    from demo_tasks import app, build_report, checkout, flaky_api
    from tether.cli.format import run_details

    banner("Triggering three runs (stored in SQLite before anything executes)")
    report = build_report.trigger({"title": "Q3", "sections": 5})
    flaky = flaky_api.trigger({"url": "https://example.invalid/api"})
    order = checkout.trigger({"amount": 4200}, idempotency_key="order-7")
    again = checkout.trigger({"amount": 4200}, idempotency_key="order-7")
    print(f"  build-report {report.id}\n  flaky-api    {flaky.id}\n  checkout     {order.id}")
    print(f"  a second checkout trigger with the same idempotency key returned {again.id}")

    banner("Starting a worker")
    first = start_worker()
    wait_for_step(app, report.id, 2, time.monotonic() + 30)
    banner(f"Killing the worker (pid {first.pid}) with SIGKILL during section 3")
    first.send_signal(signal.SIGKILL)
    first.wait()

    banner("Starting a new worker: it finds the dead worker's run and resumes it at section 3")
    second = start_worker()
    try:
        for handle in (report, flaky, order):
            handle.result(timeout=60)
    finally:
        second.terminate()
        second.wait(10)

    for handle in (report, flaky, order):
        banner(f"tether runs show {handle.id}")
        print("\n".join(run_details(app.runs.retrieve(handle.id), app.runs.trace(handle.id))))
    banner("Done. Sections 1-2 ran once, section 3 twice (interrupted), 4-5 once; the flaky call "
           "succeeded on attempt 3; the charge ran once.")
    print(f"Explore: TETHER_DATABASE_URL={os.environ['TETHER_DATABASE_URL']} "
          ".venv/bin/tether runs list")


if __name__ == "__main__":
    main()
