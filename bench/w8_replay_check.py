"""W8 replay check: N runs, each parked (WAITING) after 10 completed steps, stored by an in-process
worker; then `app.check_replay()` replays them all with the same code. Histories per second
(target: 2,000 on SQLite, 1,000 on PostgreSQL), median of several repetitions."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from common import add_database_args, backend, database, database_url, emit, median

STEPS = 10


def make_app() -> Any:
    from tether import Context, Tether

    app = Tether(inline_sleep=0)

    def value(i: int) -> dict[str, int]:
        return {"i": i, "square": i * i}

    @app.task(id="ten-steps")
    async def ten_steps(payload: Any, ctx: Context) -> int:
        total = 0
        for i in range(STEPS):
            total += (await ctx.step(f"step-{i}", value, i))["square"]
        await ctx.sleep(86400, name="park")  # the history ends here: WAITING
        return total

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    add_database_args(parser)
    args = parser.parse_args()
    from tether import Worker

    with database(database_url(args), args.pg_history) as url:
        app = make_app()
        began = time.perf_counter()
        for start in range(0, args.runs, 1000):
            app.batch_trigger("ten-steps", [None] * min(1000, args.runs - start))
        asyncio.run(Worker(app, concurrency=50).run_until_idle())
        stored = time.perf_counter() - began
        newest = app.runs.list(limit=1)[0]
        assert newest.status == "WAITING" and len(app.storage.load_steps(newest.id)) == STEPS + 1
        rates, seconds = [], []
        for _ in range(args.repeat):
            report = app.check_replay()
            assert report.passed and len(report.runs) == args.runs, report.summary()
            seconds.append(report.seconds)
            rates.append(args.runs / report.seconds)
        app.close()
    emit({"bench": "W8", "runs": args.runs, "steps_per_run": STEPS, "repeat": args.repeat,
          "backend": backend(url), "seconds_to_store": round(stored, 1),
          "histories_per_second_median": round(median(rates)),
          "seconds_median": round(median(seconds), 3),
          "seconds_all": [round(v, 3) for v in seconds]})


if __name__ == "__main__":
    main()
