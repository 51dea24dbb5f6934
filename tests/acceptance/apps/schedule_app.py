"""Scheduled tasks: `tick` writes each payload's slot to ticks.log beside this file; `yearly` is a
declared schedule that never comes due during a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tether import Tether

app = Tether(lease_seconds=3)  # housekeeping (which fires schedules) every second
TICKS = Path(__file__).with_name("ticks.log")


@app.task(id="tick")
def tick(payload: dict[str, Any]) -> str:
    with TICKS.open("a") as out:
        out.write(json.dumps(payload) + "\n")
    return str(payload["timestamp"])


@app.task(id="yearly", cron="0 0 1 1 *", timezone="Europe/London")
def yearly(payload: dict[str, Any]) -> None:
    return None
