"""A process of the schedule race (test_schedules.py): fires the same due slots as its peers,
round after round, all starting each round together."""

from __future__ import annotations

from typing import Any

from tether import Tether
from tether.worker.scheduler import Scheduler


def race(url: str, times: list[float], barrier: Any, results: Any) -> None:
    app = Tether(url)
    scheduler = Scheduler(app)
    wins = 0
    try:
        for now in times:
            barrier.wait(timeout=30)
            wins += scheduler.fire_due(now)
    finally:
        app.close()
    results.put(wins)
