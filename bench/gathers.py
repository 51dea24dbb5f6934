"""Several waits at once (asyncio.gather of waits), with one real worker process
(--concurrency 50):

- gather: `--runs` runs that each create `--width` tokens and await them together with a sleep
  of `--sleep` seconds. Once all parked, the bench completes every token (tokens/s, each
  completion settling its gather in the same transaction), then waits for the runs to end: how
  long after the last completion (or the sleep's end, if later) the last run resumed, and the
  segments per run (attempt rows: 2 = parked once, resumed once).
- single: as many runs that each wait for one token, completed the same way: the tokens/s of
  the path a single wait takes, beside the gathers'.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import add_database_args, backend, database, database_url, emit, worker


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")


def statuses(app: Any, ids: list[str]) -> list[str]:
    return [r.status for r in app.storage.get_runs(ids)]


def waiting_tokens(app: Any, tag: str) -> list[str]:
    tokens = app.storage.list_tokens(["WAITING"], 1_000_000)
    return [t.id for t in tokens if tag in t.tags]


def phase(app: Any, task: str, payload: Any, runs: int, tag: str, due: float) -> dict[str, Any]:
    ids = [h.id for h in app.batch_trigger(task, [payload] * runs)]
    wait_for(lambda: all(s == "WAITING" for s in statuses(app, ids)), 120, f"{task} to park")
    tokens = waiting_tokens(app, tag)
    began = time.perf_counter()
    for token in tokens:
        app.tokens.complete(token, 1)
    took = time.perf_counter() - began
    last_event = max(time.time(), due)
    wait_for(lambda: all(s == "COMPLETED" for s in statuses(app, ids)), 120, f"{task} to end")
    ended = max(r.finished_at or 0.0 for r in app.storage.get_runs(ids))
    segments = [len(app.storage.list_attempts(i)) for i in ids]
    return {"runs": runs, "tokens": len(tokens),
            "complete_tokens_per_s": round(len(tokens) / took, 1),
            "last_resumed_after_s": round(ended - last_event, 3),
            "segments_per_run_max": max(segments), "segments_per_run_min": min(segments)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--width", type=int, default=3, help="tokens per gather")
    parser.add_argument("--sleep", type=float, default=2.0, help="the gathered sleep, seconds")
    add_database_args(parser)
    args = parser.parse_args()
    from tether import Tether

    with database(database_url(args), args.pg_history) as url, worker(concurrency=50):
        app = Tether()
        result: dict[str, Any] = {"bench": "gathers", "backend": backend(url),
                                  "width": args.width}
        due = time.time() + args.sleep
        gather = phase(app, "gather-tokens", {"width": args.width, "sleep": args.sleep},
                       args.runs, "bench-gather", due)
        result.update({f"gather_{k}": v for k, v in gather.items()})
        single = phase(app, "one-token", None, args.runs, "bench-one", 0.0)
        result.update({f"single_{k}": v for k, v in single.items()})
        app.close()
    emit(result)


if __name__ == "__main__":
    main()
