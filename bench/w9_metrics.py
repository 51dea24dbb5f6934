"""W9 metrics: GET /metrics over a big database. `--finished` (1,000,000) finished runs written
in one SQL statement (generate_series on PostgreSQL, a recursive CTE on SQLite) from a template
run, plus `--unfinished` (2,000) runs spread over QUEUED, DELAYED, EXECUTING and WAITING in 4
queues, then ANALYZE as in a database in use. Then the median and the 95th percentile of
`--requests` scrapes of `tether serve`'s /metrics (its Server-Timing and the round trip, over
real HTTP with a key) and of the queue-depth query alone. Target: under 50 ms."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import httpx

from common import add_database_args, backend, database, database_url, emit
from w7_dashboard import server_ms, start_server

QUEUES = ["emails", "reports", "imports", "billing"]
UNFINISHED = ["QUEUED", "DELAYED", "EXECUTING", "WAITING"]


def _history_sql(dialect: str, columns: tuple[str, ...], count: int) -> str:
    """Copies of the template run 'run_template' as `count` finished runs (ids 'run_h...')."""
    number = "g" if dialect == "postgres" else "n"
    values = {
        "id": f"'run_h' || {_pad(dialect, number)}",
        "status": f"CASE WHEN {number} % 10 = 0 THEN 'FAILED' ELSE 'COMPLETED' END",
        "attempts": "1",
        "started_at": "t.created_at",
        "finished_at": "t.created_at + 0.5",
        "output": "'null'",
    }
    selected = ", ".join(values.get(c, f"t.{c}") for c in columns)
    names = ", ".join(columns)
    if dialect == "postgres":
        return (f"INSERT INTO runs ({names}) SELECT {selected} FROM runs t, "
                f"generate_series(1, {count}) g WHERE t.id = 'run_template'")
    return (f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {count}) "
            f"INSERT INTO runs ({names}) SELECT {selected} FROM runs t, s "
            f"WHERE t.id = 'run_template'")


def _pad(dialect: str, number: str) -> str:
    if dialect == "postgres":
        return f"lpad({number}::text, 9, '0')"
    return f"substr('000000000' || {number}, -9, 9)"


def _sql(app: Any, statements: list[str]) -> None:
    storage = app.storage
    if backend(storage.url) == "sqlite":
        with storage.db.write() as conn:
            for sql in statements:
                conn.execute(sql)
    else:
        def run(conn: Any) -> None:
            for sql in statements:
                conn.execute(sql)

        storage._tx(run)


def fill(app: Any, finished: int, unfinished: int) -> None:
    from tether.storage.records import RUN_COLUMNS

    template = app.trigger(QUEUES[0], {"order": 1})
    _sql(app, [f"UPDATE runs SET id = 'run_template' WHERE id = '{template.id}'"])
    dialect = backend(app.storage.url)
    _sql(app, [_history_sql(dialect, RUN_COLUMNS, finished),
               "DELETE FROM runs WHERE id = 'run_template'"])
    per_queue = unfinished // len(QUEUES)
    for queue in QUEUES:
        app.batch_trigger(queue, [{"i": i} for i in range(per_queue)])
    # a quarter of each queue's runs in each unfinished status (the run ids' last character
    # spreads them), as a busy database has them
    _sql(app, ["UPDATE runs SET status = CASE WHEN id LIKE '%0' OR id LIKE '%1' THEN 'DELAYED'"
               " WHEN id LIKE '%2' OR id LIKE '%3' THEN 'EXECUTING'"
               " WHEN id LIKE '%4' OR id LIKE '%5' THEN 'WAITING' ELSE status END,"
               " waiting_for = CASE WHEN id LIKE '%4' OR id LIKE '%5' THEN 'sleep' END"
               " WHERE status = 'QUEUED' AND id NOT LIKE 'run_h%'"])
    _sql(app, ["ANALYZE" if dialect == "sqlite" else "ANALYZE runs"])


def plan(app: Any) -> str:
    """The queue-depth query's plan, one line (which indexes it reads)."""
    storage = app.storage
    if backend(storage.url) == "sqlite":
        from tether.storage.sqlite.server import S

        rows = storage.db.read("EXPLAIN QUERY PLAN " + S["queue_depths"]).fetchall()
        return " | ".join(str(r[3]) for r in rows)
    from tether.storage.postgres.server import S as PG

    rows = storage.db.run(lambda conn: conn.execute("EXPLAIN " + PG["queue_depths"]).fetchall())
    return " | ".join(str(next(iter(r.values()))).strip() for r in rows)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_database_args(parser)
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--unfinished", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    from tether import Tether

    with database(database_url(args)) as url:
        app = Tether(url)
        for queue in QUEUES:
            app.task(id=queue, queue=queue)(lambda payload: payload)
        app.storage.migrate()
        started = time.perf_counter()
        fill(app, args.finished, args.unfinished)
        fill_s = time.perf_counter() - started
        depths = app.storage.queue_depths()
        query_plan = plan(app)
        key = app.keys.create("bench").secret
        base, server, thread = start_server(app)
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
                for _ in range(3):
                    client.get("/metrics").raise_for_status()  # warm up
                served, round_trip = [], []
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    response = client.get("/metrics")
                    round_trip.append((time.perf_counter() - t0) * 1000)
                    served.append(server_ms(response))
            query = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                app.storage.queue_depths()
                query.append((time.perf_counter() - t0) * 1000)
        finally:
            server.should_exit = True
            thread.join(10)
        app.close()
    emit({"bench": "W9", "backend": backend(url), "finished_runs": args.finished,
          "unfinished_runs": sum(d.count for d in depths), "depth_series": len(depths),
          "fill_s": round(fill_s, 1), "requests": args.requests,
          "metrics_server_ms_median": round(statistics.median(served), 2),
          "metrics_server_ms_p95": round(percentile(served, 0.95), 2),
          "metrics_round_trip_ms_median": round(statistics.median(round_trip), 2),
          "metrics_round_trip_ms_p95": round(percentile(round_trip, 0.95), 2),
          "queue_depths_ms_median": round(statistics.median(query), 2),
          "queue_depths_ms_p95": round(percentile(query, 0.95), 2), "plan": query_plan})


if __name__ == "__main__":
    main()
