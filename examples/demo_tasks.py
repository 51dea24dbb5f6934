"""The demo's tasks: a multi-step report (to show crash-resume), a flaky API call (to show
retries with backoff), and a payment made with `once` (a side effect that must never repeat)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from tether import Context, Retry, Tether

app = Tether()
ATTEMPTS_FILE = Path(os.environ.get("DEMO_STATE", ".tether")) / "flaky-attempts"


def say(text: str) -> None:
    print(f"    [worker pid {os.getpid()}] {text}", flush=True)


async def build_section(number: int) -> str:
    say(f"building section {number} ...")
    await asyncio.sleep(0.6)
    return f"section {number}"


@app.task(id="build-report", retry=Retry(max_attempts=3, min_delay=0.2, jitter=False))
async def build_report(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    sections = []
    for n in range(1, payload["sections"] + 1):
        sections.append(await ctx.step(f"section-{n}", build_section, n))
        ctx.metadata["progress"] = n / payload["sections"]
    return {"title": payload["title"], "sections": sections}


@app.task(id="flaky-api", retry=Retry(max_attempts=4, min_delay=0.3, factor=2.0, jitter=False))
def flaky_api(payload: dict[str, Any]) -> dict[str, Any]:
    ATTEMPTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    calls = int(ATTEMPTS_FILE.read_text()) + 1 if ATTEMPTS_FILE.exists() else 1
    ATTEMPTS_FILE.write_text(str(calls))
    if calls < 3:
        say(f"flaky-api call {calls}: the remote service answers 503")
        raise ConnectionError("503 Service Unavailable")
    say(f"flaky-api call {calls}: 200 OK")
    return {"status": 200, "calls": calls}


async def charge(amount: int, key: str) -> str:
    say(f"charging {amount} cents with idempotency key {key}")
    return "ch_0001"


@app.task(id="checkout")
async def checkout(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    charge_id = await ctx.once("charge", charge, payload["amount"], ctx.idempotency_key_for("charge"))
    receipt = await ctx.step("receipt", lambda: f"receipt for {charge_id}")
    return {"charge": charge_id, "receipt": receipt}
