"""Large values: a 5 MB payload triggers, runs and returns, against the floor of copying 5 MB to
the object store (the target: at most 2x the floor).

Each round alternates a floor (FileStore.put of 5 MB, the same store) and a Tether run: trigger
with a 5 MB payload (validated, encoded, hashed, written to the store, the row with its
reference), a worker claims and runs it (the payload read back from the store and parsed) and
the caller gets its result. The report is the median of each and their ratio.

    python bench/objects_large.py [--backend sqlite|postgres] [--rounds 20] [--size 5000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import add_database_args, backend, database, database_url, emit
from tether import Tether, Worker
from tether.objects import FileStore
from tether.objects.references import object_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_database_args(parser)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", type=int, default=5_000_000, help="bytes of payload JSON")
    args = parser.parse_args()
    with database(database_url(args)) as url, tempfile.TemporaryDirectory() as tmp:
        store = FileStore(Path(tmp) / "objects")
        app = Tether(url, object_store=store)

        @app.task(id="large")
        async def large(payload: dict[str, Any]) -> int:
            return len(payload["blob"])

        app.storage.migrate()
        worker = Worker(app, concurrency=1)
        payload = {"blob": "x" * (args.size - 11)}  # {"blob":"..."} is `size` bytes
        data = b"x" * args.size
        floors, runs = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            store.put(object_key(), data)
            floors.append(time.perf_counter() - started)
            started = time.perf_counter()
            handle = large.trigger(payload)
            asyncio.run(worker.run_until_idle())
            assert handle.result(timeout=60) == len(payload["blob"])
            runs.append(time.perf_counter() - started)
        floor, run = statistics.median(floors), statistics.median(runs)
        emit({"bench": "objects_large", "backend": backend(url), "size": args.size,
              "rounds": args.rounds, "floor_ms": round(floor * 1000, 2),
              "run_ms": round(run * 1000, 2), "ratio": round(run / floor, 2)})
        app.close()


if __name__ == "__main__":
    main()
