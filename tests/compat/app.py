"""The Python side of the Trigger.dev SDK compatibility test: tasks the Node script triggers.

Run by `tether worker tests/compat/app.py` with TETHER_DATABASE_URL set by the test."""

from __future__ import annotations

from typing import Any

from tether import Context, Retry, Tether

app = Tether(inline_sleep=0.0)


@app.task(id="greet")
def greet(payload: dict[str, Any]) -> dict[str, Any]:
    """Echoes what it got, so the test sees how SDK payloads (superjson, Dates) arrive."""
    return {"greeting": f"hello {payload.get('name', 'nobody')}", "received": payload}


@app.task(id="nap", retry=Retry(max_attempts=1))
async def nap(payload: dict[str, Any], ctx: Context) -> str:
    """A durable sleep: the run is WAITING for `seconds` (default 300), so it can be canceled."""
    await ctx.sleep(float(payload.get("seconds", 300)))
    return "rested"


@app.task(id="approval")
async def approval(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Parks until the token named in the payload is completed; returns the token's data."""
    decision = await ctx.wait_for_token(payload["token"])
    return {"decision": decision}


@app.task(id="fail", retry=Retry(max_attempts=1))
def fail(payload: dict[str, Any]) -> None:
    """Always fails at once: its idempotency key is free again (Trigger.dev's rule)."""
    raise RuntimeError(f"failed on purpose: {payload}")


@app.task(id="nightly", cron="0 3 * * *")
def nightly(payload: dict[str, Any]) -> None:
    """A schedule declared in code: the SDK may read it but not delete it."""
