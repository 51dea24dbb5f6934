"""tether.testing's speed: the issue's test, timed outside any test runner. A task sleeps a
day, waits for a token and fans out to `--children` (100) children; one repetition opens a
TetherEnv (a new SQLite file, its schema migrated), runs the task, advances a day, completes
the token (the children run, the parent completes) and closes the env. Prints JSON: each
repetition's seconds, the median and the slowest (target: under a second).

    python bench/testing_kit.py [--repeat 5] [--children 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import emit
from tether import Context, RunStatus, Tether
from tether.testing import TetherEnv

app = Tether(f"sqlite:///{Path(tempfile.gettempdir()) / 'no-such-dir' / 'prod.db'}")


@app.task
async def square(n: int, ctx: Context) -> int:
    return await ctx.step("square", lambda: n * n)


@app.task
async def onboard(payload: dict[str, Any], ctx: Context) -> int:
    await ctx.step("create-user", lambda: payload["email"])
    await ctx.sleep("1d")
    token = await ctx.create_token()
    await ctx.wait_for_token(token)
    results = await ctx.batch_trigger_and_wait(square, list(range(payload["children"])))
    return sum(r.output for r in results)


def once(children: int) -> float:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, TetherEnv(app, folder) as env:
        run = env.run(onboard, {"email": "ada@example.com", "children": children})
        env.advance("1d")
        env.complete_token(env.token_for(run), {"ok": True})
        done = env.retrieve(run)
        if done.status != RunStatus.COMPLETED or len(env.triggered(square)) != children:
            raise SystemExit(f"the scenario did not complete: {done.status} {done.error}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--children", type=int, default=100, help="children (default 100)")
    args = parser.parse_args()
    if not 1 <= args.repeat <= 100 or not 1 <= args.children <= 1000:
        parser.error("--repeat must be 1..100 and --children 1..1000")
    seconds = [round(once(args.children), 4) for _ in range(args.repeat)]
    emit({"bench": "testing_kit", "children": args.children, "seconds": seconds,
          "median_s": round(statistics.median(seconds), 4), "max_s": max(seconds),
          "target_s": 1.0})


if __name__ == "__main__":
    main()
