"""Shared helpers for the benchmarks: a fresh database, a real worker process, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True)}


@contextmanager
def database(url: str | None = None) -> Iterator[str]:
    """A fresh SQLite file (or the URL given), set as TETHER_DATABASE_URL for this process."""
    if url:
        os.environ["TETHER_DATABASE_URL"] = url
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="tether-bench-", dir=ROOT / ".tether-bench"
                                     if (ROOT / ".tether-bench").is_dir() else None) as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        os.environ["TETHER_DATABASE_URL"] = url
        yield url


@contextmanager
def worker(concurrency: int = 10, processes: int = 1) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start real `tether worker` processes on bench/app.py and wait until they registered."""
    cmd = [sys.executable, "-m", "tether.cli", "worker", str(HERE / "app.py"),
           "--concurrency", str(concurrency), "--log-level", "WARNING"]
    procs = [subprocess.Popen(cmd, env=os.environ.copy()) for _ in range(processes)]
    try:
        _wait_registered(len(procs))
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_registered(count: int) -> None:
    from tether import Tether

    probe = Tether()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if len(probe.storage.list_workers(time.time() - 60)) >= count:
                probe.close()
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit("workers did not start within 30 s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps({**result, "machine": machine()}), flush=True)
