"""W11 scale: a PostgreSQL schema holding `--finished` (10,000,000) finished runs, each with its
attempt row and two events, written with SQL (generate_series) from a template run, then
VACUUM ANALYZE, as a database after months of use. Then the runs list of the HTTP API and of the
dashboard (server time, medians of `--requests`): unfiltered, by status, by task, a page deep.

    python bench/w11_scale.py fill --finished 10000000     # schema bench_scale (replaced)
    python bench/w11_scale.py list                          # the runs list on it
    python bench/w1_throughput.py --pg-schema bench_scale   # W1 on it (W3 likewise)
    python bench/w11_scale.py drop

W1 and W3 on that schema are compared, alternately, with a fresh schema (their default).
Target: W1 and W3 within 10 % of an empty database; the runs list under 300 ms."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import httpx

from common import POSTGRES_URL, _schema_ddl, _with_schema, emit
from w7_dashboard import server_ms, start_server

SCHEMA = "bench_scale"
TASKS = ["noop", "emails", "reports", "imports"]  # noop is bench/app.py's, so W1/W3 share it


def _app(schema: str) -> Any:
    from tether import Tether

    app = Tether(_with_schema(POSTGRES_URL, schema)[0])
    for task in TASKS:
        app.task(id=task)(lambda payload: payload)
    return app


def fill(schema: str, finished: int, chunk: int = 1_000_000) -> dict[str, Any]:
    from tether.storage.records import RUN_COLUMNS

    conninfo = _with_schema(POSTGRES_URL, schema)[1]
    _schema_ddl(conninfo, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    _schema_ddl(conninfo, f'CREATE SCHEMA "{schema}"')
    app = _app(schema)
    app.storage.migrate()
    template = app.trigger("noop", {"order": 1}).id
    app.close()
    started = time.perf_counter()
    q = f'"{schema}"'
    values = {
        "id": "'run_h' || lpad(g::text, 9, '0')",
        "task_id": f"(ARRAY{TASKS!r})[1 + g % {len(TASKS)}]".replace('"', "'"),
        "status": "CASE WHEN g % 10 = 0 THEN 'FAILED' ELSE 'COMPLETED' END",
        "attempts": "1",
        "created_at": f"t.created_at - 86400 * 90 + g * (86400.0 * 90 / {finished})",
        "available_at": f"t.created_at - 86400 * 90 + g * (86400.0 * 90 / {finished})",
        "started_at": f"t.created_at - 86400 * 90 + g * (86400.0 * 90 / {finished}) + 0.01",
        "finished_at": f"t.created_at - 86400 * 90 + g * (86400.0 * 90 / {finished}) + 0.5",
        "output": "'null'",
        "lease_token": "NULL", "lease_expires_at": "NULL", "worker_id": "NULL",
    }
    selected = ", ".join(values.get(c, f"t.{c}") for c in RUN_COLUMNS)
    names = ", ".join(RUN_COLUMNS)
    for low in range(1, finished + 1, chunk):
        high = min(finished, low + chunk - 1)
        _schema_ddl(conninfo, f"INSERT INTO {q}.runs ({names}) SELECT {selected} "
                              f"FROM {q}.runs t, generate_series({low}, {high}) g "
                              f"WHERE t.id = '{template}'")
        _schema_ddl(conninfo, f"INSERT INTO {q}.attempts (id, run_id, number, worker_id, status,"
                              " started_at, finished_at, next_status) SELECT 'att' || substr(r.id, 4),"
                              " r.id, 1, 'w-old', CASE r.status WHEN 'FAILED' THEN 'FAILED' ELSE"
                              " 'COMPLETED' END, r.started_at, r.finished_at, r.status FROM"
                              f" {q}.runs r WHERE r.id BETWEEN 'run_h' || lpad('{low}', 9, '0')"
                              f" AND 'run_h' || lpad('{high}', 9, '0')")
        _schema_ddl(conninfo, f"INSERT INTO {q}.events (run_id, at, kind, attempt, name)"
                              " SELECT r.id, r.created_at, k, 1, '' FROM"
                              f" {q}.runs r, unnest(ARRAY['TRIGGERED', 'COMPLETED']) k"
                              f" WHERE r.id BETWEEN 'run_h' || lpad('{low}', 9, '0')"
                              f" AND 'run_h' || lpad('{high}', 9, '0')")
    _schema_ddl(conninfo, f"DELETE FROM {q}.runs WHERE id = '{template}'")
    _schema_ddl(conninfo, f"VACUUM ANALYZE {q}.runs")
    _schema_ddl(conninfo, f"VACUUM ANALYZE {q}.attempts")
    _schema_ddl(conninfo, f"VACUUM ANALYZE {q}.events")
    return {"bench": "W11-fill", "finished_runs": finished,
            "fill_s": round(time.perf_counter() - started, 1)}


def runs_list(schema: str, requests: int) -> dict[str, Any]:
    app = _app(schema)
    key = app.keys.create("bench").secret
    base, server, thread = start_server(app)
    routes = {
        "api": ("/api/v1/runs", None),
        "api_completed": ("/api/v1/runs", {"filter[status]": "COMPLETED"}),
        "api_failed": ("/api/v1/runs", {"filter[status]": "FAILED"}),
        "api_queued": ("/api/v1/runs", {"filter[status]": "QUEUED"}),
        "api_task": ("/api/v1/runs", {"filter[taskIdentifier]": "reports"}),
        "dashboard": ("/", None),
        "dashboard_failed": ("/", {"status": "FAILED"}),
    }
    result: dict[str, Any] = {"bench": "W11-list", "requests": requests}
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as client:
            for name, (path, params) in routes.items():
                client.get(path, params=params)  # warm up
                times = [server_ms(client.get(path, params=params)) for _ in range(requests)]
                result[f"{name}_ms_median"] = round(statistics.median(times), 2)
                result[f"{name}_ms_max"] = round(max(times), 2)
    finally:
        server.should_exit = True
        thread.join(10)
        app.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["fill", "list", "drop"])
    parser.add_argument("--schema", default=SCHEMA)
    parser.add_argument("--finished", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    if args.action == "fill":
        emit(fill(args.schema, args.finished))
    elif args.action == "list":
        emit(runs_list(args.schema, args.requests))
    else:
        _schema_ddl(_with_schema(POSTGRES_URL, args.schema)[1],
                    f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')


if __name__ == "__main__":
    main()
