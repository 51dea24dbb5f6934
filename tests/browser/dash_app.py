"""The tasks the browser tests run: a real worker executes them (in a thread, with its own
`Tether` on the same database, as another process would)."""

from __future__ import annotations

import asyncio
from typing import Any

from tether import AbortRun, Context, Queue, Retry, Tether


def build(url: str) -> Tether:
    app = Tether(url, inline_sleep=0.05)

    @app.task(id="quick")
    async def quick(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        doubled = await ctx.step("double", lambda: payload.get("n", 1) * 2)
        return {"doubled": doubled}

    @app.task(id="pipeline", queue=Queue("pipelines", concurrency=4))
    async def pipeline(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        rows = await ctx.step("extract", asyncio.sleep, 0.05, 40)
        ctx.logger.info("extracted %s rows", rows)
        total = await ctx.step("transform", lambda: rows * 2)
        await ctx.sleep(0.3)
        child = await ctx.trigger_and_wait(quick, {"n": total})
        await ctx.step("load", asyncio.sleep, 0.05)
        return {"total": total, "child": child}

    @app.task(id="approval")
    async def approval(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        token = await ctx.create_token(timeout="1h")
        decision = await ctx.wait_for_token(token)
        return {"decision": decision}

    @app.task(id="broken", retry=Retry(max_attempts=1))
    async def broken(payload: dict[str, Any], ctx: Context) -> None:
        await ctx.step("check", lambda: None)
        raise AbortRun(f"account {payload.get('account')} is locked")

    @app.task(id="slow", queue=Queue("slow-lane", concurrency=1))
    async def slow(payload: dict[str, Any], ctx: Context) -> None:
        await ctx.sleep(3600)

    return app
